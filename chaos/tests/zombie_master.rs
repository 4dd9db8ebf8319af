//! Scenario 11: a zombie master (the Jepsen 2013 Redis finding, on our own data). A master, two
//! replicas and three sentinels on loopback; a publisher and two filters in sentinel mode, their
//! Redis response timeout (30 s) longer than the fault, so a command sent to the master when it
//! froze is still waiting on that connection when it thaws. The master is SIGSTOPped for longer
//! than the failover plus `min-replicas-max-lag` (10 s, the shipped value); a replica is
//! promoted; then the old master is SIGCONTed while those clients still hold connections to it,
//! until the sentinels demote it (its writes since the freeze are then thrown away).
//!
//! Rows: with the shipped fencing (`min-replicas-to-write 1`, `min-replicas-max-lag 10`) in
//! `replicated` and in `async` mode, and without fencing in `async` mode. Asserted: no effect
//! twice, the PEL drained; `replicated` with fencing loses nothing acknowledged. The others
//! report what they lost.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::harness::Load;
use mt5_chaos::report;
use mt5_fixtures::SentinelFixture;

/// The sentinels call the master down after this long without an answer.
const DOWN_AFTER_MS: u64 = 1000;
/// The shipped fencing: the master refuses writes when no replica acknowledged for this long.
const MAX_LAG_S: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_master_with_fencing_loses_nothing_acknowledged_in_replicated_mode() {
    let lost = zombie_row("replicated", true).await;
    assert_eq!(lost, 0, "replicated mode with fencing lost acknowledged publishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_master_with_fencing_in_async_mode_is_reported() {
    zombie_row("async", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_master_without_fencing_in_async_mode_is_reported() {
    zombie_row("async", false).await;
}

/// One row; returns the acknowledged publishes lost.
async fn zombie_row(durability: &str, fenced: bool) -> u64 {
    let fx = SentinelFixture::start(2, DOWN_AFTER_MS)
        .await
        .expect("the sentinel topology");
    let server = fx.servers()[0].server_version().await.expect("the server's version");
    let fencing = if fenced { "fenced" } else { "unfenced" };
    let row = format!("11 zombie master ({durability}, {fencing}, {server})");
    if fenced {
        fx.config_set_all("min-replicas-to-write", "1").await.unwrap();
        fx.config_set_all("min-replicas-max-lag", &MAX_LAG_S.to_string())
            .await
            .unwrap();
    }
    let (sc, checker) = common::sentinel_scenario("zombie", &fx, durability);
    let sc = sc.with_env("MT5_REDIS__RESPONSE_TIMEOUT_MS", "30000");
    let mut filters = common::start_filters(&sc, &["f1", "f2"]).await;
    let history = sc.history_path("load");
    let load = Load::news(400.0, 4000, history.clone())
        .with_idempotency_key_prefix(format!("zombie-{}", fx.servers()[0].prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        checker.output_len().await.unwrap() > 0,
        "nothing flowed before the freeze"
    );
    let old = fx.master_port().await.unwrap();
    fx.servers()[0].pause().await.unwrap();
    let frozen = Instant::now();
    let new = fx
        .wait_for_promotion(old, Duration::from_secs(30))
        .await
        .expect("a replica promoted");
    let promoted = frozen.elapsed();
    // Past the failover and the fencing lag, as the scenario asks.
    let thaw_at = promoted + Duration::from_secs(MAX_LAG_S) + Duration::from_millis(1500);
    tokio::time::sleep(thaw_at.saturating_sub(frozen.elapsed())).await;
    fx.servers()[0].resume().await.unwrap();
    let thawed = frozen.elapsed();
    fx.wait_for_demotion(old, Duration::from_secs(30))
        .await
        .expect("the sentinels demote the old master");
    let demoted = frozen.elapsed();

    common::finish_load(&mut publisher, Duration::from_secs(90), &checker, &mut filters, "fault").await;

    let verdict = checker.check(&[history]).await.unwrap();
    let lost = verdict.lost;
    let verdict = verdict.with_faults(format!(
        "master SIGSTOP under load, 2 replicas, 3 sentinels (down-after {DOWN_AFTER_MS} ms), clients' response timeout 30 s, durability {durability}, {}: port {old} → {new} promoted after {:.1} s; old master SIGCONT at {:.1} s, demoted at {:.1} s; {lost} acknowledged lost",
        if fenced {
            format!("fencing min-replicas-to-write 1 / min-replicas-max-lag {MAX_LAG_S}")
        } else {
            "no fencing".into()
        },
        promoted.as_secs_f64(),
        thawed.as_secs_f64(),
        demoted.as_secs_f64(),
    ));
    report::record(&row, &verdict).unwrap();
    eprintln!("{}", verdict.line());
    assert_eq!(verdict.duplicated_effects, 0, "{}", verdict.line());
    assert_eq!(verdict.pending, 0, "{}", verdict.line());
    lost
}
