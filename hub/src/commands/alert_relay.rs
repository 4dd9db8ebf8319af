//! `alert-relay`: Alertmanager webhooks → DingTalk robot messages (see `crate::relay`).

use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, DINGTALK_ACCESS_TOKEN_ENV};
use crate::error::HubError;
use crate::http::HttpServer;
use crate::relay::{self, RelayMetrics, WEBHOOK_PATH};
use crate::services::{Tasks, Telemetry};

/// Serves `POST /alertmanager` next to `/metrics`, `/healthz` and `/readyz` on `[http].addr`
/// and delivers to the DingTalk robot of `[alerts]` until SIGINT/SIGTERM. Redis is not used.
///
/// # Errors
/// No `DINGTALK_ACCESS_TOKEN` or an invalid `[alerts]` (exit 2), the HTTP address not bindable
/// (exit 1).
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken) -> Result<(), HubError> {
    let alerts = &cfg.alerts;
    if alerts.access_token.expose().trim().is_empty() {
        return Err(HubError::Usage(format!(
            "the DingTalk access token is missing: set the environment variable {DINGTALK_ACCESS_TOKEN_ENV}"
        )));
    }
    let telemetry = Telemetry::new()?;
    let metrics = RelayMetrics::register(&telemetry.registry)
        .map_err(|e| HubError::Failed(format!("cannot register the relay metrics: {e}")))?;
    let (routes, sender) = relay::relay(alerts, metrics).map_err(HubError::Usage)?;
    let http = HttpServer::bind(cfg, telemetry.registry.clone(), telemetry.bus.clone())
        .await?
        .without_redis()
        .with_routes(routes);
    tracing::info!(
        path = WEBHOOK_PATH,
        signed = !alerts.secret.is_empty(),
        rate_limit_per_minute = alerts.rate_limit_per_minute,
        "Alert relay ready for Alertmanager webhooks."
    );
    let mut tasks = Tasks::new(cfg, cancel);
    tasks.spawn("http", http.serve(tasks.token()));
    let token = tasks.token();
    tasks.spawn("dingtalk", async move {
        sender.run(token).await;
        Ok(())
    });
    tasks.join().await
}
