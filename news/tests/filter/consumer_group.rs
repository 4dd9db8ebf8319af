//! A filter consumer group on a real Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use mt5_bus::config::GroupSpec;
use mt5_bus::{BusConfig, BusMetrics, Consumer, ConsumerOptions, Event, EventProducer, RedisConfig};
use mt5_fixtures::streams::{pending, read_all, xlen};
use mt5_fixtures::RedisFixture;
use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
use mt5_news::filter::{FilterMetrics, ManualClock, NewsFilter, NEWS_FILTERED_TYPE, NEWS_RAW_TYPE};
use prometheus::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::support::{base_config, raw_data, raw_event};

fn now() -> DateTime<Utc> {
    "2025-06-03T12:00:00Z".parse().unwrap()
}

fn hours_ago(h: i64) -> String {
    (now() - TimeDelta::hours(h)).to_rfc3339()
}

/// Two filter consumers on real Redis: passing raw events land once each in the filtered stream
/// with the filter's fields, rejects are acknowledged without output, invalid data is
/// dead-lettered as `handler` and an unknown type as `unsupported`, and the PEL drains to zero.
#[tokio::test]
async fn filter_consumers_route_raw_news_through_redis() {
    let fx = RedisFixture::start().await.unwrap();
    let p = fx.prefix();
    let cfg = base_config().with_streams(
        format!("{p}:news_raw"),
        format!("{p}:news_filtered"),
        "news-filter-group",
    );
    let dlq = format!("{p}:deadletter");
    let redis = RedisConfig::default().with_url(fx.url());
    let mut bus = BusConfig::default();
    bus.deadletter_stream = dlq.clone();
    bus.groups = vec![GroupSpec {
        stream: cfg.input_stream.clone(),
        group: cfg.group.clone(),
    }];
    bus.consumer.block_ms = 100;
    bus.consumer.heartbeat_ttl_ms = 1000;
    bus.consumer.heartbeat_interval_ms = 200;
    bus.consumer.shutdown_timeout_ms = 3000;
    bus.reclaim.interval_ms = 200;

    let producer = EventProducer::connect(&redis, &bus, BusMetrics::unregistered(), CancellationToken::new())
        .await
        .unwrap();
    producer.ensure_groups().await.unwrap();

    let good = "Acme beats estimates and raises guidance after a great quarter";
    let passing: Vec<Event> = ["ACME.US", "BETA.US", "GAMMA.US"]
        .iter()
        .map(|t| {
            raw_event(raw_data(
                t,
                &hours_ago(1),
                good,
                "Strong growth and record profit.",
                None,
            ))
        })
        .collect();
    let rejected = vec![
        raw_event(raw_data("ACME.US", &hours_ago(48), good, "", None)),
        raw_event(raw_data(
            "ACME.US",
            &hours_ago(1),
            "Acme to hold its annual meeting on Tuesday",
            "",
            None,
        )),
        raw_event(raw_data(
            "ACME.US",
            &hours_ago(1),
            "Acme shares crash after fraud charges",
            "",
            None,
        )),
    ];
    let invalid = Event::new(
        "eodhd",
        NEWS_RAW_TYPE,
        json!({"ticker": "ACME.US", "article": {"title": good}}),
    );
    let unknown = Event::new("eodhd", "news.unknown.v1", json!({"ticker": "ACME.US"}));
    let mut raw_entry_ids = HashMap::new();
    for e in passing.iter().chain(&rejected).chain([&invalid, &unknown]) {
        let published = producer.publish(&cfg.input_stream, e).await.unwrap();
        raw_entry_ids.insert(e.id.clone(), published.entry_id.clone());
    }
    let total = raw_entry_ids.len();

    let registry = Registry::new();
    let metrics = FilterMetrics::register(&registry).unwrap();
    let clock = Arc::new(ManualClock::new(now()));
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for name in ["filter-1", "filter-2"] {
        let handler = NewsFilter::new(cfg.clone(), metrics.clone())
            .unwrap()
            .with_clock(clock.clone());
        let consumer = Consumer::new(
            &redis,
            &bus,
            ConsumerOptions::new(&cfg.input_stream, &cfg.group).with_name(name),
            handler,
            BusMetrics::unregistered(),
        )
        .unwrap();
        tasks.push(tokio::spawn(consumer.run(cancel.clone())));
    }

    let mut conn = fx.connection().await;
    let started = Instant::now();
    let decided = || metrics.decided();
    loop {
        let done = decided() == (total - 1) as u64
            && xlen(&mut conn, &dlq).await == 2
            && pending(&mut conn, &cfg.input_stream, &cfg.group).await == 0;
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the filter did not drain in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    // Passing events: exactly once each, with the filter's fields.
    let filtered = read_all(&mut conn, &cfg.output_stream).await;
    assert_eq!(filtered.len(), passing.len());
    let mut seen = Vec::new();
    for (_, f) in &filtered {
        assert_eq!(f["type"], NEWS_FILTERED_TYPE);
        assert_eq!(f["source"], "mt5-hub/filter");
        let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
        let raw_id = data["raw_id"].as_str().unwrap().to_string();
        assert_eq!(data["raw_entry_id"].as_str().unwrap(), raw_entry_ids[&raw_id]);
        assert_eq!(f["ticker"], data["ticker"].as_str().unwrap());
        assert_eq!(data["matched"]["ticker"], data["ticker"]);
        assert_eq!(data["sentiment"]["model"], "vader");
        assert!(data["sentiment"]["score"].as_f64().unwrap() > 0.5);
        assert_eq!(data["article"]["title"], good);
        seen.push(raw_id);
    }
    seen.sort();
    let mut want: Vec<String> = passing.iter().map(|e| e.id.clone()).collect();
    want.sort();
    assert_eq!(seen, want);

    // Dead letters: the invalid payload (handler) and the unknown type (unsupported).
    let dead: HashMap<String, String> = read_all(&mut conn, &dlq)
        .await
        .into_iter()
        .map(|(_, f)| (f["id"].clone(), f["dlq_reason"].clone()))
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[&invalid.id], "handler");
    assert_eq!(dead[&unknown.id], "unsupported");

    // Rejects: acknowledged, counted, nothing written.
    assert_eq!(metrics.count(REJECTED, "stale"), 1);
    assert_eq!(metrics.count(REJECTED, "sentiment"), 2);
    assert_eq!(metrics.count(PASSED, PASSED), 3);
    assert_eq!(metrics.count(INVALID, INVALID), 1);
    assert_eq!(
        pending(&mut conn, &cfg.input_stream, &cfg.group).await,
        0,
        "the PEL must drain"
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"mt5_news_filter_total{decision="rejected",reason="stale"} 1"#),
        "{text}"
    );
}
