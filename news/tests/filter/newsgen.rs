//! The filter's decisions on the generated events of `fixtures/data/newsgen/raw-500.jsonl` are
//! the recorded ones, and a passing event's output is exactly the raw data plus the filter's
//! fields: a change to the filter's speed must not change what it decides or writes.
//!
//! `raw-500.decisions.jsonl` was written by the filter as it was before its speed work. Rewrite
//! it (only when a decision is meant to change, and say why in the commit) with
//! `MT5_BLESS_DECISIONS=1 cargo test -p mt5-news --test it filter::newsgen`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use mt5_bus::envelope::format_time;
use mt5_bus::{Delivery, Event, Outcome};
use mt5_news::filter::{
    FilterConfig, FilterMetrics, ManualClock, NewsFilter, SentimentMode, SentimentSource, FILTER_SOURCE,
    NEWS_FILTERED_TYPE, NEWS_RAW_TYPE,
};
use serde_json::{json, Value};

use super::support::delivery;

/// The generator's `now` when the fixture was written.
const NOW: &str = "2026-05-04T15:30:00Z";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/data/newsgen")
}

fn now() -> DateTime<Utc> {
    NOW.parse().unwrap()
}

/// The raw events, each with a fixed id and a `traceparent`, so the outputs are deterministic.
fn deliveries() -> Vec<Delivery> {
    let path = data_dir().join("raw-500.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let data: Value = serde_json::from_str(line).unwrap();
            let ticker = data["ticker"].as_str().unwrap().to_string();
            let event = Event::new("eodhd", NEWS_RAW_TYPE, data)
                .with_id(format!("raw-{i}"))
                .with_extension("ticker", ticker)
                .unwrap()
                .with_extension("traceparent", format!("00-{i:032x}-{i:016x}-01"))
                .unwrap();
            delivery("mt5:events:news_raw", &format!("1777908600000-{i}"), event)
        })
        .collect()
}

/// The configs whose decisions are recorded: the bus drain benchmark's rules (newsgen's
/// whitelist and keywords, EODHD polarity), and the shipped defaults (VADER, abs mode, the
/// ~100 `EVENT_KEYWORDS`, several of them multi-word).
fn configs() -> Vec<(&'static str, FilterConfig)> {
    let newsgen = FilterConfig::default()
        .with_tickers([
            "AAPL.US", "MSFT.US", "NVDA.US", "AMZN.US", "GOOGL.US", "META.US", "TSLA.US", "JPM.US", "XOM.US", "JNJ.US",
            "V.US", "PG.US", "UNH.US", "HD.US", "MA.US", "BAC.US", "AVGO.US", "LLY.US", "COST.US", "NFLX.US",
        ])
        .with_keywords([
            "earnings",
            "revenue",
            "guidance",
            "upgrade",
            "buyback",
            "dividend",
            "contract",
            "partnership",
            "acquisition",
            "outlook",
        ])
        .with_min_sentiment(0.5)
        .with_sentiment_mode(SentimentMode::Positive)
        .with_sentiment_source(SentimentSource::Eodhd)
        .with_max_age_hours(24);
    vec![("newsgen", newsgen), ("default", FilterConfig::default())]
}

/// One recorded decision, and the output of a passing event checked field by field.
fn decision(config: &str, line: usize, d: &Delivery, outcome: Outcome) -> Value {
    match outcome {
        Outcome::Ack => {
            json!({"config": config, "line": line, "decision": "rejected"})
        }
        Outcome::Emit(mut out) => {
            assert_eq!(out.len(), 1);
            let e = out.remove(0);
            assert_eq!(e.stream, "mt5:events:news_filtered");
            assert_eq!(e.event.event_type, NEWS_FILTERED_TYPE);
            assert_eq!(e.event.source, FILTER_SOURCE);
            assert_eq!(
                e.event.extensions, d.event.extensions,
                "ticker and traceparent are kept"
            );
            let data = e.event.data.to_value();
            let mut expected = d.event.data.to_value();
            for field in ["sentiment", "matched"] {
                expected[field] = data[field].clone();
            }
            expected["raw_id"] = json!(d.event.id);
            expected["raw_entry_id"] = json!(d.entry_id);
            expected["filter_time"] = json!(format_time(&now()));
            assert_eq!(data, expected, "line {line}: the raw data plus the filter's fields");
            json!({"config": config, "line": line, "decision": "passed",
                   "sentiment": data["sentiment"], "matched": data["matched"]})
        }
        other => panic!("line {line}: unexpected {other:?}"),
    }
}

/// Every generated event gets the recorded decision (pass or reject, its reject reason, score,
/// model and matched keywords) under both configs, and passing events carry exactly the raw
/// data plus the filter's fields.
#[test]
fn decisions_on_generated_news_are_the_recorded_ones() {
    let deliveries = deliveries();
    let mut got = Vec::new();
    for (name, cfg) in configs() {
        let metrics = FilterMetrics::unregistered();
        let f = NewsFilter::new(cfg, metrics.clone())
            .unwrap()
            .with_clock(ManualClock::new(now()));
        for (line, d) in deliveries.iter().enumerate() {
            let before = reasons(&metrics);
            let mut rec = decision(name, line, d, f.outcome(d));
            let after = reasons(&metrics);
            let changed: Vec<&str> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, _)| a.0)
                .collect();
            assert_eq!(changed.len(), 1, "line {line}: one counter per decision");
            rec["reason"] = json!(changed[0]);
            got.push(rec);
        }
    }
    let path = data_dir().join("raw-500.decisions.jsonl");
    let got_text: String = got.iter().map(|v| format!("{v}\n")).collect();
    if std::env::var_os("MT5_BLESS_DECISIONS").is_some() {
        std::fs::write(&path, &got_text).unwrap();
        return;
    }
    let want_text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (i, (g, w)) in got_text.lines().zip(want_text.lines()).enumerate() {
        assert_eq!(g, w, "decision {i} differs from the recorded one");
    }
    assert_eq!(got_text.lines().count(), want_text.lines().count());
    let passed = got.iter().filter(|v| v["decision"] == "passed").count();
    assert!(
        passed > 100 && passed < got.len() - 100,
        "a mix: {passed} of {} passed",
        got.len()
    );
}

/// Each `decision`/`reason` counter of `metrics`.
fn reasons(metrics: &FilterMetrics) -> Vec<(&'static str, u64)> {
    use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
    use mt5_news::filter::RejectReason;
    let mut out = vec![
        ("passed", metrics.count(PASSED, PASSED)),
        ("invalid", metrics.count(INVALID, INVALID)),
    ];
    for r in RejectReason::ALL {
        out.push((r.as_str(), metrics.count(REJECTED, r.as_str())));
    }
    out
}
