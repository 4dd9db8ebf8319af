//! The crate's one error type and its classifier.
//!
//! Every EODHD failure class maps to one variant, and the variant decides what the caller does:
//!
//! | variant | cause | class | what it gets |
//! | --- | --- | --- | --- |
//! | [`Error::Unauthorized`] | 401, or a plain-text `Unauthenticated` body | permanent | logged once; the client fails fast until rebuilt |
//! | [`Error::Forbidden`] | 403 (plan or ticker not allowed) | permanent | no retry |
//! | [`Error::QuotaExhausted`] | 402, or the local daily budget is spent | paused | no requests until `resets_at` (00:00 GMT) |
//! | [`Error::RateLimited`] | 429 | transient | waits `Retry-After` (else backoff) and retries |
//! | [`Error::Server`], [`Error::Timeout`], [`Error::Connect`], [`Error::Transport`] | 5xx, timeouts, network | transient | capped exponential backoff with jitter, bounded attempts |
//! | [`Error::InvalidResponse`] | a body that is not the JSON array (HTML with 200, broken JSON) | transient | counted; the page is skipped; the next round tries again |
//! | [`Error::CircuitOpen`] | the breaker is open | transient | no request; try after `retry_in` |
//! | [`Error::Status`] | other 4xx (bad parameters, 404 with a non-JSON body, redirects) | permanent | no retry |
//! | [`Error::InvalidQuery`] | an empty symbol, `limit` outside 1..=1000, `from` after `to` | permanent | nothing is sent |
//! | [`Error::InvalidArticle`] | one article fails validation | permanent (for that article) | the article is skipped, the page kept |
//!
//! The rest of the crate fails with the same type: [`Error::Config`] (a `[news.*]` value, the
//! workspace's one [`InvalidConfig`]), [`Error::InvalidData`] (a `news.raw.v1` payload the
//! filter cannot read; dead-lettered), [`Error::Bus`] (publishing, the fetcher's cursor) and
//! [`Error::Cancelled`].
//!
//! No variant carries the API key: request URLs never enter an error (`reqwest` errors are
//! stored `without_url()`), and response snippets are redacted before they are stored.
//!
//! Other parts of the crate append their variants at the end of the enum; the classifier
//! methods use `matches!`, so a new variant needs no change here (it is permanent unless added
//! to [`Error::is_transient`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use mt5_bus::InvalidConfig;

use crate::article::RejectedArticle;

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the news pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// EODHD rejected the API key (401, or the plain-text body `Unauthenticated` with any status).
    /// Permanent: the client logs it once and fails fast afterwards.
    #[error("EODHD rejected the API key (HTTP {status}): {detail}; check EODHD_API_KEY")]
    Unauthorized {
        /// The HTTP status (401, or any status with an `Unauthenticated` body); a fast failure
        /// on a remembered rejection repeats the original status.
        status: u16,
        /// The (redacted, shortened) response body.
        detail: String,
    },
    /// 403 without an `Unauthenticated` body: the plan does not include this endpoint or
    /// ticker. Permanent for this query; other queries are still tried.
    #[error("EODHD refused the request (HTTP 403: plan or ticker not allowed for this key): {detail}")]
    Forbidden {
        /// The (redacted, shortened) response body.
        detail: String,
    },
    /// The daily API-call quota is exhausted (402, or the configured local budget is spent).
    /// No request is sent until `resets_at`, the next 00:00 GMT.
    #[error("EODHD daily API-call quota exhausted; fetching paused until {resets_at}")]
    QuotaExhausted {
        /// When the quota resets (00:00 GMT).
        resets_at: DateTime<Utc>,
    },
    /// 429: the per-minute limit was hit and the retries (or the `Retry-After` cap) ran out.
    /// Transient.
    #[error("EODHD rate limit hit (HTTP 429){}", fmt_retry_after(*.retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// A 5xx reply. Transient.
    #[error("EODHD server error (HTTP {status}): {detail}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The (redacted, shortened) response body.
        detail: String,
    },
    /// The request did not complete within the per-request timeout. Transient.
    #[error("EODHD request timed out after {timeout:?}")]
    Timeout {
        /// The configured per-request timeout.
        timeout: Duration,
    },
    /// No connection could be made (refused, DNS, TLS handshake). Transient. The source error
    /// carries no URL.
    #[error("could not connect to EODHD: {source}")]
    Connect {
        /// The transport error, stored `without_url()`.
        #[source]
        source: reqwest::Error,
    },
    /// Another transport failure (connection reset mid-body, protocol error). Transient. The
    /// source error carries no URL.
    #[error("HTTP transport error talking to EODHD: {source}")]
    Transport {
        /// The transport error, stored `without_url()`.
        #[source]
        source: reqwest::Error,
    },
    /// Another non-success status (400, 404 with a non-JSON body, an unexpected redirect, ...).
    /// Permanent.
    #[error("EODHD returned HTTP {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The (redacted, shortened) response body or reason.
        detail: String,
    },
    /// A news query is invalid (empty symbol or tag, `limit` outside 1..=1000, `from` after
    /// `to`). Permanent.
    #[error("invalid news query: {reason}")]
    InvalidQuery {
        /// What is wrong with it.
        reason: String,
    },
    /// The body is not the expected JSON array: broken JSON, an HTML error page served with
    /// status 200, a JSON error object. Counted; the page is skipped. Transient: the next round
    /// tries again.
    #[error("invalid response from EODHD (HTTP {status}, content-type {}): {detail}", content_type.as_deref().unwrap_or("none"))]
    InvalidResponse {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header, when present.
        content_type: Option<String>,
        /// What was wrong, with a (redacted, shortened) snippet of the body.
        detail: String,
    },
    /// The circuit breaker is open: no request was sent. Transient.
    #[error("EODHD circuit breaker is open; next probe allowed in {retry_in:?}")]
    CircuitOpen {
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// An article failed validation; the [`RejectedArticle`] names the field. Permanent for
    /// that article.
    #[error("{0}")]
    InvalidArticle(RejectedArticle),
    /// An event's `data` is not a `news.raw.v1` payload the filter can read. Permanent: the
    /// filter dead-letters the event.
    #[error("invalid news.raw.v1 data at {field}: {reason}")]
    InvalidData {
        /// The JSON path of the offending field, e.g. `article.date`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A configuration value is invalid; the [`InvalidConfig`] names its dotted key, e.g.
    /// `news.eodhd.page_limit`.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// The operation was cancelled by shutdown.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// The event bus failed.
    #[error(transparent)]
    Bus(#[from] mt5_bus::Error),
}

fn fmt_retry_after(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; Retry-After {}s", d.as_secs()),
        None => String::new(),
    }
}

impl Error {
    /// An [`Error::InvalidData`]: `field` of a `news.raw.v1` payload is unusable.
    pub(crate) fn data(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidData {
            field,
            reason: reason.into(),
        }
    }

    /// Whether trying again later may succeed: 429, 5xx, timeouts, connection and transport
    /// failures, invalid responses (the next round refetches the page), an open circuit, and
    /// transient bus errors. Bad keys, 403, other 4xx, invalid articles and configuration are
    /// permanent; an exhausted quota is neither (see [`Error::paused_until`]).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Bus(e) => e.is_transient(),
            _ => matches!(
                self,
                Error::RateLimited { .. }
                    | Error::Server { .. }
                    | Error::Timeout { .. }
                    | Error::Connect { .. }
                    | Error::Transport { .. }
                    | Error::InvalidResponse { .. }
                    | Error::CircuitOpen { .. }
            ),
        }
    }

    /// Whether the client retries this error within one call (with backoff, or after
    /// `Retry-After`). Invalid responses are transient but not retried at once: the page is
    /// skipped and the next round tries again.
    pub fn is_retryable_now(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Server { .. }
                | Error::Timeout { .. }
                | Error::Connect { .. }
                | Error::Transport { .. }
        )
    }

    /// Whether this is a rejected API key: nothing will work until the key changes.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Unauthorized { .. })
    }

    /// When fetching may resume, for an exhausted quota.
    pub fn paused_until(&self) -> Option<DateTime<Utc>> {
        match self {
            Error::QuotaExhausted { resets_at } => Some(*resets_at),
            _ => None,
        }
    }

    /// How long to wait before the next attempt, when the error says: the server's
    /// `Retry-After` on 429, or the breaker's remaining cool-down.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } => *retry_after,
            Error::CircuitOpen { retry_in } => Some(*retry_in),
            _ => None,
        }
    }

    /// Whether the upstream looks unhealthy: the failures the circuit breaker counts (5xx,
    /// timeouts, connection and transport failures, invalid responses). A 4xx reply, even 429,
    /// means the upstream is alive.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Error::Server { .. }
                | Error::Timeout { .. }
                | Error::Connect { .. }
                | Error::Transport { .. }
                | Error::InvalidResponse { .. }
        )
    }

    /// The value of the `outcome` label of `mt5_news_fetch_total` for this error: a small,
    /// fixed set.
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::Forbidden { .. } => "forbidden",
            Error::QuotaExhausted { .. } => "quota_exhausted",
            Error::RateLimited { .. } => "rate_limited",
            Error::Server { .. } => "server_error",
            Error::Timeout { .. } => "timeout",
            Error::Connect { .. } | Error::Transport { .. } => "connect_error",
            Error::Status { .. } => "http_error",
            Error::InvalidQuery { .. } => "invalid_query",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::CircuitOpen { .. } => "circuit_open",
            Error::Cancelled => "cancelled",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5xx, timeouts, 429 and invalid responses are transient; bad keys, 403 and config are not.
    #[test]
    fn classifier_separates_transient_from_permanent() {
        let transient = [
            Error::Server {
                status: 502,
                detail: String::new(),
            },
            Error::Timeout {
                timeout: Duration::from_secs(1),
            },
            Error::RateLimited { retry_after: None },
            Error::InvalidResponse {
                status: 200,
                content_type: None,
                detail: String::new(),
            },
            Error::CircuitOpen {
                retry_in: Duration::from_secs(1),
            },
        ];
        for e in &transient {
            assert!(e.is_transient(), "{e}");
        }
        let permanent = [
            Error::Unauthorized {
                status: 401,
                detail: "Unauthenticated".into(),
            },
            Error::Forbidden { detail: String::new() },
            Error::Status {
                status: 400,
                detail: String::new(),
            },
            Error::Config(InvalidConfig::new("news.eodhd.page_limit", "x")),
        ];
        for e in &permanent {
            assert!(!e.is_transient(), "{e}");
            assert!(!e.is_retryable_now(), "{e}");
        }
        let quota = Error::QuotaExhausted { resets_at: Utc::now() };
        assert!(!quota.is_transient());
        assert!(quota.paused_until().is_some());
    }

    /// Invalid responses are transient but skipped, not retried within the call.
    #[test]
    fn invalid_responses_are_not_retried_within_the_call() {
        let e = Error::InvalidResponse {
            status: 200,
            content_type: Some("text/html".into()),
            detail: "not JSON".into(),
        };
        assert!(e.is_transient());
        assert!(!e.is_retryable_now());
        assert!(e.is_upstream_failure());
        assert!(e.to_string().contains("text/html"));
    }

    /// A bus error is as transient as the bus says it is.
    #[test]
    fn bus_errors_are_as_transient_as_the_bus_says() {
        let short = Error::Bus(mt5_bus::Error::DurabilityShort {
            op: "publish",
            command: "WAIT",
            acked: 0,
            wanted: 1,
        });
        assert!(short.is_transient(), "{short}");
        let config = Error::Bus(mt5_bus::Error::Config(InvalidConfig::new("bus.x", "y")));
        assert!(!config.is_transient(), "{config}");
    }

    /// Only a rejected key is an auth failure.
    #[test]
    fn only_a_rejected_key_is_an_auth_failure() {
        let rejected = Error::Unauthorized {
            status: 401,
            detail: "Unauthenticated".into(),
        };
        assert!(rejected.is_auth());
        let others = [
            Error::Forbidden { detail: String::new() },
            Error::Status {
                status: 400,
                detail: String::new(),
            },
            Error::Cancelled,
        ];
        for e in &others {
            assert!(!e.is_auth(), "{e}");
        }
    }

    /// An open circuit says how long it stays open; a 429 says what `Retry-After` said.
    #[test]
    fn an_open_circuit_and_a_rate_limit_say_when_to_retry() {
        let open = Error::CircuitOpen {
            retry_in: Duration::from_millis(1_500),
        };
        assert_eq!(open.retry_after(), Some(Duration::from_millis(1_500)));
        assert_eq!(Error::RateLimited { retry_after: None }.retry_after(), None);
        assert_eq!(Error::Cancelled.retry_after(), None);
    }

    /// Each error class has its own `outcome` label.
    #[test]
    fn each_error_class_has_its_outcome_label() {
        let labels = [
            (
                Error::Unauthorized {
                    status: 401,
                    detail: String::new(),
                },
                "unauthorized",
            ),
            (Error::Forbidden { detail: String::new() }, "forbidden"),
            (Error::QuotaExhausted { resets_at: Utc::now() }, "quota_exhausted"),
            (Error::RateLimited { retry_after: None }, "rate_limited"),
            (
                Error::Server {
                    status: 503,
                    detail: String::new(),
                },
                "server_error",
            ),
            (
                Error::Timeout {
                    timeout: Duration::from_secs(1),
                },
                "timeout",
            ),
            (
                Error::Status {
                    status: 404,
                    detail: String::new(),
                },
                "http_error",
            ),
            (
                Error::InvalidQuery {
                    reason: "empty symbol".into(),
                },
                "invalid_query",
            ),
            (
                Error::InvalidResponse {
                    status: 200,
                    content_type: None,
                    detail: String::new(),
                },
                "invalid_response",
            ),
            (
                Error::CircuitOpen {
                    retry_in: Duration::from_secs(1),
                },
                "circuit_open",
            ),
            (Error::Cancelled, "cancelled"),
            (Error::Config(InvalidConfig::new("news.x", "y")), "other"),
        ];
        for (e, label) in &labels {
            assert_eq!(e.outcome(), *label, "{e}");
        }
    }

    /// A 429 says the upstream is alive: the breaker does not count it.
    #[test]
    fn rate_limits_are_not_upstream_failures() {
        let e = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(!e.is_upstream_failure());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(e.to_string().contains("Retry-After 3s"), "{e}");
    }
}
