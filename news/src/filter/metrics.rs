//! `mt5_news_filter_total{decision,reason}`, `mt5_news_sentiment_scored_total{model}` and
//! `mt5_news_sentiment_cache_hits_total`.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::rules::RejectReason;
use super::sentiment::SentimentModel;

/// `decision` label of a passing event.
pub const PASSED: &str = "passed";
/// `decision` label of a rejected event (`reason` is the [`RejectReason`]).
pub const REJECTED: &str = "rejected";
/// `decision` (and `reason`) label of an event whose data is not `news.raw.v1`: dead-lettered.
pub const INVALID: &str = "invalid";

/// The filter's metrics. Cheap to clone (the vector is reference-counted).
#[derive(Clone, Debug)]
pub struct FilterMetrics {
    /// `mt5_news_filter_total{decision,reason}`: decisions, by outcome. `decision` is `passed`
    /// (reason `passed`), `rejected` (reason `ticker`, `stale`, `keywords` or `sentiment`) or
    /// `invalid` (reason `invalid`: the event was dead-lettered).
    pub filter_total: IntCounterVec,
    /// The series of `filter_total`, looked up once: a lookup by label values hashes them and
    /// takes the vector's lock, on every event. (Resetting `filter_total` would detach these.)
    passed: IntCounter,
    /// By [`RejectReason::index`].
    rejected: [IntCounter; RejectReason::ALL.len()],
    invalid: IntCounter,
    /// `mt5_news_sentiment_scored_total{model}`: texts the filter's sentiment scorer scored (cache
    /// misses that ran it). `model` is the scorer, `vader` (the only one computed here).
    pub sentiment_scored_total: IntCounterVec,
    /// `mt5_news_sentiment_cache_hits_total`: scores answered from the scorer's title cache.
    pub sentiment_cache_hits_total: IntCounter,
}

impl Default for FilterMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

impl FilterMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// [`prometheus::Error::AlreadyReg`] when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.filter_total.clone()))?;
        registry.register(Box::new(m.sentiment_scored_total.clone()))?;
        registry.register(Box::new(m.sentiment_cache_hits_total.clone()))?;
        Ok(m)
    }

    /// Metrics that are not registered anywhere (tests, one-shot tools). Every label pair starts
    /// at 0, so dashboards and `rate()` see the series before the first event.
    pub fn unregistered() -> Self {
        let filter_total = IntCounterVec::new(
            Opts::new(
                "mt5_news_filter_total",
                "News filter decisions: passed, rejected (by the first rule that failed), or invalid data.",
            ),
            &["decision", "reason"],
        )
        .expect("static metric definition is valid");
        let passed = filter_total.with_label_values(&[PASSED, PASSED]);
        let rejected = RejectReason::ALL.map(|r| filter_total.with_label_values(&[REJECTED, r.as_str()]));
        let invalid = filter_total.with_label_values(&[INVALID, INVALID]);
        let sentiment_scored_total = IntCounterVec::new(
            Opts::new(
                "mt5_news_sentiment_scored_total",
                "Texts the news filter's sentiment scorer scored (title-cache misses that ran the model), by model.",
            ),
            &["model"],
        )
        .expect("static metric definition is valid");
        // The series exists from the start (0), like the decisions'.
        sentiment_scored_total.with_label_values(&[SentimentModel::Vader.as_str()]);
        let sentiment_cache_hits_total = IntCounter::new(
            "mt5_news_sentiment_cache_hits_total",
            "Sentiment scores the news filter answered from its title cache instead of scoring.",
        )
        .expect("static metric definition is valid");
        FilterMetrics {
            filter_total,
            passed,
            rejected,
            invalid,
            sentiment_scored_total,
            sentiment_cache_hits_total,
        }
    }

    /// The counters the VADER scorer counts into: (texts scored, cache hits).
    pub(crate) fn vader_counters(&self) -> (IntCounter, IntCounter) {
        (
            self.sentiment_scored_total
                .with_label_values(&[SentimentModel::Vader.as_str()]),
            self.sentiment_cache_hits_total.clone(),
        )
    }

    /// Counts a passing event.
    pub fn passed(&self) {
        self.passed.inc();
    }

    /// Counts a rejected event.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejected[reason.index()].inc();
    }

    /// Counts an event with invalid data.
    pub fn invalid(&self) {
        self.invalid.inc();
    }

    /// Every decision so far (passed, rejected for any reason, invalid): how many events this
    /// filter has finished with.
    pub fn decided(&self) -> u64 {
        let mut total = self.count(PASSED, PASSED) + self.count(INVALID, INVALID);
        for r in RejectReason::ALL {
            total += self.count(REJECTED, r.as_str());
        }
        total
    }

    /// The current count of one `decision`/`reason` pair (tests, summaries).
    pub fn count(&self, decision: &str, reason: &str) -> u64 {
        self.filter_total.with_label_values(&[decision, reason]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_with_every_series_at_zero() {
        let registry = Registry::new();
        let m = FilterMetrics::register(&registry).unwrap();
        assert!(FilterMetrics::register(&registry).is_err());
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "mt5_news_filter_total",
                "mt5_news_sentiment_cache_hits_total",
                "mt5_news_sentiment_scored_total"
            ]
        );
        assert_eq!(families[0].get_metric().len(), 6);
        assert_eq!(families[2].get_metric().len(), 1, "the vader series starts at 0");
        m.rejected(RejectReason::Stale);
        m.passed();
        m.passed();
        assert_eq!(m.count(REJECTED, "stale"), 1);
        assert_eq!(m.count(PASSED, PASSED), 2);
        assert_eq!(m.count(INVALID, INVALID), 0);
        m.invalid();
        assert_eq!(m.decided(), 4);
        for r in RejectReason::ALL {
            m.rejected(r);
            assert_eq!(
                m.count(REJECTED, r.as_str()),
                1 + u64::from(r == RejectReason::Stale),
                "{r}"
            );
        }
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"mt5_news_filter_total{decision="rejected",reason="keywords"} 1"#),
            "the cached series are the registered ones: {text}"
        );
    }

    /// The scorer's counters are the registered series: what it counts is what `/metrics` shows.
    #[test]
    fn vader_counters_are_the_registered_series() {
        let registry = Registry::new();
        let m = FilterMetrics::register(&registry).unwrap();
        let (scored, hits) = m.vader_counters();
        scored.inc_by(3);
        hits.inc();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            text.contains(r#"mt5_news_sentiment_scored_total{model="vader"} 3"#),
            "{text}"
        );
        assert!(text.contains("mt5_news_sentiment_cache_hits_total 1"), "{text}");
    }
}
