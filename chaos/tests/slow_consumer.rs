//! Scenario 9: a slow consumer: lag and pending grow and are visible in `streams stats --json`
//! and in `/metrics`, then drain when consumers are added.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{Load, Scenario};
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// The group's (lag, pending) from `mt5-hub streams stats --json --stream <raw>`.
async fn stats(sc: &Scenario) -> (u64, u64) {
    let args: Vec<String> = ["streams", "stats", "--json", "--stream", sc.streams.raw.as_str()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = sc.run_to_end("stats", &args, Duration::from_secs(15)).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stats JSON {e}: {out}"));
    let group = v[0]["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == sc.streams.group.as_str()))
        .unwrap_or_else(|| panic!("group missing in {out}"))
        .clone();
    (
        group["lag"].as_u64().unwrap_or(0),
        group["pending"].as_u64().unwrap_or(0),
    )
}

/// One filter slowed to ~10 ms per entry (the `filter-delay` hook) under 200 ev/s for 5 s:
/// the group's lag and pending grow and show in `streams stats --json` and in the filter's
/// `mt5_stream_group_lag` / `mt5_stream_group_pending`; two more filters then drain it to 0, every
/// event filtered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumers_backlog_is_visible_and_drains() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let sc = common::scenario("slow_consumer", &fx);
    let checker = Checker::for_scenario(&sc);
    let mut filters = vec![sc
        .spawn_filter_with("slow-1", &[("FAILPOINTS", "filter-delay=return(10)")])
        .await
        .unwrap()];
    common::ready(&filters[0]).await;
    let history = sc.history_path("load");
    let mut publisher = sc
        .spawn_publisher(&Load::news(200.0, 1000, history.clone()))
        .await
        .unwrap();

    // Lag and pending while the load runs.
    let labels = [
        ("stream", sc.streams.raw.as_str()),
        ("group", sc.streams.group.as_str()),
    ];
    let (mut peak_lag, mut peak_pending, mut peak_metric_lag, mut peak_metric_pending) = (0, 0, 0.0f64, 0.0f64);
    while publisher.try_status().unwrap().is_none() {
        let (lag, pending) = stats(&sc).await;
        let m = filters[0].metrics().await.unwrap();
        peak_lag = peak_lag.max(lag);
        peak_pending = peak_pending.max(pending);
        peak_metric_lag = peak_metric_lag.max(m.sum("mt5_stream_group_lag", &labels));
        peak_metric_pending = peak_metric_pending.max(m.sum("mt5_stream_group_pending", &labels));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = publisher.wait_exit(Duration::from_secs(5)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    let (lag_at_end, _) = stats(&sc).await;

    // The remedy: two more consumers.
    let scaled = Instant::now();
    for name in ["fast-1", "fast-2"] {
        let f = sc.spawn_filter(name).await.unwrap();
        filters.push(f);
    }
    let drained = checker.wait_drained(Duration::from_secs(30)).await.unwrap();
    let (lag, pending) = stats(&sc).await;
    let m = filters[0].metrics().await.unwrap();
    let (metric_lag, metric_pending) = (
        m.sum("mt5_stream_group_lag", &labels),
        m.sum("mt5_stream_group_pending", &labels),
    );
    common::stop_all(&mut filters).await;

    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_faults(format!(
            "1 filter slowed to 10 ms/entry; peak lag {peak_lag} (metric {peak_metric_lag}), peak pending {peak_pending} (metric {peak_metric_pending}), lag {lag_at_end} at load end; +2 filters"
        ))
        .with_recovery(drained);
    report::record("9 slow_consumer", &verdict).unwrap();
    assert!(peak_lag >= 100, "the lag did not grow: peak {peak_lag}");
    assert!(peak_pending > 0 && peak_metric_pending > 0.0, "pending never showed");
    assert!(
        peak_metric_lag >= 100.0,
        "mt5_stream_group_lag did not show the lag: {peak_metric_lag}"
    );
    assert_eq!((lag, pending), (0, 0), "streams stats after the drain");
    assert_eq!((metric_lag, metric_pending), (0.0, 0.0), "metrics after the drain");
    assert!(scaled.elapsed() < Duration::from_secs(30));
    verdict.assert_zero_loss();
}
