//! End to end: mock EODHD → fetcher → `news_raw` → two filter consumers → `news_filtered`,
//! checked against the zero-loss invariant, with the e2e latency printed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_bus::{BusMetrics, Consumer, ConsumerOptions};
use mt5_fixtures::streams::{entry_ms, pending, xlen};
use mt5_fixtures::{MockEodhd, RedisFixture};
use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
use mt5_news::filter::{FilterConfig, FilterMetrics, FilterRules, ManualClock, NewsFilter, RawNews};
use tokio_util::sync::CancellationToken;

use crate::fetcher::support::{fetcher, read_all, redis_config, Keys};

/// The `p` quantile (nearest rank) of sorted `values`.
fn quantile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Every raw event the fetcher published ends up decided exactly once by the group: the
/// events the default filter passes (recomputed independently from the raw stream with the
/// same clock) are in `news_filtered` exactly once each, the others were acknowledged and
/// counted by reason, nothing was dead-lettered, and the PEL is empty.
#[tokio::test]
async fn fetched_news_flow_through_two_filter_consumers_without_loss() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let bus = keys.bus();
    let cfg = FilterConfig::default().with_streams(keys.raw.clone(), keys.filtered.clone(), keys.group.clone());
    let clock = Arc::new(ManualClock::new(mock.now()));
    let metrics = FilterMetrics::unregistered();

    // Consumers first, so latency is measured on a live pipeline.
    let fetcher = fetcher(&fx, &mock, &keys).await;
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for name in ["filter-a", "filter-b"] {
        let handler = NewsFilter::new(cfg.clone(), metrics.clone())
            .unwrap()
            .with_clock(clock.clone());
        let consumer = Consumer::new(
            &redis_config(&fx),
            &bus,
            ConsumerOptions::new(&keys.raw, &keys.group).with_name(name),
            handler,
            BusMetrics::unregistered(),
        )
        .unwrap();
        tasks.push(tokio::spawn(consumer.run(cancel.clone())));
    }

    let round = fetcher.round().await.unwrap();
    assert_eq!(round.failed(), 0, "{round:?}");
    let published = round.published() as u64;
    assert!(published > 50);

    let mut conn = fx.connection().await;
    let decided = || metrics.decided();
    let started = Instant::now();
    while decided() < published || pending(&mut conn, &keys.raw, &keys.group).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pipeline did not drain"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    // The invariant.
    let raw = read_all(&mut conn, &keys.raw).await;
    assert_eq!(raw.len() as u64, published, "every publish is in the raw stream");
    let rules = FilterRules::new(cfg.clone()).unwrap();
    let mut expect_pass = HashSet::new();
    let mut raw_entry = HashMap::new();
    for (entry_id, f) in &raw {
        let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
        let news = RawNews::from_data(&data, Some(&f["ticker"])).unwrap();
        if rules.decide(&news, mock.now()).passed() {
            expect_pass.insert(f["id"].clone());
        }
        raw_entry.insert(f["id"].clone(), entry_id.clone());
    }
    let filtered = read_all(&mut conn, &keys.filtered).await;
    let mut got = Vec::new();
    let mut latencies = Vec::new();
    for (entry_id, f) in &filtered {
        let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
        let raw_id = data["raw_id"].as_str().unwrap().to_string();
        let raw_entry_id = data["raw_entry_id"].as_str().unwrap();
        assert_eq!(raw_entry[&raw_id], raw_entry_id);
        latencies.push(entry_ms(entry_id) - entry_ms(raw_entry_id));
        got.push(raw_id);
    }
    let got_set: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "no filtered effect twice");
    assert_eq!(got_set, expect_pass, "exactly the events the rules pass");
    assert!(
        !expect_pass.is_empty() && expect_pass.len() < raw.len(),
        "a mix of passes and rejects"
    );
    assert_eq!(metrics.count(PASSED, PASSED), expect_pass.len() as u64);
    assert_eq!(decided(), published, "every event decided exactly once");
    assert_eq!(metrics.count(INVALID, INVALID), 0);
    let dead = xlen(&mut conn, &keys.deadletter).await;
    assert_eq!(dead, 0, "nothing dead-lettered");
    assert_eq!(pending(&mut conn, &keys.raw, &keys.group).await, 0, "the PEL drained");

    latencies.sort_unstable();
    println!(
        "e2e pipeline: {} raw events, {} passed, rejected: stale {}, keywords {}, sentiment {}; \
         e2e latency (filtered entry - raw entry) p50 {} ms, p95 {} ms, max {} ms; fetch round {} ms",
        published,
        expect_pass.len(),
        metrics.count(REJECTED, "stale"),
        metrics.count(REJECTED, "keywords"),
        metrics.count(REJECTED, "sentiment"),
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.95),
        latencies.last().copied().unwrap_or_default(),
        round.duration.as_millis(),
    );
}
