//! Scenario 10: Sentinel failover under load, once per durability mode. A master, two replicas
//! and three sentinels on loopback (`SentinelFixture`); a publisher and two filters, all `mt5-hub`
//! processes in sentinel mode with `bus.durability` set, made once; the sentinels run the shipped
//! `configs/redis/sentinel.conf` (down-after 5 s). The master is SIGKILLed
//! mid-load; a replica is promoted; every service resumes without a restart. Reported (one row
//! per mode and server, e.g. `10 failover (replicated, redis 7.0.15)`): the time from the kill to
//! the first acknowledged publish and to the first new effect, and what was lost. Asserted: no
//! effect twice, the PEL drained, every service resumed within 10 s; `replicated` and `fsync`
//! lost nothing acknowledged; `async` no more than a second of load (what replication lag on
//! loopback can explain). `fsync` needs `WAITAOF`: on a server without it (Redis 7.0) the row
//! proves instead that the services refuse to start. CI runs the rows on Redis and on Valkey
//! (`MT5_REDIS_SERVER`).

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::harness::{Load, Scenario};
use mt5_chaos::history::History;
use mt5_chaos::report;
use mt5_fixtures::SentinelFixture;

/// The shipped sentinel settings (quorum 2 of 3, `down-after-milliseconds` 5000): the 10 s
/// target is for them.
const SHIPPED_SENTINEL_CONF: &str = include_str!("../../configs/redis/sentinel.conf");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_a_sentinel_failover_under_load_async() {
    failover_row("async").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_a_sentinel_failover_under_load_replicated() {
    failover_row("replicated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_a_sentinel_failover_under_load_fsync() {
    failover_row("fsync").await;
}

/// The row for `durability` (`async`, `replicated` or `fsync`).
async fn failover_row(durability: &str) {
    let mut fx = SentinelFixture::start_with_config(2, SHIPPED_SENTINEL_CONF)
        .await
        .expect("the sentinel topology");
    let server = fx.servers()[0].server_version().await.expect("the server's version");
    let row = format!("10 failover ({durability}, {server})");
    let (sc, checker) = common::sentinel_scenario("failover", &fx, durability);
    if durability == "fsync" {
        if !fx.servers()[0].has_command("WAITAOF").await.unwrap() {
            fsync_is_refused(&sc, &server).await;
            return;
        }
        // As the shipped configs (every write fsynced before it is answered), and the replicas
        // past the AOF rewrite that follows their initial sync.
        fx.config_set_all("appendfsync", "always").await.unwrap();
        fx.wait_replicas_fsyncing(fx.servers()[0].port(), 2, Duration::from_secs(20))
            .await
            .expect("the replicas acknowledge AOF fsyncs");
    }
    let mut filters = common::start_filters(&sc, &["f1", "f2"]).await;
    let history = sc.history_path("load");
    let load = Load::news(400.0, 3200, history.clone())
        .with_idempotency_key_prefix(format!("failover-{}", fx.servers()[0].prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let effects_before = checker.output_len().await.unwrap();
    assert!(effects_before > 0, "nothing flowed before the failover");
    let old = fx.master_port().await.unwrap();
    fx.server_mut(0).kill().await.unwrap();
    let killed_ms = chrono::Utc::now().timestamp_millis();
    let killed = Instant::now();
    let new = fx
        .wait_for_promotion(old, Duration::from_secs(30))
        .await
        .expect("a replica promoted");
    let promoted = killed.elapsed();
    // The first effect the promoted master got after the kill.
    let at_promotion = checker.output_len().await.unwrap_or(0);
    let first_effect = loop {
        if checker.output_len().await.unwrap_or(0) > at_promotion {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no effect after the failover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    common::finish_load(
        &mut publisher,
        Duration::from_secs(60),
        &checker,
        &mut filters,
        "failover",
    )
    .await;

    // The first publish acknowledged after the kill, from the publisher's history.
    let first_ack_ms = History::read(&[&history])
        .unwrap()
        .lines
        .iter()
        .map(|l| l.published_at_ms)
        .filter(|&t| t > killed_ms)
        .min()
        .expect("a publish acknowledged after the kill");
    let first_ack = Duration::from_millis((first_ack_ms - killed_ms).max(0) as u64);
    let verdict = checker.check(&[history]).await.unwrap().with_recovery(first_effect);
    let lost = verdict.lost;
    let last = fx.master_port().await.unwrap_or(0);
    let verdict = verdict.with_faults(format!(
        "master SIGKILL under load, 2 replicas, 3 sentinels (shipped sentinel.conf), durability {durability} on {server}: port {old} → {new} promoted after {:.1} s (master at the end: {last}); first acknowledged publish {:.1} s and first new effect {:.1} s after the kill; {lost} acknowledged lost",
        promoted.as_secs_f64(),
        first_ack.as_secs_f64(),
        first_effect.as_secs_f64(),
    ));
    report::record(&row, &verdict).unwrap();
    eprintln!("{}", verdict.line());
    if lost > 0 || last != new {
        eprintln!("{}", fx.sentinel_logs(40));
    }
    assert_eq!(verdict.duplicated_effects, 0, "{}", verdict.line());
    assert_eq!(verdict.pending, 0, "{}", verdict.line());
    // `replicated` and `fsync` acknowledge only what a replica has. Asynchronous replication on
    // loopback lags by well under a second of load: losing more than that is not replication
    // lag but a client writing to the wrong server.
    let allowed = if durability == "async" { 400 } else { 0 };
    assert!(
        lost <= allowed,
        "lost {lost} acknowledged publishes in {durability} mode (at most {allowed}): {}\n{}",
        verdict.line(),
        fx.sentinel_logs(40)
    );
    assert!(
        first_ack < Duration::from_secs(10) && first_effect < Duration::from_secs(10),
        "the services took longer than 10 s to resume: {}",
        verdict.line()
    );
}

/// `fsync` on a server without `WAITAOF`: a filter and a publish refuse to start (exit 2) and
/// say why, before touching a stream.
async fn fsync_is_refused(sc: &Scenario, server: &str) {
    let mut filter = sc.spawn_filter("f1").await.expect("spawn a filter");
    let status = filter.wait_exit(Duration::from_secs(30)).await.unwrap();
    let stderr = filter.stderr_tail(20);
    assert_eq!(status.code(), Some(2), "the filter in fsync mode on {server}: {stderr}");
    assert!(stderr.contains("WAITAOF"), "{stderr}");
    let load = Load::news(100.0, 10, sc.history_path("load"));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();
    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    let stderr = publisher.stderr_tail(20);
    assert_eq!(
        status.code(),
        Some(2),
        "the publisher in fsync mode on {server}: {stderr}"
    );
    assert!(stderr.contains("WAITAOF"), "{stderr}");
    eprintln!("10 failover (fsync, {server}): refused at start (no WAITAOF), as it should be");
}
