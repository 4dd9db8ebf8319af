//! `[news.eodhd]`: the EODHD client's settings. Every default lives in one `impl Default` per
//! struct, and every field's doc names its unit and default: these comments are the operator
//! documentation.

use std::time::Duration;

use mt5_bus::validate::{positive, within};
use mt5_bus::{InvalidConfig, RetryConfig, Secret};
use serde::{Deserialize, Serialize};

use crate::circuit_breaker::CircuitBreakerConfig;
use crate::quota::QuotaConfig;
use crate::rate_limit::RateLimitConfig;

/// The largest `limit` EODHD accepts for one news page.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// `[news.eodhd]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EodhdConfig {
    /// Scheme, host and optional path prefix of the API; the client calls `<base_url>/api/news`.
    /// Default `https://eodhd.com` (env `MT5_EODHD_BASE_URL`; the demo and tests point it at a
    /// local mock).
    pub base_url: String,
    /// The API key, sent as the `api_token` query parameter. Secret: set it through the env
    /// `EODHD_API_KEY`, not the file; printed as `***`. Default empty (the client refuses to
    /// start without one).
    pub api_key: Secret,
    /// Whole-request timeout (connect, send, read the body), in ms. Default 20000.
    pub timeout_ms: u64,
    /// Connection (TCP and TLS) timeout, in ms. Default 5000.
    pub connect_timeout_ms: u64,
    /// Articles per page (`limit`), 1 to 1000. Default 100: EODHD's own default is 50, but
    /// every page is billed again, so fewer larger pages spend less quota.
    pub page_limit: u32,
    /// Most pages one paginated fetch walks before it stops (`offset` goes up by `page_limit`
    /// until a short page or this cap). Default 10.
    pub page_cap: u32,
    /// Client-side requests per minute.
    pub rate_limit: RateLimitConfig,
    /// Daily API-call budget and the cost of a request.
    pub quota: QuotaConfig,
    /// Retries of 429, 5xx, timeouts and connection errors within one page request.
    pub retry: EodhdRetryConfig,
    /// When to stop calling a failing upstream.
    pub circuit_breaker: CircuitBreakerConfig,
}

impl Default for EodhdConfig {
    fn default() -> Self {
        EodhdConfig {
            base_url: "https://eodhd.com".into(),
            api_key: Secret::default(),
            timeout_ms: 20_000,
            connect_timeout_ms: 5_000,
            page_limit: 100,
            page_cap: 10,
            rate_limit: RateLimitConfig::default(),
            quota: QuotaConfig::default(),
            retry: EodhdRetryConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
        }
    }
}

/// `[news.eodhd.retry]`: capped exponential backoff with jitter for one page request.
///
/// A separate struct from the bus's `[bus.retry]` because HTTP upstreams want other defaults
/// (longer delays, fewer attempts); [`EodhdRetryConfig::backoff`] turns it into the bus's
/// [`RetryConfig`] for [`mt5_bus::Backoff`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EodhdRetryConfig {
    /// First delay, in ms. Default 500.
    pub initial_ms: u64,
    /// Cap on any backoff delay, in ms. Default 30000.
    pub max_ms: u64,
    /// Growth factor per attempt. Default 2.0.
    pub multiplier: f64,
    /// Random share of each delay, 0.0 to 1.0: a delay `d` becomes uniform in `[d*(1-jitter), d]`.
    /// Default 0.5.
    pub jitter: f64,
    /// Attempts per page request, the first included, before the error is returned (the next
    /// round tries again). Default 4.
    pub max_attempts: u32,
    /// Longest `Retry-After` (429) the client waits within a call, in ms; a longer one is
    /// returned as [`Error::RateLimited`](crate::Error::RateLimited) at once. Default 60000.
    pub max_retry_after_ms: u64,
}

impl Default for EodhdRetryConfig {
    fn default() -> Self {
        EodhdRetryConfig {
            initial_ms: 500,
            max_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: 4,
            max_retry_after_ms: 60_000,
        }
    }
}

impl EodhdRetryConfig {
    /// Sets the delays: `initial_ms`, `max_ms`, and `jitter`.
    #[must_use]
    pub fn with_delays(mut self, initial_ms: u64, max_ms: u64, jitter: f64) -> Self {
        self.initial_ms = initial_ms;
        self.max_ms = max_ms;
        self.jitter = jitter;
        self
    }

    /// Sets `max_attempts`.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets `max_retry_after_ms`.
    #[must_use]
    pub fn with_max_retry_after_ms(mut self, max_retry_after_ms: u64) -> Self {
        self.max_retry_after_ms = max_retry_after_ms;
        self
    }

    /// The bus's backoff settings with these values.
    pub fn backoff(&self) -> RetryConfig {
        let mut cfg = RetryConfig::default();
        cfg.initial_ms = self.initial_ms;
        cfg.max_ms = self.max_ms;
        cfg.multiplier = self.multiplier;
        cfg.jitter = self.jitter;
        cfg.max_attempts = self.max_attempts;
        cfg
    }

    /// `max_retry_after_ms` as a duration.
    pub fn max_retry_after(&self) -> Duration {
        Duration::from_millis(self.max_retry_after_ms)
    }

    /// Validates the ranges: the bus's backoff rules ([`RetryConfig::validate_as`]), naming
    /// the keys under `news.eodhd.retry`.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.backoff().validate_as("news.eodhd.retry")
    }
}

impl EodhdConfig {
    /// Sets `base_url`.
    #[must_use]
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets `api_key`.
    #[must_use]
    pub fn with_api_key(mut self, api_key: Secret) -> Self {
        self.api_key = api_key;
        self
    }

    /// Sets `timeout_ms`.
    #[must_use]
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets `page_limit` and `page_cap`.
    #[must_use]
    pub fn with_paging(mut self, page_limit: u32, page_cap: u32) -> Self {
        self.page_limit = page_limit;
        self.page_cap = page_cap;
        self
    }

    /// Sets `rate_limit`.
    #[must_use]
    pub fn with_rate_limit(mut self, rate_limit: RateLimitConfig) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Sets `quota`.
    #[must_use]
    pub fn with_quota(mut self, quota: QuotaConfig) -> Self {
        self.quota = quota;
        self
    }

    /// Sets `retry`.
    #[must_use]
    pub fn with_retry(mut self, retry: EodhdRetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Sets `circuit_breaker`.
    #[must_use]
    pub fn with_circuit_breaker(mut self, circuit_breaker: CircuitBreakerConfig) -> Self {
        self.circuit_breaker = circuit_breaker;
        self
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The parsed base URL.
    ///
    /// # Errors
    /// [`InvalidConfig`] for anything but an `http`/`https` URL without query or fragment.
    pub fn parsed_base_url(&self) -> Result<url::Url, InvalidConfig> {
        let bad = |reason: String| InvalidConfig::new("news.eodhd.base_url", reason);
        let url = url::Url::parse(self.base_url.trim()).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!("scheme must be http or https, not {:?}", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("has no host".into()));
        }
        // The key belongs in `api_key`; a query here would also leak into logs.
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment (set the key in api_key)".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials".into()));
        }
        Ok(url)
    }

    /// Validates every value (not the key's presence: a process that does not fetch needs
    /// none; [`crate::EodhdClient::new`] requires it).
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first invalid field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.parsed_base_url()?;
        positive("news.eodhd.timeout_ms", self.timeout_ms)?;
        positive("news.eodhd.connect_timeout_ms", self.connect_timeout_ms)?;
        within("news.eodhd.page_limit", self.page_limit, 1..=MAX_PAGE_LIMIT)?;
        positive("news.eodhd.page_cap", self.page_cap)?;
        self.rate_limit.validate()?;
        self.quota.validate()?;
        self.retry.validate()?;
        self.circuit_breaker.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid and follow the reference: 1000 requests/min, 10 calls per
    /// request, pages within EODHD's 1..=1000.
    #[test]
    fn defaults_are_valid() {
        let cfg = EodhdConfig::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.base_url, "https://eodhd.com");
        assert_eq!(cfg.rate_limit.requests_per_minute, 1000);
        assert_eq!(cfg.quota.calls_per_request, 10);
        assert!(cfg.page_limit <= MAX_PAGE_LIMIT);
    }

    /// A TOML section with a few keys keeps the other defaults; unknown keys are errors.
    #[test]
    fn partial_toml_keeps_defaults_and_unknown_keys_fail() {
        let cfg: EodhdConfig = toml::from_str(
            r#"
            base_url = "http://127.0.0.1:9999"
            page_limit = 50
            [retry]
            max_attempts = 2
            [circuit_breaker]
            cooldown_ms = 1000
            "#,
        )
        .unwrap();
        assert_eq!(cfg.page_limit, 50);
        assert_eq!(cfg.retry.max_attempts, 2);
        assert_eq!(cfg.retry.initial_ms, 500, "the section's other defaults stay");
        assert_eq!(cfg.circuit_breaker.failure_threshold, 5);
        cfg.validate().unwrap();
        assert!(toml::from_str::<EodhdConfig>("page_limt = 5").is_err());
        assert!(toml::from_str::<EodhdConfig>("[quota]\ndaily = 5").is_err());
    }

    /// The key is never printed by `Debug` nor serialized.
    #[test]
    fn the_key_is_redacted_in_debug_and_serialization() {
        let cfg = EodhdConfig::default().with_api_key(Secret::new("sekrit-key-123"));
        assert!(!format!("{cfg:?}").contains("sekrit"));
        assert!(!toml::to_string(&cfg).unwrap().contains("sekrit"));
    }

    /// Out-of-range values fail naming the field.
    #[test]
    fn invalid_values_name_the_field() {
        let cases: Vec<(EodhdConfig, &str)> = vec![
            (EodhdConfig::default().with_base_url("ftp://x"), "base_url"),
            (
                EodhdConfig::default().with_base_url("https://eodhd.com/?api_token=k"),
                "base_url",
            ),
            (EodhdConfig::default().with_base_url("not a url"), "base_url"),
            (EodhdConfig::default().with_base_url("https://eodhd.com/#k"), "base_url"),
            (
                EodhdConfig::default().with_base_url("https://user@eodhd.com/"),
                "base_url",
            ),
            (
                EodhdConfig::default().with_base_url("https://:pw@eodhd.com/"),
                "base_url",
            ),
            (EodhdConfig::default().with_timeout_ms(0), "timeout_ms"),
            (EodhdConfig::default().with_paging(0, 1), "page_limit"),
            (EodhdConfig::default().with_paging(1001, 1), "page_limit"),
            (EodhdConfig::default().with_paging(10, 0), "page_cap"),
            (
                EodhdConfig::default().with_retry(EodhdRetryConfig::default().with_max_attempts(0)),
                "retry.max_attempts",
            ),
            (
                EodhdConfig::default().with_rate_limit(RateLimitConfig::default().with_requests_per_minute(0)),
                "requests_per_minute",
            ),
            (
                EodhdConfig::default().with_circuit_breaker(CircuitBreakerConfig::default().with_failure_threshold(0)),
                "failure_threshold",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    /// The retry section turns into the bus's backoff settings.
    #[test]
    fn retry_settings_map_onto_the_bus_backoff() {
        let r = EodhdRetryConfig::default()
            .with_delays(10, 80, 0.0)
            .with_max_attempts(3);
        let mut b = mt5_bus::Backoff::new(&r.backoff());
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 80]);
        assert_eq!(r.backoff().max_attempts, 3);
        let r = r.with_max_retry_after_ms(2_500);
        assert_eq!(r.max_retry_after(), Duration::from_millis(2_500));
        assert_eq!((r.initial_ms, r.max_attempts), (10, 3), "the other settings are kept");
    }
}
