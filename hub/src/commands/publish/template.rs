//! `publish --rate --template news`: load events that are valid `news.raw.v1` payloads and pass
//! the default `[news.filter]` rules (a result keyword, strong VADER sentiment, dated now), so
//! every one has an observable effect in the filtered stream. The chaos checker relies on it: a
//! rejected event is acknowledged without a trace and would look exactly like a loss.
//!
//! With `--poison-every K`, every K-th event (seq K-1, 2K-1, ...) carries the poison marker in
//! its title. A poison is an ordinary, valid event; it only becomes a poison for a filter started
//! with the `filter-poison` fault injection hook (see `docs/reliability.md`, "Fault injection
//! hooks"), which aborts its process on such a title.

use mt5_bus::envelope::format_time;
use mt5_bus::Event;
use serde_json::{json, Value};

/// The event type of `--template news`.
pub(crate) const NEWS_RAW_TYPE: &str = "news.raw.v1";
/// The ticker of template events.
const TICKER: &str = "ACME.US";
/// The default `--poison-marker`.
pub(crate) const DEFAULT_POISON_MARKER: &str = "CHAOS-POISON";

/// Whether event `seq` is a poison under `--poison-every every`.
pub(crate) fn is_poison(seq: u64, every: Option<u64>) -> bool {
    every.is_some_and(|k| k > 0 && (seq + 1) % k == 0)
}

/// The `news.raw.v1` data of event `seq`, dated now; `poison` puts `marker` into the title.
pub(crate) fn news_data(seq: u64, poison: Option<&str>) -> Value {
    let now = format_time(&chrono::Utc::now());
    let title = match poison {
        Some(marker) => format!("Acme beats estimates and raises guidance after a great quarter {marker} #{seq}"),
        None => format!("Acme beats estimates and raises guidance after a great quarter #{seq}"),
    };
    json!({
        "ticker": TICKER,
        "fetch_time": now,
        "source_query": "mt5-hub publish --template news",
        "article": {
            "date": now,
            "title": title,
            "content": "Acme Corp reported record revenue and strong profit growth, beating analyst estimates. Great results.",
            "link": format!("https://news.example.invalid/acme/{seq}"),
            "symbols": [TICKER],
            "tags": ["earnings", "chaos-load"],
            "sentiment": {"polarity": 0.9, "neg": 0.0, "neu": 0.6, "pos": 0.4},
        },
    })
}

/// Event `seq` of the news template.
pub(crate) fn news_event(source: &str, seq: u64, poison: Option<&str>) -> Event {
    Event::new(source, NEWS_RAW_TYPE, news_data(seq, poison))
        .with_extension("ticker", TICKER)
        .expect("`ticker` is a valid extension name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mt5_news::filter::{Decision, FilterConfig, FilterRules, RawNews};

    /// Good and poison events both pass the default filter rules (keywords and |VADER| > 0.5).
    #[test]
    fn template_events_pass_the_default_filter() {
        let rules = FilterRules::new(FilterConfig::default()).unwrap();
        for (seq, poison) in [(0, None), (41, None), (9, Some(DEFAULT_POISON_MARKER))] {
            let data = news_data(seq, poison);
            let news = RawNews::from_data(&data, None).unwrap();
            let decision = rules.decide(&news, chrono::Utc::now());
            assert!(matches!(decision, Decision::Pass { .. }), "{seq}: {decision:?}");
        }
    }

    /// Every K-th event is a poison; none without `--poison-every`.
    #[test]
    fn every_kth_event_is_a_poison() {
        let p: Vec<u64> = (0..30).filter(|s| is_poison(*s, Some(10))).collect();
        assert_eq!(p, vec![9, 19, 29]);
        assert!(!(0..30).any(|s| is_poison(s, None)));
    }

    /// Titles and links are unique per seq; the poison marker is in the title.
    #[test]
    fn titles_and_links_are_unique() {
        let a = news_data(1, None);
        let b = news_data(2, Some("XX"));
        assert_ne!(a["article"]["title"], b["article"]["title"]);
        assert_ne!(a["article"]["link"], b["article"]["link"]);
        assert!(b["article"]["title"].as_str().unwrap().contains("XX"));
    }
}
