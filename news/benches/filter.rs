//! CPU cost of the news filter per event, without Redis.
//!
//! The events are `fixtures/data/newsgen/raw-500.jsonl`: 500 `news.raw.v1` payloads (~1.1 KB
//! each) from the Python reference's generator (`NewsGenerator(seed=42).ticker_payloads(500)`),
//! the data of the bus drain benchmark. The rules are that benchmark's: the generator's 20
//! whitelisted tickers and 10 keywords, `min_sentiment` 0.5, `positive` mode, `eodhd` source
//! (the article's own polarity, so VADER does not run), `max_age_hours` 24, on a [`ManualClock`]
//! standing at the generator's `now`. About a third of the events pass; the rest are rejected
//! by every rule in turn.
//!
//! - `filter/outcome`: [`NewsFilter::outcome`] on one delivery, what the consumer calls per
//!   entry: parsing the payload, the rules, the metrics and, for a passing event, building the
//!   `news.filtered.v1` output (and dropping the outcome).
//! - `filter/decide`: [`RawNews::from_json`] and [`FilterRules::decide`] only.
//! - `filter/decide_event_keywords`: the same with the shipped default keyword list
//!   ([`EVENT_KEYWORDS`], 97 keywords) instead of the reference's 10: too many first words for
//!   the keyword scan's SIMD path, so it measures the word-by-word path.
//!
//! Each iteration handles the next event of the 500, round robin, so a figure is the mean cost
//! of an event of the mix. Time is the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall time: on a shared machine the wall time of the same run swings by half as other work
//! takes the cores, while the CPU time the filter spends is what the drain benchmark's
//! consumers pay. `cargo bench -p mt5-news --bench filter` measures (under a minute);
//! `cargo test -p mt5-news --bench filter` runs each once. Profile with
//! `cargo bench -p mt5-news --bench filter -- --profile-time 20 filter/outcome` under
//! `perf record -g`.
//!
//! [`FilterRules::decide`]: mt5_news::filter::FilterRules::decide
//! [`EVENT_KEYWORDS`]: mt5_news::filter::EVENT_KEYWORDS

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mt5_bus::{Delivery, Event};
use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
use mt5_news::filter::{
    FilterConfig, FilterMetrics, ManualClock, NewsFilter, RawNews, RejectReason, SentimentMode, SentimentSource,
    EVENT_KEYWORDS, NEWS_RAW_TYPE,
};
use serde_json::Value;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

/// The events, one `news.raw.v1` data payload per line.
const EVENTS: &str = include_str!("../../fixtures/data/newsgen/raw-500.jsonl");
/// The generator's `now` when the fixture was written: the article dates are relative to it.
const NOW: &str = "2026-05-04T15:30:00Z";
/// `newsgen.WHITELIST`.
const TICKERS: [&str; 20] = [
    "AAPL.US", "MSFT.US", "NVDA.US", "AMZN.US", "GOOGL.US", "META.US", "TSLA.US", "JPM.US", "XOM.US", "JNJ.US", "V.US",
    "PG.US", "UNH.US", "HD.US", "MA.US", "BAC.US", "AVGO.US", "LLY.US", "COST.US", "NFLX.US",
];
/// `newsgen.KEYWORDS`.
const KEYWORDS: [&str; 10] = [
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
];

fn now() -> DateTime<Utc> {
    NOW.parse().expect("NOW is an RFC 3339 time")
}

/// The fixture's events as the consumer hands them over: one delivery each, with the `ticker`
/// and `traceparent` extensions the fetcher and the bus set.
fn deliveries() -> Vec<Delivery> {
    EVENTS
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let data: Value = serde_json::from_str(line).expect("the fixture is JSON lines");
            let ticker = data["ticker"].as_str().unwrap_or_default().to_string();
            let event = Event::new("eodhd", NEWS_RAW_TYPE, data)
                .with_extension("ticker", ticker)
                .unwrap()
                .with_extension("traceparent", format!("00-{i:032x}-{i:016x}-01"))
                .unwrap();
            Delivery {
                stream: "mt5:events:news_raw".into(),
                group: "news-filter-group".into(),
                entry_id: format!("1777908600000-{i}"),
                deliveries: 1,
                event,
            }
        })
        .collect()
}

fn filter() -> NewsFilter {
    filter_with(&KEYWORDS)
}

fn filter_with(keywords: &[&str]) -> NewsFilter {
    let cfg = FilterConfig::default()
        .with_tickers(TICKERS)
        .with_keywords(keywords.iter().copied())
        .with_min_sentiment(0.5)
        .with_sentiment_mode(SentimentMode::Positive)
        .with_sentiment_source(SentimentSource::Eodhd)
        .with_max_age_hours(24);
    NewsFilter::new(cfg, FilterMetrics::unregistered())
        .expect("the bench config is valid")
        .with_clock(ManualClock::new(now()))
}

/// Prints the decision mix of one pass over the events, so a figure can be read against it.
fn print_mix(deliveries: &[Delivery]) {
    let f = filter();
    for d in deliveries {
        black_box(f.outcome(d));
    }
    let m = f.metrics();
    let rejected: Vec<String> = RejectReason::ALL
        .iter()
        .map(|r| format!("{r} {}", m.count(REJECTED, r.as_str())))
        .collect();
    println!(
        "filter bench: {} events: passed {}, rejected: {}, invalid {}",
        deliveries.len(),
        m.count(PASSED, PASSED),
        rejected.join(", "),
        m.count(INVALID, INVALID)
    );
}

fn bench_filter(c: &mut Criterion<ThreadCpuTime>) {
    let deliveries = deliveries();
    print_mix(&deliveries);
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(1));

    let f = filter();
    let mut next = deliveries.iter().cycle();
    group.bench_function("outcome", |b| {
        b.iter(|| f.outcome(next.next().expect("cycle never ends")));
    });

    let now = now();
    let event_keywords = filter_with(EVENT_KEYWORDS);
    for (name, f) in [("decide", &f), ("decide_event_keywords", &event_keywords)] {
        let rules = f.rules();
        let mut next = deliveries.iter().cycle();
        group.bench_function(name, |b| {
            b.iter(|| {
                let d = next.next().expect("cycle never ends");
                let ticker = d.event.extensions.get("ticker").map(String::as_str);
                let news = RawNews::from_json(d.event.data.get(), ticker).expect("the fixture is valid news.raw.v1");
                rules.decide(&news, now)
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = bench_filter
}
criterion_main!(benches);
