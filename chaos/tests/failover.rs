//! Scenario 10: Sentinel failover under load. A master, two replicas and three sentinels on
//! loopback (`SentinelFixture`); a publisher and two filters, all `mt5-hub` processes in sentinel
//! mode, made once. The master is SIGKILLed mid-load; a replica is promoted; every service
//! resumes without a restart. Reported: the time from the kill to the first acknowledged publish
//! and to the first new effect, and what asynchronous replication lost. Asserted: no effect
//! twice, the PEL drained, every service resumed within 10 s, and no more lost than a second of
//! load (what replication lag on loopback can explain).

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{Load, Scenario};
use mt5_chaos::history::History;
use mt5_chaos::report;
use mt5_fixtures::SentinelFixture;

/// The sentinels call the master down after this long without an answer (the shipped sentinel
/// settings are the production ones; this is the test's, to keep CI short).
const DOWN_AFTER_MS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_follow_a_sentinel_failover_under_load() {
    let mut fx = SentinelFixture::start(2, DOWN_AFTER_MS)
        .await
        .expect("the sentinel topology");
    let master = fx.servers()[0].url();
    let sentinels = fx.sentinel_addrs();
    let list = format!(
        "[{}]",
        sentinels.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",")
    );
    if let Err(e) = mt5_chaos::harness::hub_bin() {
        panic!("{e}");
    }
    // The URL's host is ignored in sentinel mode: point it at a closed port to prove it.
    let sc = Scenario::new("failover", "redis://127.0.0.1:1", &fx.servers()[0].prefix())
        .expect("scenario dir")
        .with_env("MT5_REDIS__MODE", "sentinel")
        .with_env("MT5_REDIS__SENTINEL_MASTER", fx.master_name())
        .with_env("MT5_REDIS__SENTINELS", list);
    let checker = Checker::new(&master, sc.streams.clone()).with_sentinels(fx.master_name(), &sentinels);
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

    let status = publisher.wait_exit(Duration::from_secs(60)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(30)).await.unwrap();
    for f in &mut filters {
        let status = f.try_status().unwrap();
        assert!(
            status.is_none(),
            "{} exited across the failover: {}",
            f.label(),
            f.stderr_tail(10)
        );
    }
    common::stop_all(&mut filters).await;

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
        "master SIGKILL under load, 2 replicas, 3 sentinels (down-after {DOWN_AFTER_MS} ms): port {old} → {new} promoted after {:.1} s (master at the end: {last}); first acknowledged publish {:.1} s and first new effect {:.1} s after the kill; async replication lost {lost} acknowledged",
        promoted.as_secs_f64(),
        first_ack.as_secs_f64(),
        first_effect.as_secs_f64(),
    ));
    report::record("10 failover (async)", &verdict).unwrap();
    eprintln!("{}", verdict.line());
    if lost > 0 || last != new {
        eprintln!("{}", fx.sentinel_logs(40));
    }
    assert_eq!(verdict.duplicated_effects, 0, "{}", verdict.line());
    assert_eq!(verdict.pending, 0, "{}", verdict.line());
    // Asynchronous replication on loopback lags by well under a second of load: losing more than
    // that is not replication lag but a client writing to the wrong server.
    assert!(
        lost <= 400,
        "lost {lost} acknowledged publishes, more than a second of load: {}\n{}",
        verdict.line(),
        fx.sentinel_logs(40)
    );
    assert!(
        first_ack < Duration::from_secs(10) && first_effect < Duration::from_secs(10),
        "the services took longer than 10 s to resume: {}",
        verdict.line()
    );
}
