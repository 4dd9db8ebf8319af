//! The EODHD client's metrics: `mt5_news_fetch_total{outcome}`,
//! `mt5_news_fetch_duration_seconds`, `mt5_eodhd_circuit_state`, `mt5_eodhd_quota_remaining`.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Values of the `outcome` label of `mt5_news_fetch_total`: `ok`, or an [`crate::Error::outcome`].
pub mod outcome {
    /// A page was answered with a JSON array.
    pub const OK: &str = "ok";
    /// Every outcome, for pre-creating the series at 0.
    pub const ALL: &[&str] = &[
        OK,
        "unauthorized",
        "forbidden",
        "quota_exhausted",
        "rate_limited",
        "server_error",
        "timeout",
        "connect_error",
        "http_error",
        "invalid_response",
        "circuit_open",
    ];
}

/// Request latency buckets in seconds: fast API replies up to the default 20 s timeout.
const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0];

/// The client's metrics. Cheap to clone (reference-counted).
#[derive(Clone, Debug)]
pub struct NewsMetrics {
    /// `mt5_news_fetch_total{outcome}`: page request attempts by outcome, one per HTTP request
    /// sent (retries count again) or refused locally (`circuit_open`, `quota_exhausted`, a
    /// remembered `unauthorized`).
    pub fetch_total: IntCounterVec,
    /// `mt5_news_fetch_duration_seconds`: time of each HTTP request to EODHD, body included.
    pub fetch_duration: Histogram,
    /// `mt5_eodhd_circuit_state`: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGauge,
    /// `mt5_eodhd_quota_remaining`: API calls left today (0 while paused).
    pub quota_remaining: IntGauge,
}

impl Default for NewsMetrics {
    fn default() -> Self {
        Self::unregistered()
    }
}

impl NewsMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Errors
    /// [`prometheus::Error::AlreadyReg`] when a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.fetch_total.clone()))?;
        registry.register(Box::new(m.fetch_duration.clone()))?;
        registry.register(Box::new(m.circuit_state.clone()))?;
        registry.register(Box::new(m.quota_remaining.clone()))?;
        Ok(m)
    }

    /// Metrics that are not registered anywhere (tests, one-shot tools). Every outcome starts
    /// at 0, so dashboards and `rate()` see the series before the first fetch.
    pub fn unregistered() -> Self {
        let fetch_total = IntCounterVec::new(
            Opts::new(
                "mt5_news_fetch_total",
                "EODHD news page requests by outcome (each attempt, retries included).",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        for o in outcome::ALL {
            fetch_total.with_label_values(&[*o]);
        }
        let fetch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mt5_news_fetch_duration_seconds",
                "Duration of each HTTP request to the EODHD news API, body included.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )
        .expect("static metric definition is valid");
        let circuit_state = IntGauge::new(
            "mt5_eodhd_circuit_state",
            "State of the EODHD circuit breaker: 0 closed, 1 half-open, 2 open.",
        )
        .expect("static metric definition is valid");
        let quota_remaining = IntGauge::new(
            "mt5_eodhd_quota_remaining",
            "EODHD API calls left today (GMT): the server's X-RateLimit-Remaining when sent, else the local count; 0 while paused.",
        )
        .expect("static metric definition is valid");
        NewsMetrics {
            fetch_total,
            fetch_duration,
            circuit_state,
            quota_remaining,
        }
    }

    /// Counts one attempt.
    pub(crate) fn attempt(&self, outcome: &str) {
        self.fetch_total.with_label_values(&[outcome]).inc();
    }

    /// Records one HTTP request's duration.
    pub(crate) fn observe(&self, took: Duration) {
        self.fetch_duration.observe(took.as_secs_f64());
    }

    /// The count of one outcome (tests, summaries).
    pub fn count(&self, outcome: &str) -> u64 {
        self.fetch_total.with_label_values(&[outcome]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four contract metrics register once, with every outcome series at 0.
    #[test]
    fn registers_the_contract_names_once() {
        let registry = Registry::new();
        let m = NewsMetrics::register(&registry).unwrap();
        assert!(NewsMetrics::register(&registry).is_err());
        m.attempt(outcome::OK);
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "mt5_news_fetch_total",
            "mt5_news_fetch_duration_seconds",
            "mt5_eodhd_circuit_state",
            "mt5_eodhd_quota_remaining",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        let fetch = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "mt5_news_fetch_total")
            .unwrap();
        assert_eq!(fetch.get_metric().len(), outcome::ALL.len());
        assert_eq!(m.count(outcome::OK), 1);
    }
}
