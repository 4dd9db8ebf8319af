//! `publish --rate --template news`: load events that are valid `news.raw.v1` payloads and pass
//! the default `[news.filter]` rules (a result keyword, strong VADER sentiment, dated now), so
//! every one has an observable effect in the filtered stream. The chaos checker relies on it: a
//! rejected event is acknowledged without a trace and would look exactly like a loss. The e2e
//! latency harness (`mt5-loadtest e2e`, docs/loadtest.md) uses it the same way against a shipped
//! binary, so the template is a feature of every build; only the chaos suite's poison events
//! (`super::poison`) need the `chaos` cargo feature.

use mt5_bus::envelope::format_time;
use mt5_bus::Event;
use serde_json::{json, Value};

/// The event type of `--template news`.
pub(crate) const NEWS_RAW_TYPE: &str = "news.raw.v1";
/// The ticker of template events.
const TICKER: &str = "ACME.US";
/// The `news.raw.v1` data of event `seq`, dated now.
pub(crate) fn news_data(seq: u64) -> Value {
    let now = format_time(&chrono::Utc::now());
    let title = format!("Acme beats estimates and raises guidance after a great quarter #{seq}");
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
            "tags": ["earnings", "load"],
            "sentiment": {"polarity": 0.9, "neg": 0.0, "neu": 0.6, "pos": 0.4},
        },
    })
}

/// Event `seq` of the news template.
pub(crate) fn news_event(source: &str, seq: u64) -> Event {
    Event::new(source, NEWS_RAW_TYPE, news_data(seq))
        .with_extension("ticker", TICKER)
        .expect("`ticker` is a valid extension name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mt5_news::filter::{Decision, FilterConfig, FilterRules, RawNews};

    /// Template events pass the default filter rules (keywords and |VADER| > 0.5).
    #[test]
    fn template_events_pass_the_default_filter() {
        let rules = FilterRules::new(FilterConfig::default()).unwrap();
        for seq in [0, 41] {
            let data = news_data(seq);
            let news = RawNews::from_data(&data, None).unwrap();
            let decision = rules.decide(&news, chrono::Utc::now());
            assert!(matches!(decision, Decision::Pass { .. }), "{seq}: {decision:?}");
        }
    }

    /// Titles and links are unique per seq.
    #[test]
    fn titles_and_links_are_unique() {
        let a = news_data(1);
        let b = news_data(2);
        assert_ne!(a["article"]["title"], b["article"]["title"]);
        assert_ne!(a["article"]["link"], b["article"]["link"]);
    }
}
