//! Helpers of the filter tests: raw events, deliveries, the labelled headlines.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use mt5_bus::{Delivery, Event};
use mt5_news::filter::NEWS_RAW_TYPE;
use serde::Deserialize;
use serde_json::{json, Value};

/// A `news.raw.v1` payload as the fetcher writes it; `polarity: None` leaves out
/// `article.sentiment`.
pub(crate) fn raw_data(ticker: &str, date: &str, title: &str, content: &str, polarity: Option<f64>) -> Value {
    let mut data = json!({
        "ticker": ticker,
        "fetch_time": "2025-06-03T12:00:00.000Z",
        "source_query": format!("s={ticker}"),
        "article": {
            "date": date,
            "title": title,
            "content": content,
            "link": format!("https://finance.example.com/news/{}", title.len()),
            "symbols": [ticker],
            "tags": ["EARNINGS"],
        }
    });
    if let Some(p) = polarity {
        data["article"]["sentiment"] = json!({"polarity": p, "neg": 0.02, "neu": 0.8, "pos": 0.18});
    }
    data
}

/// A `news.raw.v1` event with the `ticker` extension, as the fetcher publishes it.
pub(crate) fn raw_event(data: Value) -> Event {
    let ticker = data["ticker"].as_str().unwrap_or_default().to_string();
    Event::new("eodhd", NEWS_RAW_TYPE, data)
        .with_extension("ticker", ticker)
        .unwrap()
}

/// A delivery of `event` from `stream`, read once.
pub(crate) fn delivery(stream: &str, entry_id: &str, event: Event) -> Delivery {
    Delivery {
        stream: stream.to_string(),
        group: "news-filter-group".to_string(),
        entry_id: entry_id.to_string(),
        deliveries: 1,
        event,
    }
}

/// `fixtures/data/headlines/labelled.json`.
#[derive(Debug, Deserialize)]
pub(crate) struct LabelledSet {
    pub(crate) about: String,
    pub(crate) labelled_on: String,
    /// The time the test pins its clock to, so freshness is not under test.
    pub(crate) clock: DateTime<Utc>,
    pub(crate) items: Vec<Labelled>,
}

/// One labelled headline.
#[derive(Debug, Deserialize)]
pub(crate) struct Labelled {
    pub(crate) id: String,
    pub(crate) ticker: String,
    /// Interesting for a trader, by reading.
    pub(crate) interesting: bool,
    pub(crate) why: String,
    pub(crate) date: String,
    pub(crate) title: String,
    pub(crate) content: String,
}

impl LabelledSet {
    /// `fixtures/data/headlines/labelled.json`.
    pub(crate) fn load() -> Self {
        Self::load_named("labelled.json")
    }

    /// A file of `fixtures/data/headlines/`.
    pub(crate) fn load_named(name: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/data/headlines")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    }
}

/// The defaults with the keyword rule off and `positive` mode, so a test turns on exactly the
/// rules it is about.
pub(crate) fn base_config() -> mt5_news::filter::FilterConfig {
    let none: [&str; 0] = [];
    mt5_news::filter::FilterConfig::default()
        .with_keywords(none)
        .with_sentiment_mode(mt5_news::filter::SentimentMode::Positive)
}
