//! Scenario 7: memory pressure. Redis with a small `maxmemory` (set at runtime) under a publisher
//! load with no consumer, once with `allkeys-lru` (the original design's policy) and once with
//! `noeviction` (the shipped `configs/redis/redis.conf`); Redis out of memory for 30 s under load
//! with consumers already running; plus a start of that file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{HubProcess, Load, Scenario};
use mt5_chaos::history::History;
use mt5_chaos::report;
use mt5_fixtures::redis;
use mt5_fixtures::redis::aio::MultiplexedConnection;
use mt5_fixtures::{Appendfsync, RedisFixture};

/// The small memory limit: about 2 MB above an empty Redis (~0.9 MB), room for ~2300 events
/// with their idempotency keys.
const MAXMEMORY: &str = "3mb";
/// The limit once "memory frees" (the operator's remedy: more headroom).
const RAISED_MAXMEMORY: &str = "64mb";
/// Events per second of the load.
const RATE: f64 = 500.0;
/// Events of the load: well beyond what fits under [`MAXMEMORY`].
const COUNT: u64 = 4000;

/// `CONFIG SET name value`.
async fn config_set(conn: &mut MultiplexedConnection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
}

/// A numeric `INFO <section>` field (0 when missing).
async fn info_u64(fx: &RedisFixture, section: &str, field: &str) -> u64 {
    fx.info_field(section, field)
        .await
        .unwrap()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `OOM` error replies Redis sent so far (`INFO errorstats`: `errorstat_OOM:count=N`).
async fn oom_replies(fx: &RedisFixture) -> u64 {
    fx.info_field("errorstats", "errorstat_OOM")
        .await
        .unwrap()
        .and_then(|v| v.strip_prefix("count=").and_then(|n| n.split(',').next()?.parse().ok()))
        .unwrap_or(0)
}

/// Keys matching `pattern` (SCAN, bounded).
async fn count_keys(conn: &mut MultiplexedConnection, pattern: &str) -> u64 {
    let mut cursor = 0u64;
    let mut n = 0u64;
    for _ in 0..10_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        n += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    n
}

/// Whether the scenario's group exists on its raw stream (it goes when the stream key is evicted).
async fn group_exists(conn: &mut MultiplexedConnection, sc: &Scenario) -> bool {
    mt5_bus::stats::stream_stats(conn, &sc.streams.raw)
        .await
        .is_ok_and(|s| s.groups.iter().any(|g| g.name == sc.streams.group))
}

/// The publisher's summary line (`sent .., acknowledged .., failed ..`).
fn summary(p: &HubProcess) -> String {
    p.stdout().lines().last().unwrap_or_default().to_string()
}

/// The scenario on a fresh Redis whose `maxmemory` is [`MAXMEMORY`] with `policy`, and the
/// publisher of [`COUNT`] events with idempotency keys (started, not awaited).
async fn start(name: &str, policy: &str) -> (RedisFixture, Scenario, HubProcess, PathBuf) {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let sc = common::scenario(name, &fx);
    let mut conn = fx.connection().await;
    config_set(&mut conn, "maxmemory-policy", policy).await;
    config_set(&mut conn, "maxmemory", MAXMEMORY).await;
    let history = sc.history_path("load");
    let load = Load::news(RATE, COUNT, history.clone()).with_idempotency_key_prefix(format!("{name}-{}", fx.prefix()));
    let publisher = sc.spawn_publisher(&load).await.unwrap();
    (fx, sc, publisher, history)
}

/// `allkeys-lru` evicts whole keys: with no consumer, 4000 publishes at 500 ev/s into 3 MB all
/// succeed without a single error, while Redis evicts the idempotency keys and the raw stream
/// itself (its unconsumed entries and its consumer group with it). A filter started afterwards
/// (with the limit lifted, so reading back evicts nothing more; when the group was evicted, it
/// refuses to start until the group is created explicitly at 0) finds only what was published
/// after the last eviction. The finding asserted: acknowledged events were lost, silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allkeys_lru_evicts_unconsumed_entries_silently() {
    let (fx, sc, mut publisher, history) = start("memory_allkeys_lru", "allkeys-lru").await;
    let checker = Checker::for_scenario(&sc);
    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    let publisher_summary = summary(&publisher);
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    assert!(
        publisher_summary.contains(&format!("acknowledged {COUNT} ")) && publisher_summary.contains("failed 0"),
        "the publisher saw an error: {publisher_summary}"
    );

    let mut conn = fx.connection().await;
    let evicted = info_u64(&fx, "stats", "evicted_keys").await;
    let used = info_u64(&fx, "memory", "used_memory").await;
    let raw_len = mt5_fixtures::streams::xlen(&mut conn, &sc.streams.raw).await;
    let group_survived = group_exists(&mut conn, &sc).await;
    let idem_left = count_keys(&mut conn, &mt5_bus::idempotency_key(&sc.streams.raw, "*")).await;

    // Read back what is left with the limit lifted, so the read itself evicts nothing.
    config_set(&mut conn, "maxmemory", "0").await;
    if !group_survived && raw_len > 0 {
        // The group went with an eviction and the publisher's XADDs recreated the stream without
        // it: a filter refuses to start there (exit 2, naming `groups create`) rather than
        // recreating the group at 0 by itself, so the operator creates it, at 0 to read back
        // everything that is left.
        let mut refused = sc.spawn_filter("f0").await.unwrap();
        let status = refused.wait_exit(Duration::from_secs(20)).await.unwrap();
        assert_eq!(status.code(), Some(2), "{}", refused.stderr_tail(10));
        assert!(
            refused.stderr().contains("groups create"),
            "{}",
            refused.stderr_tail(10)
        );
        let create: Vec<String> = [
            "groups",
            "create",
            "--stream",
            &sc.streams.raw,
            "--group",
            &sc.streams.group,
            "--at",
            "0",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        sc.run_to_end("groups-create", &create, Duration::from_secs(20))
            .await
            .unwrap();
    }
    let mut filter = sc.spawn_filter("f1").await.unwrap();
    common::ready(&filter).await;
    let drained = checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    common::stop_all(std::slice::from_mut(&mut filter)).await;

    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_recovery(drained)
        .with_faults(format!(
            "maxmemory {MAXMEMORY} allkeys-lru, no consumer, {COUNT} publishes at {RATE}/s: publisher errors 0, evicted_keys {evicted}, stream left {raw_len} entries, group {}, idempotency keys left {idem_left}, used_memory {used}",
            if group_survived { "kept" } else { "evicted" },
        ));
    report::record("7 memory (allkeys-lru)", &verdict).unwrap();
    assert!(evicted > 0, "nothing was evicted: the fault did not land");
    assert_eq!(verdict.published, COUNT, "{}", verdict.line());
    assert!(
        verdict.lost > 0,
        "allkeys-lru lost nothing this time (the finding did not reproduce): {}",
        verdict.line()
    );
    assert_eq!(
        verdict.lost,
        verdict.published - verdict.processed - verdict.dead_lettered_total(),
        "{}",
        verdict.line()
    );
    assert_eq!(verdict.duplicated_effects, 0, "{}", verdict.line());
    assert_eq!(verdict.pending, 0, "{}", verdict.line());
}

/// `noeviction` refuses writes instead: the same load stalls at the limit with `OOM` replies,
/// which the publisher treats as transient (it backs off and retries the batch, logging each
/// retry) while every publish acknowledged so far is still in the stream; a filter started
/// during the stall cannot write either, and survives. Once memory frees (the limit raised to
/// 64 MB) the publisher finishes, the filter drains, and the checker finds lost 0 and
/// duplicates 0, with nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noeviction_refuses_writes_and_loses_nothing() {
    let (fx, sc, mut publisher, history) = start("memory_noeviction", "noeviction").await;
    let checker = Checker::for_scenario(&sc);
    let mut conn = fx.connection().await;

    // Wait for the stall: OOM replies, and the stream no longer growing.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stalled_len = loop {
        assert!(
            publisher.try_status().unwrap().is_none(),
            "the publisher exited instead of backing off: {}\n{}",
            summary(&publisher),
            publisher.stderr_tail(10)
        );
        assert!(Instant::now() < deadline, "no OOM stall within 20 s");
        if oom_replies(&fx).await > 0 {
            let before = mt5_fixtures::streams::xlen(&mut conn, &sc.streams.raw).await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let after = mt5_fixtures::streams::xlen(&mut conn, &sc.streams.raw).await;
            if before == after {
                break after;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let used_at_stall = info_u64(&fx, "memory", "used_memory").await;
    let acknowledged_at_stall = History::read(&[&history]).unwrap().event_ids().len() as u64;
    assert_eq!(
        acknowledged_at_stall, stalled_len,
        "every publish acknowledged before the stall is in the stream"
    );
    assert!(stalled_len < COUNT, "the load fit in {MAXMEMORY}: no pressure");

    // A consumer during the stall: it cannot write its effects (or its heartbeat), and survives.
    let mut filter = sc.spawn_filter("f1").await.unwrap();
    common::ready(&filter).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        filter.try_status().unwrap().is_none(),
        "the filter died under OOM: {}",
        filter.stderr_tail(10)
    );
    let effects_during_stall = checker.output_len().await.unwrap();
    let filter_oom_logs = filter.stderr().lines().filter(|l| l.contains("OOM")).count();
    let publish_retries = publisher
        .stderr()
        .lines()
        .filter(|l| l.contains("OOM") && l.contains("retrying"))
        .count();
    let oom = oom_replies(&fx).await;
    assert!(
        publish_retries > 0,
        "the publisher logged no OOM retry: {}",
        publisher.stderr_tail(10)
    );

    // Memory frees: the limit is raised; everything resumes on its own.
    config_set(&mut conn, "maxmemory", RAISED_MAXMEMORY).await;
    let freed = Instant::now();
    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    let publisher_summary = summary(&publisher);
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    assert!(
        publisher_summary.contains(&format!("acknowledged {COUNT} ")) && publisher_summary.contains("failed 0"),
        "{publisher_summary}"
    );
    checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    let recovery = freed.elapsed();
    common::stop_all(std::slice::from_mut(&mut filter)).await;

    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_recovery(recovery)
        .with_faults(format!(
            "maxmemory {MAXMEMORY} noeviction, no consumer, {COUNT} publishes at {RATE}/s: stalled at {stalled_len} entries (used_memory {used_at_stall}), {oom} OOM replies, {publish_retries} publish retries logged, a filter started in the stall wrote {effects_during_stall} effects ({filter_oom_logs} OOM log lines); then maxmemory {RAISED_MAXMEMORY}"
        ));
    report::record("7 memory (noeviction)", &verdict).unwrap();
    assert!(oom > 0);
    assert_eq!(verdict.published, COUNT, "{}", verdict.line());
    assert_eq!(verdict.dead_lettered_total(), 0, "{}", verdict.line());
    verdict.assert_zero_loss();
}

/// `redis-server` on PATH, else in the usual system directories.
fn redis_server() -> PathBuf {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("redis-server not found on PATH: install Debian's redis-server"))
}

/// `configs/redis/redis.conf` from the workspace root.
fn shipped_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("configs")
        .join("redis")
        .join("redis.conf")
}

/// `CONFIG GET name`.
async fn config_get(conn: &mut MultiplexedConnection, name: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .unwrap();
    v.get(1).cloned().unwrap_or_default()
}

/// The shipped `configs/redis/redis.conf` starts (on a free loopback port, in a temp dir) and
/// is the configuration that loses nothing: `noeviction`, a `maxmemory` set, the AOF on with
/// `appendfsync always` and fsync kept during rewrites, no snapshots; and at its limit a write
/// is refused with `OOM` (what the bus retries) rather than making room by evicting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_redis_conf_loses_nothing_under_pressure() {
    let conf = shipped_conf();
    assert!(conf.is_file(), "{} is missing", conf.display());
    let dir = tempfile::tempdir().unwrap();
    let port = mt5_fixtures::free_port().unwrap();
    let mut server = tokio::process::Command::new(redis_server())
        .arg(&conf)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("redis.log")).unwrap())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Some(status) = server.try_wait().unwrap() {
            panic!(
                "redis-server with {} exited with {status}: {}",
                conf.display(),
                std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default()
            );
        }
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut c.clone()).await;
            if pong.is_ok() {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not answer within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    assert_eq!(config_get(&mut conn, "maxmemory-policy").await, "noeviction");
    assert_ne!(config_get(&mut conn, "maxmemory").await, "0", "maxmemory must be set");
    assert_eq!(config_get(&mut conn, "appendonly").await, "yes");
    assert_eq!(config_get(&mut conn, "appendfsync").await, "always");
    assert_eq!(config_get(&mut conn, "no-appendfsync-on-rewrite").await, "no");
    assert_eq!(config_get(&mut conn, "save").await, "");

    // At the limit, a write is refused with OOM and nothing is evicted.
    let _: () = redis::cmd("XADD")
        .arg("conf:s")
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    config_set(&mut conn, "maxmemory", "1").await;
    let refused: Result<String, _> = redis::cmd("XADD")
        .arg("conf:s")
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await;
    let err = refused.expect_err("a write at the limit must be refused");
    assert_eq!(err.code(), Some("OOM"), "{err}");
    assert!(mt5_bus::redis_is_transient(&err), "the bus must retry OOM: {err}");
    assert_eq!(
        mt5_fixtures::streams::xlen(&mut conn, "conf:s").await,
        1,
        "nothing evicted"
    );
    assert_eq!(info_stat(&mut conn, "evicted_keys").await, "0");

    let _ = server.kill().await;
    println!(
        "chaos 7 memory (redis.conf): {} starts; noeviction refuses writes with OOM at the limit",
        conf.display()
    );
}

/// One `INFO stats` field over `conn`.
async fn info_stat(conn: &mut MultiplexedConnection, field: &str) -> String {
    let info: String = redis::cmd("INFO").arg("stats").query_async(conn).await.unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Seconds Redis stays out of memory in [`an_oom_under_load_with_consumers_running_loses_nothing`].
const OOM_SECS: u64 = 30;

/// Redis out of memory for 30 s (`maxmemory` 1 B, `noeviction`: every write refused) under a
/// news load, with two filters already running and a backlog in front of them (each filter is
/// slowed to 10 ms per entry by the `filter-delay` hook, 200 ev/s together against a 400 ev/s
/// load). The filters keep reading and deciding (reads work under OOM) but every settle is
/// refused; they keep their decisions and retry the settle with backoff instead of leaving the
/// entries in their PEL for the idle reclaim (5 min), and no entry burns a delivery: once memory
/// frees, everything drains, lost 0, duplicates 0 and nothing dead-lettered. The heartbeats (a
/// script allowed under OOM) keep both filters alive throughout, so nothing is reclaimed from
/// them either. (Before the consumer kept its decisions, the entries it held at the stall waited
/// 5 min for the idle reclaim: the drain below timed out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_under_load_with_consumers_running_loses_nothing() {
    const RATE: f64 = 400.0;
    const COUNT: u64 = 3000;
    let fx = common::process_redis(mt5_fixtures::Appendfsync::Everysec).await;
    let sc = common::scenario("memory_oom_consumers", &fx);
    let checker = Checker::for_scenario(&sc);
    let mut conn = fx.connection().await;
    config_set(&mut conn, "maxmemory-policy", "noeviction").await;
    let mut filters = Vec::new();
    for name in ["f1", "f2"] {
        let f = sc
            .spawn_filter_with(name, &[("FAILPOINTS", "filter-delay=return(10)")])
            .await
            .unwrap();
        common::ready(&f).await;
        filters.push(f);
    }
    let history = sc.history_path("load");
    let load = Load::news(RATE, COUNT, history.clone()).with_idempotency_key_prefix(format!("oom-{}", fx.prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();

    // A backlog builds for a few seconds, then Redis is full.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        checker.output_len().await.unwrap() > 0,
        "nothing was filtered before the fault"
    );
    let backlog = mt5_fixtures::streams::xlen(&mut conn, &sc.streams.raw).await - checker.output_len().await.unwrap();
    let oom_before = oom_replies(&fx).await;
    config_set(&mut conn, "maxmemory", "1").await;
    // A settle already running when the limit was set may still land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let effects_at_start = checker.output_len().await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(OOM_SECS) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for f in &mut filters {
            assert!(
                f.try_status().unwrap().is_none(),
                "a filter died under OOM: {}",
                f.stderr_tail(10)
            );
        }
    }
    let effects_during = checker.output_len().await.unwrap() - effects_at_start;
    let oom = oom_replies(&fx).await - oom_before;
    let pending_in_oom = mt5_fixtures::streams::pending(&mut conn, &sc.streams.raw, &sc.streams.group).await;
    let settle_retries: usize = filters
        .iter()
        .map(|f| f.stderr().lines().filter(|l| l.contains("OOM")).count())
        .sum();
    config_set(&mut conn, "maxmemory", "0").await;
    let freed = Instant::now();

    let status = publisher.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    let drained = checker.wait_drained(Duration::from_secs(60)).await.unwrap();
    let recovery = freed.elapsed();
    common::stop_all(&mut filters).await;

    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_recovery(drained)
        .with_faults(format!(
            "maxmemory 1 B noeviction for {OOM_SECS} s under {RATE}/s, 2 filters at 10 ms/entry with a backlog of {backlog}: {oom} OOM replies, {pending_in_oom} entries held at the end of the stall, {effects_during} effects written during it, {settle_retries} OOM lines in the filters' logs; drained {:.1} s after memory freed",
            recovery.as_secs_f64()
        ));
    report::record("7 memory (OOM, consumers running)", &verdict).unwrap();
    assert!(oom > 0, "Redis refused nothing: the fault did not land");
    assert!(
        pending_in_oom > 0,
        "the filters held nothing during the stall: the fault missed them"
    );
    assert!(
        settle_retries > 0,
        "no filter met an OOM reply: the fault missed the consumers"
    );
    assert_eq!(effects_during, 0, "effects were written while Redis was full");
    assert_eq!(verdict.published, COUNT, "{}", verdict.line());
    assert_eq!(verdict.dead_lettered_total(), 0, "{}", verdict.line());
    verdict.assert_zero_loss();
}
