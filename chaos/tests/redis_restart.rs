//! Scenario 2: Redis SIGKILLed and restarted from its AOF under load: zero loss with
//! `appendfsync always`; with `everysec`, what was lost and `aof_delayed_fsync`, reported.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::checker::{Checker, Verdict};
use mt5_chaos::harness::Load;
use mt5_chaos::proxy::control::ProxiedLink;
use mt5_chaos::report;
use mt5_fixtures::{docker_opted_out, Appendfsync, Backend, RedisFixture, RedisOptions};

/// How long Redis stays down.
const DOWN: Duration = Duration::from_millis(1500);

/// Runs the scenario on a fresh Redis with `appendfsync` and returns the verdict and
/// `aof_delayed_fsync` as it was just before the kill.
async fn run(name: &str, appendfsync: Appendfsync) -> (Verdict, String) {
    run_on(name, &mut common::process_redis(appendfsync).await, None).await
}

/// The scenario on `fx`; the services reach it through `link` when given (the checker reads it
/// directly).
async fn run_on(name: &str, fx: &mut RedisFixture, link: Option<&ProxiedLink>) -> (Verdict, String) {
    let (sc, checker) = match link {
        Some(link) => common::proxied_scenario(name, fx, link),
        None => {
            let sc = common::scenario(name, fx);
            let checker = Checker::for_scenario(&sc);
            (sc, checker)
        }
    };
    let mut filters = vec![
        sc.spawn_filter("f1").await.unwrap(),
        sc.spawn_filter("f2").await.unwrap(),
    ];
    for f in &filters {
        common::ready(f).await;
    }
    let history = sc.history_path("load");
    let load = Load::news(400.0, 3200, history.clone()).with_idempotency_key_prefix(format!("{name}-{}", fx.prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let run_id_before = fx.run_id().await.unwrap();
    let effects_before = checker.output_len().await.unwrap();
    assert!(effects_before > 0, "nothing flowed before the crash");
    let delayed = fx
        .info_field("persistence", "aof_delayed_fsync")
        .await
        .unwrap()
        .unwrap_or_else(|| "n/a".into());
    let accepted_before = match link {
        Some(link) => link.stats().await.unwrap().map(|s| s.accepted),
        None => None,
    };
    fx.kill().await.unwrap();
    let killed_at = Instant::now();
    tokio::time::sleep(DOWN).await;
    fx.restart().await.unwrap();
    let run_id_after = fx.run_id().await.unwrap();
    assert_ne!(run_id_before, run_id_after, "Redis did not restart");
    // Recovered when new effects appear after the restart.
    let restarted = checker.output_len().await.unwrap();
    let recovery = loop {
        let now = checker.output_len().await.unwrap_or(0);
        if now > restarted {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "nothing flowed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    if let (Some(link), Some(before)) = (link, accepted_before) {
        let after = link.stats().await.unwrap().map_or(0, |s| s.accepted);
        assert!(
            after > before,
            "the services did not reconnect through the proxy ({before} connections before the kill, {after} after)"
        );
    }
    let status = publisher.wait_exit(Duration::from_secs(40)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    common::stop_all(&mut filters).await;
    let verdict = checker.check(&[history]).await.unwrap().with_recovery(recovery);
    (verdict, delayed)
}

/// With `appendfsync always`, a SIGKILL of Redis under load (publisher with idempotency keys,
/// two filters) loses nothing: every acknowledged publish ends up filtered exactly once after
/// the restart from the AOF, and `run_id` proves the restart happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_with_appendfsync_always_loses_nothing() {
    let (verdict, _fx) = run("redis_restart_always", Appendfsync::Always).await;
    let dedupes = verdict.publish_dedupes;
    let verdict = verdict.with_faults(format!(
        "Redis SIGKILL + restart from AOF (always, down {} ms), run_id changed, {} publish retries deduped",
        DOWN.as_millis(),
        dedupes
    ));
    report::record("2 redis_restart (always)", &verdict).unwrap();
    verdict.assert_zero_loss();
}

/// Persistence as the original design's checklist has it, RDB and AOF together: snapshots every
/// second under load (`save 1 1`, each a fork beside the AOF writes) and the AOF with
/// `appendfsync always`. A SIGKILL under load, likely beside a snapshot, loses nothing: the
/// restart loads the AOF (which wins over the RDB when both exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_with_rdb_and_aof_always_loses_nothing() {
    let mut fx = RedisFixture::start_with(
        RedisOptions::default()
            .with_backend(Backend::Process)
            .with_appendfsync(Appendfsync::Always)
            .with_arg("save", "1 1"),
    )
    .await
    .expect("start redis-server");
    let (verdict, _) = run_on("redis_restart_rdb_aof", &mut fx, None).await;
    let mut c = fx.connection().await;
    let info: String = mt5_fixtures::redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut c)
        .await
        .unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_owned))
            .unwrap_or_default()
    };
    let save: Vec<String> = mt5_fixtures::redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(save.get(1).map(String::as_str), Some("1 1"), "{save:?}");
    assert_eq!(field("aof_enabled"), "1");
    // Snapshots ran beside the AOF after the restart too (the load went on), and succeeded.
    let saves: u64 = field("rdb_saves").parse().unwrap_or(0);
    assert!(saves > 0, "no RDB snapshot after the restart: {info}");
    assert_eq!(field("rdb_last_bgsave_status"), "ok");
    let dedupes = verdict.publish_dedupes;
    let verdict = verdict.with_faults(format!(
        "Redis SIGKILL + restart, RDB every second (save 1 1) and AOF (always), down {} ms, run_id changed, {dedupes} publish retries deduped; {saves} snapshots after the restart",
        DOWN.as_millis(),
    ));
    report::record("2 redis_restart (RDB + AOF, always)", &verdict).unwrap();
    verdict.assert_zero_loss();
}

/// With `appendfsync everysec` the same crash is reported, not asserted: a process kill keeps
/// what Redis wrote to the page cache, but Redis may postpone an AOF write up to 2 s while
/// replying (`aof_delayed_fsync` counts those). Only no duplicates and a drained PEL are asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sigkill_with_appendfsync_everysec_is_reported() {
    let (verdict, delayed) = run("redis_restart_everysec", Appendfsync::Everysec).await;
    let lost = verdict.lost;
    let verdict = verdict.with_faults(format!(
        "Redis SIGKILL + restart from AOF (everysec, down {} ms), run_id changed, lost {} acknowledged, aof_delayed_fsync {delayed} (before the kill)",
        DOWN.as_millis(),
        lost
    ));
    report::record("2 redis_restart (everysec)", &verdict).unwrap();
    assert_eq!(verdict.duplicated_effects, 0, "{}", verdict.line());
    assert_eq!(verdict.pending, 0, "{}", verdict.line());
}

/// The container backend: `docker kill` and `docker start` of the Redis container (`appendfsync
/// always`) under the same load, the services reaching Redis through the fault proxy, so their
/// address survives the restart whatever the container's; the proxy counted the connections
/// the kill cut. Skipped only on a machine that opted out of Docker (`MT5_NO_DOCKER=1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_container_docker_kill_with_appendfsync_always_loses_nothing() {
    if docker_opted_out() {
        eprintln!("MT5_NO_DOCKER=1: the container variant of scenario 2 does not run here");
        return;
    }
    let mut fx = RedisFixture::start_with(
        RedisOptions::default()
            .with_backend(Backend::Container)
            .with_appendfsync(Appendfsync::Always),
    )
    .await
    .expect("start the Redis container");
    let link = ProxiedLink::start("redis-container", &format!("127.0.0.1:{}", fx.port()))
        .await
        .expect("the fault proxy in front of the Redis container");
    let (verdict, _) = run_on("redis_restart_container", &mut fx, Some(&link)).await;
    // `run_on` proved the services reconnected through the proxy (counted in process only: a
    // Toxiproxy server at TOXIPROXY_URL has no such counters).
    let closed = match link.stats().await.unwrap() {
        Some(stats) => format!(", {} connections through the proxy", stats.accepted),
        None => String::new(),
    };
    link.close().await.unwrap();
    let dedupes = verdict.publish_dedupes;
    let verdict = verdict.with_faults(format!(
        "docker kill + start of the Redis container (always) behind the fault proxy, run_id changed{closed}, {dedupes} publish retries deduped"
    ));
    report::record("2 redis_restart (container)", &verdict).unwrap();
    verdict.assert_zero_loss();
}
