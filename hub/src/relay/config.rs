//! `[alerts]`: the Alertmanager → DingTalk relay (`mt5-hub alert-relay`).

use std::collections::BTreeMap;

use mt5_bus::validate::{ensure, positive, within};
use mt5_bus::{InvalidConfig, Secret};
use serde::{Deserialize, Serialize};

/// The DingTalk custom robot's send endpoint.
pub(crate) const DEFAULT_DINGTALK_URL: &str = "https://oapi.dingtalk.com/robot/send";

/// `[alerts]`: where and how the relay delivers Alertmanager notifications to a DingTalk robot.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct AlertsConfig {
    /// The robot's send URL, without `access_token` (the relay adds it). Default
    /// `https://oapi.dingtalk.com/robot/send` (env `MT5_DINGTALK_URL`).
    pub(crate) dingtalk_url: String,
    /// The robot's access token: only from the env `DINGTALK_ACCESS_TOKEN`, never from the file.
    pub(crate) access_token: Secret,
    /// The robot's signing secret (`SEC...`, "加签"): only from the env `DINGTALK_SECRET`. When
    /// set, every request carries `timestamp` and `sign`. Default none (unsigned).
    pub(crate) secret: Secret,
    /// Messages per minute to the robot (sliding 60 s window, retries included). DingTalk
    /// allows 20 and throttles a robot that sends more for 10 minutes (errcode 130101); while
    /// the window is full, notifications queue and are merged into one message. Default 20.
    pub(crate) rate_limit_per_minute: u32,
    /// Attempts per message, the first included; transient failures (HTTP 5xx or 429,
    /// timeouts, connection errors) are retried. Default 4.
    pub(crate) max_attempts: u32,
    /// First retry delay, in ms; it doubles per attempt up to `retry_max_ms`. Default 500.
    pub(crate) retry_initial_ms: u64,
    /// Longest retry delay, in ms. Default 8000.
    pub(crate) retry_max_ms: u64,
    /// Timeout of one request to DingTalk, in ms. Default 5000.
    pub(crate) request_timeout_ms: u64,
    /// How long the relay sends nothing after DingTalk said the robot is throttled (errcode
    /// 130101 "send too fast", or 90030 "webhook over limit"), in ms. DingTalk throttles a
    /// robot for 10 minutes, so retrying sooner only fails again. The throttled message fails
    /// (5xx, Alertmanager retries); notifications arriving meanwhile queue and, once the pause
    /// is over, go out merged if their callers still wait, else Alertmanager's retries bring
    /// them back. 0: no pause. Default 600000.
    pub(crate) throttle_pause_ms: u64,
    /// How long a webhook request waits for its delivery (queueing, rate limit and retries
    /// included), in ms; past it the relay answers 503, skips the notification if it was not
    /// sent yet, and Alertmanager retries. The default outlasts a full rate limit window, so a
    /// queued notification gets its turn; Alertmanager may hang up earlier (its notify timeout
    /// is the route's `group_interval`, at least 10 s), with the same effect. Default 65000.
    pub(crate) delivery_timeout_ms: u64,
    /// Notifications waiting for delivery at most; beyond it webhooks are answered 503 at
    /// once. Default 1000.
    pub(crate) queue_capacity: usize,
    /// The longest message text, in bytes; longer text is cut with a note (DingTalk rejects
    /// bodies over 20000 bytes, errcode 460101). Default 18000.
    pub(crate) max_message_bytes: usize,
    /// Whether resolved notifications @-mention too. Default false (only firing ones page).
    pub(crate) mention_resolved: bool,
    /// @-mentions per severity label value (`[alerts.mentions.critical]`, ...). A notification's
    /// severity is its `commonLabels.severity`, else the highest among its alerts (critical >
    /// error > warning > info). Default: `critical`, `warning` and `info`, all empty.
    pub(crate) mentions: BTreeMap<String, MentionConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dingtalk_url: DEFAULT_DINGTALK_URL.to_string(),
            access_token: Secret::default(),
            secret: Secret::default(),
            rate_limit_per_minute: 20,
            max_attempts: 4,
            retry_initial_ms: 500,
            retry_max_ms: 8000,
            request_timeout_ms: 5000,
            throttle_pause_ms: 600_000,
            delivery_timeout_ms: 65_000,
            queue_capacity: 1000,
            max_message_bytes: 18_000,
            mention_resolved: false,
            mentions: ["critical", "warning", "info"]
                .into_iter()
                .map(|s| (s.to_string(), MentionConfig::default()))
                .collect(),
        }
    }
}

/// `[alerts.mentions.<severity>]`: who is @-mentioned for notifications of that severity.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct MentionConfig {
    /// Phone numbers (`at.atMobiles`; `+<country>-<number>` outside China). Default none.
    pub(crate) mobiles: Vec<String>,
    /// DingTalk user ids (`at.atUserIds`). Default none.
    pub(crate) user_ids: Vec<String>,
    /// @all (`at.isAtAll`). Default false.
    pub(crate) at_all: bool,
}

impl AlertsConfig {
    /// Checks ranges and the URL.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first bad field.
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        match reqwest::Url::parse(&self.dingtalk_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => ensure(
                !u.query_pairs().any(|(k, _)| k == "access_token"),
                "alerts.dingtalk_url",
                "must not carry access_token: set the env DINGTALK_ACCESS_TOKEN instead",
            )?,
            _ => return Err(InvalidConfig::new("alerts.dingtalk_url", "must be an http(s) URL")),
        }
        positive("alerts.rate_limit_per_minute", self.rate_limit_per_minute)?;
        positive("alerts.max_attempts", self.max_attempts)?;
        positive("alerts.retry_initial_ms", self.retry_initial_ms)?;
        ensure(
            self.retry_initial_ms <= self.retry_max_ms,
            "alerts.retry_initial_ms",
            "must be at most alerts.retry_max_ms",
        )?;
        positive("alerts.request_timeout_ms", self.request_timeout_ms)?;
        positive("alerts.delivery_timeout_ms", self.delivery_timeout_ms)?;
        positive("alerts.queue_capacity", self.queue_capacity)?;
        within("alerts.max_message_bytes", self.max_message_bytes, 1000..=20_000)
    }
}
