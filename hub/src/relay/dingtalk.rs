//! The DingTalk robot's send API: one POST per message, the answer classified as delivered,
//! transient (worth retrying) or permanent.
//!
//! The token and the secret only ever go into the request URL; errors are built from
//! `reqwest` errors stored `without_url()` and from DingTalk's `errcode`/`errmsg`, so neither
//! can reach a log line, an error or a metric.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use mt5_bus::Secret;
use reqwest::Url;
use serde::Deserialize;

use super::config::AlertsConfig;
use super::render::Message;
use super::sign;

/// DingTalk's "send too fast, exceed 20 times per minute": the robot is throttled for 10
/// minutes.
pub(crate) const ERRCODE_RATE_LIMITED: i64 = 130_101;
/// DingTalk's "webhook over limit": the organization's webhook quota is used up.
pub(crate) const ERRCODE_OVER_LIMIT: i64 = 90_030;

/// Why a message was not delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// Worth retrying: HTTP 5xx or 429, a timeout, a connection error.
    #[error("{0}")]
    Transient(String),
    /// DingTalk throttles the robot (errcode 130101 or 90030): nothing gets through for a
    /// while, so the relay pauses instead of retrying at once.
    #[error("{0}")]
    Throttled(String),
    /// Retrying the same message will not help: another errcode (bad sign 310000, unknown
    /// token 300001, too long 460101, ...) or another HTTP 4xx.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// Whether a retry after the usual backoff may succeed.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }

    /// Whether the robot is throttled, so sending must pause.
    pub(crate) fn is_throttled(&self) -> bool {
        matches!(self, SendError::Throttled(_))
    }
}

/// Where messages go: DingTalk, or a fake in tests.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends one message.
    fn send(&self, msg: &Message) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The DingTalk robot client.
pub(crate) struct DingTalk {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    secret: Secret,
}

impl fmt::Debug for DingTalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DingTalk")
            .field("base", &self.base.as_str())
            .field("signed", &!self.secret.is_empty())
            .finish_non_exhaustive()
    }
}

/// DingTalk's answer body.
#[derive(Debug, Deserialize)]
struct Answer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

impl DingTalk {
    /// A client for `[alerts]`.
    ///
    /// # Errors
    /// A message when the URL is invalid or the HTTP client cannot be built.
    pub(crate) fn new(cfg: &AlertsConfig) -> Result<Self, String> {
        let base = Url::parse(&cfg.dingtalk_url).map_err(|e| format!("alerts.dingtalk_url: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            // A redirect would carry the token to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))?;
        Ok(DingTalk {
            http,
            base,
            token: cfg.access_token.clone(),
            secret: cfg.secret.clone(),
        })
    }

    async fn post(&self, msg: &Message) -> Result<(), SendError> {
        let url = sign::send_url(
            &self.base,
            self.token.expose(),
            self.secret.expose(),
            chrono::Utc::now().timestamp_millis(),
        );
        let resp = self.http.post(url).json(msg).send().await.map_err(|e| {
            let e = e.without_url();
            let what = if e.is_timeout() { "timed out" } else { "failed" };
            SendError::Transient(format!("the request to DingTalk {what}: {e}"))
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SendError::Transient(format!("reading DingTalk's answer failed: {}", e.without_url())))?;
        if !status.is_success() {
            let msg = format!("DingTalk answered HTTP {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                SendError::Transient(msg)
            } else {
                SendError::Permanent(msg)
            });
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            SendError::Transient(format!(
                "DingTalk answered HTTP {status} without an errcode ({} bytes)",
                body.len()
            ))
        })?;
        let errmsg: String = answer.errmsg.chars().take(200).collect();
        match answer.errcode {
            0 => Ok(()),
            code @ (ERRCODE_RATE_LIMITED | ERRCODE_OVER_LIMIT) => Err(SendError::Throttled(format!(
                "DingTalk throttles the robot: errcode {code} ({errmsg})"
            ))),
            code => Err(SendError::Permanent(format!(
                "DingTalk refused the message: errcode {code} ({errmsg})"
            ))),
        }
    }
}

impl Transport for DingTalk {
    fn send(&self, msg: &Message) -> impl Future<Output = Result<(), SendError>> + Send {
        self.post(msg)
    }
}

#[cfg(test)]
mod tests {
    use mt5_fixtures::dingtalk::MockDingTalk;

    use super::*;
    use crate::relay::payload::tests::sample;
    use crate::relay::render::render;

    /// DingTalk's answers are classified: errcode 0 delivered; 130101 and 90030 throttled;
    /// HTTP 5xx and 429 transient; another errcode or HTTP 4xx permanent. Errors never hold
    /// the token or the secret.
    #[tokio::test]
    async fn answers_are_classified_by_errcode_and_status() {
        let (token, secret) = ("t0k-classify", "SECclassify");
        let mock = MockDingTalk::start(token, Some(secret)).await;
        let cfg = AlertsConfig {
            dingtalk_url: mock.url(),
            access_token: Secret::new(token),
            secret: Secret::new(secret),
            ..AlertsConfig::default()
        };
        let client = DingTalk::new(&cfg).unwrap();
        let msg = render(&[sample()], &cfg);
        assert_eq!(client.send(&msg).await, Ok(()));
        for (errcode, throttled) in [
            (ERRCODE_RATE_LIMITED, true),
            (ERRCODE_OVER_LIMIT, true),
            (310_000, false),
            (460_101, false),
        ] {
            mock.errcode_next(1, errcode);
            let err = client.send(&msg).await.unwrap_err();
            assert_eq!(err.is_throttled(), throttled, "{errcode}: {err:?}");
            assert!(!err.is_transient(), "{errcode}: {err:?}");
            assert!(err.to_string().contains(&errcode.to_string()), "{err}");
        }
        for (status, transient) in [(503, true), (500, true), (429, true), (400, false), (404, false)] {
            mock.fail_next(1, status);
            let err = client.send(&msg).await.unwrap_err();
            assert_eq!(err.is_transient(), transient, "{status}: {err:?}");
            assert!(!err.is_throttled(), "{status}: {err:?}");
            let text = format!("{err} {err:?}");
            assert!(!text.contains(token) && !text.contains(secret), "{text}");
        }
    }
}
