//! The handler's outcomes and the filtered event's fields, without Redis.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use mt5_bus::envelope::format_time;
use mt5_bus::{DeadLetterReason, Event, Handler, Outcome};
use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
use mt5_news::filter::{
    FilterConfig, FilterMetrics, ManualClock, NewsFilter, SentimentMode, SentimentSource, FILTER_SOURCE,
    NEWS_FILTERED_TYPE, NEWS_RAW_TYPE,
};
use serde_json::json;

use super::support::{base_config, delivery, raw_data, raw_event};

const GOOD_TITLE: &str = "Acme beats estimates and raises guidance after a great quarter";
const GOOD_CONTENT: &str = "Acme reported strong growth in every segment and record profit.";
const BAD_TITLE: &str = "Acme shares crash after fraud charges and terrible losses";
const FLAT_TITLE: &str = "Acme to hold its annual meeting on Tuesday";

fn now() -> DateTime<Utc> {
    "2025-06-03T12:00:00Z".parse().unwrap()
}

fn hours_ago(h: i64) -> String {
    (now() - TimeDelta::hours(h)).to_rfc3339()
}

fn filter(cfg: FilterConfig) -> (NewsFilter, FilterMetrics, Arc<ManualClock>) {
    let metrics = FilterMetrics::unregistered();
    let clock = Arc::new(ManualClock::new(now()));
    let f = NewsFilter::new(cfg, metrics.clone()).unwrap().with_clock(clock.clone());
    (f, metrics, clock)
}

fn emitted(outcome: Outcome) -> (String, Event) {
    match outcome {
        Outcome::Emit(mut out) => {
            assert_eq!(out.len(), 1, "one output per passing event");
            let e = out.remove(0);
            (e.stream, e.event)
        }
        other => panic!("expected Emit, got {other:?}"),
    }
}

/// A passing event becomes one `news.filtered.v1` event on the output stream: the raw data (the
/// article's own sentiment included) plus raw_id, raw_entry_id, filter_time, sentiment, matched.
#[tokio::test]
async fn a_passing_event_is_emitted_with_the_filter_fields() {
    let (f, metrics, _) = filter(base_config().with_keywords(["guidance", "merger"]));
    let data = raw_data("ACME.US", &hours_ago(2), GOOD_TITLE, GOOD_CONTENT, Some(-0.2));
    let raw = raw_event(data.clone())
        .with_extension("traceparent", "00-abc-def-01")
        .unwrap();
    let d = delivery("mt5:events:news_raw", "1717400000000-0", raw.clone());

    let (stream, out) = emitted(f.handle(&d).await);
    assert_eq!(stream, "mt5:events:news_filtered");
    assert_eq!(out.event_type, NEWS_FILTERED_TYPE);
    assert_eq!(out.source, FILTER_SOURCE);
    assert_ne!(out.id, raw.id, "a new event with its own id");
    assert_eq!(out.extensions.get("ticker").map(String::as_str), Some("ACME.US"));
    assert_eq!(
        out.extensions.get("traceparent").map(String::as_str),
        Some("00-abc-def-01")
    );

    let mut expected = data;
    let score = out.data.to_value()["sentiment"]["score"].as_f64().unwrap();
    assert!(score > 0.5, "{score}");
    expected["raw_id"] = json!(raw.id);
    expected["raw_entry_id"] = json!("1717400000000-0");
    expected["filter_time"] = json!(format_time(&now()));
    expected["sentiment"] = json!({"score": score, "model": "vader"});
    expected["matched"] = json!({"ticker": "ACME.US", "keywords": ["guidance"]});
    assert_eq!(out.data, expected);
    assert_eq!(
        out.data.to_value()["article"]["sentiment"]["polarity"],
        json!(-0.2),
        "the article's own sentiment is kept"
    );
    assert_eq!(metrics.count(PASSED, PASSED), 1);
    assert_eq!(
        f.metrics().count(PASSED, PASSED),
        1,
        "the filter's metrics are the ones it was given"
    );
}

/// Each failed rule is a plain Ack, counted with its reason.
#[tokio::test]
async fn rejected_events_are_acked_and_counted_by_reason() {
    let (f, metrics, _) = filter(
        base_config()
            .with_tickers(["ACME.US", "BETA.US"])
            .with_keywords(["guidance", "fraud", "meeting"]),
    );
    let cases = [
        ("OTHER.US", hours_ago(1), GOOD_TITLE, "ticker"),
        ("ACME.US", hours_ago(30), GOOD_TITLE, "stale"),
        (
            "BETA.US",
            hours_ago(1),
            "Acme posts a great, wonderful quarter",
            "keywords",
        ),
        ("ACME.US", hours_ago(1), BAD_TITLE, "sentiment"),
        ("ACME.US", hours_ago(1), FLAT_TITLE, "sentiment"),
    ];
    for (i, (ticker, date, title, _)) in cases.iter().enumerate() {
        let d = delivery(
            "in",
            &format!("{i}-0"),
            raw_event(raw_data(ticker, date, title, "", None)),
        );
        assert_eq!(f.handle(&d).await, Outcome::Ack, "case {i}");
    }
    for (reason, n) in [("ticker", 1), ("stale", 1), ("keywords", 1), ("sentiment", 2)] {
        assert_eq!(metrics.count(REJECTED, reason), n, "{reason}");
    }
    assert_eq!(metrics.count(PASSED, PASSED), 0);
}

/// In `abs` mode strongly negative news passes, with its negative score.
#[tokio::test]
async fn abs_mode_emits_strongly_negative_news() {
    let (f, _, _) = filter(base_config().with_sentiment_mode(SentimentMode::Abs));
    let d = delivery(
        "in",
        "1-0",
        raw_event(raw_data("ACME.US", &hours_ago(1), BAD_TITLE, "", None)),
    );
    let (_, out) = emitted(f.handle(&d).await);
    assert!(out.data.to_value()["sentiment"]["score"].as_f64().unwrap() < -0.5);
    let d = delivery(
        "in",
        "2-0",
        raw_event(raw_data("ACME.US", &hours_ago(1), FLAT_TITLE, "", None)),
    );
    assert_eq!(f.handle(&d).await, Outcome::Ack);
}

/// With `sentiment_source = "eodhd"` the article's polarity is the score (model `eodhd`); without
/// one the filter falls back to VADER and says so (model `vader_fallback`).
#[tokio::test]
async fn eodhd_source_uses_the_polarity_or_says_it_fell_back() {
    let (f, _, _) = filter(base_config().with_sentiment_source(SentimentSource::Eodhd));
    let d = delivery(
        "in",
        "1-0",
        raw_event(raw_data("ACME.US", &hours_ago(1), FLAT_TITLE, "", Some(0.93))),
    );
    let (_, out) = emitted(f.handle(&d).await);
    assert_eq!(
        out.data.to_value()["sentiment"],
        json!({"score": 0.93, "model": "eodhd"})
    );

    let d = delivery(
        "in",
        "2-0",
        raw_event(raw_data("ACME.US", &hours_ago(1), GOOD_TITLE, "", Some(0.1))),
    );
    assert_eq!(
        f.handle(&d).await,
        Outcome::Ack,
        "a low EODHD polarity rejects even a glowing title"
    );

    let d = delivery(
        "in",
        "3-0",
        raw_event(raw_data("ACME.US", &hours_ago(1), GOOD_TITLE, "", None)),
    );
    let (_, out) = emitted(f.handle(&d).await);
    assert_eq!(out.data.to_value()["sentiment"]["model"], "vader_fallback");
}

/// Freshness and filter_time follow the injected clock.
#[tokio::test]
async fn the_injected_clock_drives_freshness_and_filter_time() {
    let (f, metrics, clock) = filter(base_config());
    let raw = raw_event(raw_data("ACME.US", &hours_ago(23), GOOD_TITLE, "", None));
    let d = delivery("in", "1-0", raw);
    let (_, out) = emitted(f.handle(&d).await);
    assert_eq!(out.data.to_value()["filter_time"], json!(format_time(&now())));
    clock.advance(TimeDelta::hours(2));
    assert_eq!(f.handle(&d).await, Outcome::Ack);
    assert_eq!(metrics.count(REJECTED, "stale"), 1);
}

/// Data that is not a news.raw.v1 payload is dead-lettered (reason handler) with an error that
/// names the field, and counted as invalid.
#[tokio::test]
async fn invalid_data_is_dead_lettered_with_the_field_named() {
    let (f, metrics, _) = filter(base_config());
    for (data, field) in [
        (json!("just text"), "data"),
        (json!({"ticker": "ACME.US"}), "article"),
        (
            json!({"ticker": "ACME.US", "article": {"title": "T", "date": "last week"}}),
            "article.date",
        ),
    ] {
        let d = delivery("in", "1-0", Event::new("eodhd", NEWS_RAW_TYPE, data));
        match f.handle(&d).await {
            Outcome::DeadLetter { reason, error } => {
                assert_eq!(reason, DeadLetterReason::Handler);
                assert!(error.contains(field), "{error:?} should name {field}");
            }
            other => panic!("expected DeadLetter, got {other:?}"),
        }
    }
    assert_eq!(metrics.count(INVALID, INVALID), 3);
}

/// The filter handles news.raw.v1 only; anything else is unsupported.
#[tokio::test]
async fn only_raw_news_is_handled() {
    let (f, metrics, _) = filter(base_config());
    assert!(f.handles(NEWS_RAW_TYPE));
    assert!(!f.handles(NEWS_FILTERED_TYPE));
    assert!(!f.handles("news.raw.v2"));
    let e = Event::new(
        "eodhd",
        "news.raw.v2",
        raw_data("ACME.US", &hours_ago(1), GOOD_TITLE, "", None),
    );
    match f.handle(&delivery("in", "1-0", e)).await {
        Outcome::DeadLetter { reason, .. } => assert_eq!(reason, DeadLetterReason::Unsupported),
        other => panic!("{other:?}"),
    }
    assert_eq!(metrics.count(INVALID, INVALID), 0);
}

/// A missing data.ticker falls back to the event's ticker extension, and the filtered data gets it.
#[tokio::test]
async fn the_ticker_extension_stands_in_for_a_missing_data_ticker() {
    let (f, _, _) = filter(base_config().with_tickers(["ACME"]));
    let mut data = raw_data("ACME.US", &hours_ago(1), GOOD_TITLE, "", None);
    data.as_object_mut().unwrap().remove("ticker");
    let e = Event::new("eodhd", NEWS_RAW_TYPE, data)
        .with_extension("ticker", "ACME.US")
        .unwrap();
    let (_, out) = emitted(f.handle(&delivery("in", "1-0", e)).await);
    assert_eq!(out.data.to_value()["ticker"], "ACME.US");
    assert_eq!(out.data.to_value()["matched"]["ticker"], "ACME.US");
}

/// An invalid config is refused when the filter is built, naming the key.
#[test]
fn an_invalid_config_is_refused_at_construction() {
    let err = NewsFilter::new(base_config().with_min_sentiment(2.0), FilterMetrics::unregistered()).unwrap_err();
    assert!(
        matches!(&err, mt5_news::Error::Config(c) if c.key() == "news.filter.min_sentiment"),
        "{err}"
    );
}

/// `[news.filter]` in TOML, as in the hub's config file, parses with every key.
#[test]
fn the_toml_section_parses() {
    let cfg: FilterConfig = toml::from_str(
        r#"
        tickers = ["AAPL.US", "MSFT"]
        keywords = ["guidance", "share buyback"]
        min_sentiment = 0.4
        sentiment_mode = "abs"
        sentiment_source = "eodhd"
        max_age_hours = 12
        input_stream = "in"
        output_stream = "out"
        group = "g"
        sentiment_cache_size = 100
        sentiment_content_chars = 0
        "#,
    )
    .unwrap();
    assert_eq!(cfg.sentiment_mode, SentimentMode::Abs);
    assert_eq!(cfg.max_age_hours, 12);
    cfg.validate().unwrap();
    assert!(toml::from_str::<FilterConfig>("unknown = 1").is_err());
}
