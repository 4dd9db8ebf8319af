//! [`NewsFilter`]: the `mt5_bus::Handler` of `news-filter-group`.

use std::collections::BTreeMap;
use std::sync::Arc;

use mt5_bus::envelope::format_time;
use mt5_bus::{Data, DeadLetterReason, Delivery, Event, Handler, Outcome};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::clock::{Clock, SystemClock};
use super::config::FilterConfig;
use super::json::Object;
use super::metrics::FilterMetrics;
use super::news::{not_an_object, RawNews};
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
        let ticker_extension = event.extensions.get("ticker").map(String::as_str);
        let news = match RawNews::from_json(event.data.get(), ticker_extension) {
            Ok(news) => news,
            Err(err) => return self.invalid(delivery, &err),
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
                // Only a passing event's members are read one by one, to be forwarded.
                let Some(raw) = Object::parse(event.data.get()) else {
                    return self.invalid(delivery, &not_an_object(event.data.get()));
                };
                let data = filtered_data(&raw, &news.ticker, event, delivery, now, score, model, matched);
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

    /// Counts and dead-letters a delivery whose data is not a `news.raw.v1` payload.
    #[cold]
    fn invalid(&self, delivery: &Delivery, err: &crate::Error) -> Outcome {
        self.metrics.invalid();
        tracing::warn!(
            stream = %delivery.stream,
            entry_id = %delivery.entry_id,
            event_id = %delivery.event.id,
            error = %err,
            "Dead-lettering a news event whose data is not a news.raw.v1 payload."
        );
        Outcome::dead_letter(err.to_string())
    }
}

/// The `news.filtered.v1` data of a passing event: the raw data's members as they were (their
/// text is copied, not re-parsed) plus `ticker` (when absent), `raw_id`, `raw_entry_id`,
/// `filter_time`, `sentiment` and `matched`, which replace members of those names. Members in
/// name order, as a `serde_json::Map` writes them.
#[allow(clippy::too_many_arguments)]
fn filtered_data(
    raw: &Object<'_>,
    ticker: &str,
    event: &Event,
    delivery: &Delivery,
    now: chrono::DateTime<chrono::Utc>,
    score: f64,
    model: super::sentiment::SentimentModel,
    matched: super::rules::Matched,
) -> Data {
    let mut members: BTreeMap<&str, Member<'_>> = raw.members().map(|(n, v)| (n, Member::Raw(v))).collect();
    if !raw.contains("ticker") {
        members.insert("ticker", Member::Value(Value::from(ticker)));
    }
    members.insert("raw_id", Member::Value(Value::from(event.id.as_str())));
    members.insert("raw_entry_id", Member::Value(Value::from(delivery.entry_id.as_str())));
    members.insert("filter_time", Member::Value(Value::String(format_time(&now))));
    let sentiment = Map::from_iter([
        ("score".to_string(), Value::from(score)),
        ("model".to_string(), Value::from(model.as_str())),
    ]);
    members.insert("sentiment", Member::Value(Value::Object(sentiment)));
    let keywords = matched.keywords.into_iter().map(Value::String).collect();
    let matched = Map::from_iter([
        ("ticker".to_string(), Value::String(matched.ticker)),
        ("keywords".to_string(), Value::Array(keywords)),
    ]);
    members.insert("matched", Member::Value(Value::Object(matched)));
    // Member names and values are JSON already, and a map of them serializes.
    serde_json::value::to_raw_value(&members).map_or_else(|_| Data::default(), Data::from)
}

/// A member of the filtered data: copied from the raw data, or new.
enum Member<'a> {
    Raw(&'a RawValue),
    Value(Value),
}

impl Serialize for Member<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Member::Raw(raw) => raw.serialize(serializer),
            Member::Value(value) => value.serialize(serializer),
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
