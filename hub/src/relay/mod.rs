//! The Alertmanager → DingTalk relay behind `mt5-hub alert-relay`.
//!
//! Alertmanager posts webhook notifications (payload version 4) to `POST /alertmanager`; each
//! becomes one DingTalk markdown message, signed when `DINGTALK_SECRET` is set, with
//! @-mentions by severity. The call waits for the delivery (at most
//! `alerts.delivery_timeout_ms`) and answers:
//!
//! - 200 `{"status":"delivered","merged":bool}` once DingTalk accepted the message;
//! - 400 `{"status":"error","error":...}` for a body that is not a version 4 payload
//!   (Alertmanager does not retry 4xx, and resending the same body would not help);
//! - 502 when DingTalk refused the message or stayed unreachable through the retries, and 503
//!   when the relay's queue is full, the wait timed out or the relay is shutting down: 5xx,
//!   so Alertmanager retries (until its next `group_interval`). A refusal such as a bad sign
//!   is answered 5xx too: the operator fixes the robot's settings and the retries get through
//!   instead of the alert being dropped.
//!
//! # Layout
//!
//! - `config`: `[alerts]` ([`AlertsConfig`]).
//! - `payload`: the webhook payload's serde model.
//! - `render`: notifications → one DingTalk markdown message (title, alerts, links, mentions,
//!   size limit).
//! - `sign`: DingTalk's HMAC-SHA256 request signing.
//! - `dingtalk`: the robot's send API and the classification of its answers.
//! - `sender`: the one task that sends: rate limit window, merging, retries, the pause after
//!   DingTalk throttled the robot.
//! - `metrics`: `mt5_alerts_relayed_total{outcome}`.

mod config;
mod dingtalk;
mod metrics;
mod payload;
mod render;
mod sender;
mod sign;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

pub(crate) use self::config::AlertsConfig;
pub(crate) use self::dingtalk::DingTalk;
pub(crate) use self::metrics::RelayMetrics;
pub(crate) use self::sender::Sender;

use self::metrics::{EXPIRED, INVALID};
use self::payload::Notification;
use self::sender::{Delivery, Job};

/// The path Alertmanager's `webhook_configs[].url` points at.
pub(crate) const WEBHOOK_PATH: &str = "/alertmanager";

/// What the webhook handler needs.
#[derive(Clone, Debug)]
struct Handle {
    jobs: mpsc::Sender<Job>,
    metrics: RelayMetrics,
    delivery_timeout: Duration,
}

/// The relay's two halves: the route to serve next to `/metrics`, and the sending task.
///
/// # Errors
/// A message when the DingTalk client cannot be built.
pub(crate) fn relay(cfg: &AlertsConfig, metrics: RelayMetrics) -> Result<(Router, Sender<DingTalk>), String> {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity);
    let dingtalk = DingTalk::new(cfg)?;
    let sender = Sender::new(rx, dingtalk, cfg.clone(), metrics.clone());
    let handle = Handle {
        jobs: tx,
        metrics,
        delivery_timeout: Duration::from_millis(cfg.delivery_timeout_ms),
    };
    let router = Router::new().route(WEBHOOK_PATH, post(webhook)).with_state(handle);
    Ok((router, sender))
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"status": "error", "error": msg.into()}))).into_response()
}

/// `POST /alertmanager`.
async fn webhook(State(h): State<Handle>, body: Bytes) -> Response {
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => {
            h.metrics.add(INVALID, 1);
            tracing::warn!(error = %e, bytes = body.len(), "Refused a webhook body that is not an Alertmanager payload.");
            return error(StatusCode::BAD_REQUEST, e);
        }
    };
    tracing::debug!(
        status = notification.status.upper(),
        alertname = %notification.alert_name(),
        alerts = notification.alerts.len(),
        group_key = %notification.group_key,
        "Received an Alertmanager notification."
    );
    let (reply, outcome) = oneshot::channel();
    if h.jobs.try_send(Job { notification, reply }).is_err() {
        h.metrics.add(EXPIRED, 1);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay's queue is full or it is shutting down; retry later",
        );
    }
    match tokio::time::timeout(h.delivery_timeout, outcome).await {
        Ok(Ok(Delivery::Delivered { merged })) => {
            (StatusCode::OK, Json(json!({"status": "delivered", "merged": merged}))).into_response()
        }
        Ok(Ok(Delivery::Failed { reason })) => error(StatusCode::BAD_GATEWAY, reason),
        Ok(Err(_)) => error(StatusCode::SERVICE_UNAVAILABLE, "the relay is shutting down"),
        // Dropping `outcome` here makes the sender skip the notification if it was not sent yet.
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not delivered within {} ms (DingTalk rate limit or retries); retry later",
                h.delivery_timeout.as_millis()
            ),
        ),
    }
}
