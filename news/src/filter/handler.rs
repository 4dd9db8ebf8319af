//! [`NewsFilter`]: the `mt5_bus::Handler` of `news-filter-group`.

use std::sync::Arc;

use mt5_bus::envelope::format_time;
use mt5_bus::{DeadLetterReason, Delivery, Event, Handler, Outcome};
use serde_json::{Map, Value};

use super::clock::{Clock, SystemClock};
use super::config::FilterConfig;
use super::metrics::FilterMetrics;
use super::news::RawNews;
use super::rules::{Decision, FilterRules};
use crate::error::Result;

/// The event type the filter reads.
pub const NEWS_RAW_TYPE: &str = "news.raw.v1";
/// The event type the filter writes.
pub const NEWS_FILTERED_TYPE: &str = "news.filtered.v1";
/// The `source` of filtered events.
pub const FILTER_SOURCE: &str = "mt5-hub/filter";

/// The news filter as a bus handler.
///
/// - `news.raw.v1` events that pass every rule: [`Outcome::Emit`] of one `news.filtered.v1` event
///   (source `mt5-hub/filter`, the same `ticker` extension) to the output stream, whose data is
///   the raw data plus `raw_id`, `raw_entry_id`, `filter_time`, `sentiment: {score, model}` and
///   `matched: {ticker, keywords}`; counted as `passed`.
/// - events that fail a rule: [`Outcome::Ack`], counted as `rejected` with the rule's reason.
/// - `data` that is not a `news.raw.v1` payload: dead-lettered (reason `handler`) with an error
///   naming the field; counted as `invalid`. Retrying would not help.
/// - any other event type: [`Handler::handles`] says no, so the consumer dead-letters it as
///   `unsupported` without calling the handler.
#[derive(Debug)]
pub struct NewsFilter {
    rules: FilterRules,
    clock: Arc<dyn Clock>,
    metrics: FilterMetrics,
}

impl NewsFilter {
    /// A filter on the system clock.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `cfg` is invalid.
    pub fn new(cfg: FilterConfig, metrics: FilterMetrics) -> Result<Self> {
        let (scored, cache_hits) = metrics.vader_counters();
        Ok(NewsFilter {
            rules: FilterRules::new(cfg)?.with_scorer_counters(scored, cache_hits),
            clock: Arc::new(SystemClock),
            metrics,
        })
    }

    /// Uses `clock` for freshness and `filter_time`.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The rules.
    pub fn rules(&self) -> &FilterRules {
        &self.rules
    }

    /// The metrics.
    pub fn metrics(&self) -> &FilterMetrics {
        &self.metrics
    }

    /// What to do with one delivery (what [`Handler::handle`] returns).
    pub fn outcome(&self, delivery: &Delivery) -> Outcome {
        let event = &delivery.event;
        if !self.handles(&event.event_type) {
            return Outcome::DeadLetter {
                reason: DeadLetterReason::Unsupported,
                error: format!("the news filter does not handle events of type {:?}", event.event_type),
            };
        }
        let news = match RawNews::from_data(&event.data, event.extensions.get("ticker").map(String::as_str)) {
            Ok(news) => news,
            Err(err) => {
                self.metrics.invalid();
                tracing::warn!(
                    stream = %delivery.stream,
                    entry_id = %delivery.entry_id,
                    event_id = %event.id,
                    error = %err,
                    "Dead-lettering a news event whose data is not a news.raw.v1 payload."
                );
                return Outcome::dead_letter(err.to_string());
            }
        };
        let now = self.clock.now();
        match self.rules.decide(&news, now) {
            Decision::Reject { reason } => {
                self.metrics.rejected(reason);
                tracing::debug!(
                    entry_id = %delivery.entry_id,
                    ticker = %news.ticker,
                    reason = reason.as_str(),
                    "Rejected a news event."
                );
                Outcome::Ack
            }
            Decision::Pass { score, model, matched } => {
                self.metrics.passed();
                tracing::debug!(
                    entry_id = %delivery.entry_id,
                    ticker = %news.ticker,
                    score,
                    model = model.as_str(),
                    "Passed a news event."
                );
                // The one deep copy left: the handler only borrows the delivery (see
                // docs/news-filter.md, "Speed").
                let mut data = event.data.clone();
                if let Value::Object(map) = &mut data {
                    if !map.contains_key("ticker") {
                        map.insert("ticker".into(), Value::from(&*news.ticker));
                    }
                    map.insert("raw_id".into(), Value::from(event.id.as_str()));
                    map.insert("raw_entry_id".into(), Value::from(delivery.entry_id.as_str()));
                    map.insert("filter_time".into(), Value::String(format_time(&now)));
                    // Built by hand: `json!` serializes its values, which copies them.
                    let sentiment = Map::from_iter([
                        ("score".to_string(), Value::from(score)),
                        ("model".to_string(), Value::from(model.as_str())),
                    ]);
                    map.insert("sentiment".into(), Value::Object(sentiment));
                    let keywords = matched.keywords.into_iter().map(Value::String).collect();
                    let matched = Map::from_iter([
                        ("ticker".to_string(), Value::String(matched.ticker)),
                        ("keywords".to_string(), Value::Array(keywords)),
                    ]);
                    map.insert("matched".into(), Value::Object(matched));
                }
                let mut out = Event::new(FILTER_SOURCE, NEWS_FILTERED_TYPE, data);
                // Lower-case names, inserted as they are (`with_extension` copies the name to
                // lower-case it).
                out.extensions.insert("ticker".into(), news.ticker.into_owned());
                // Keep the trace going through the filter.
                if let Some(tp) = event.extensions.get("traceparent") {
                    out.extensions.insert("traceparent".into(), tp.clone());
                }
                Outcome::emit(&self.rules.config().output_stream, out)
            }
        }
    }
}

impl Handler for NewsFilter {
    fn handles(&self, event_type: &str) -> bool {
        event_type == NEWS_RAW_TYPE
    }

    async fn handle(&self, delivery: &Delivery) -> Outcome {
        self.outcome(delivery)
    }
}
