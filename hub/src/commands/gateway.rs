//! `gateway`: the HTTP gateway for MT5 terminals and other services (see `crate::gateway`).

use std::sync::Arc;

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, GATEWAY_TOKEN_ENV};
use crate::error::HubError;
use crate::gateway::{self, Gateway, EVENTS_PATH};
use crate::http::HttpServer;
use crate::services::{self, Retries, Tasks, Telemetry};

/// Serves the gateway's routes next to `/metrics`, `/healthz` and `/readyz` on `[http].addr`
/// until SIGINT/SIGTERM. Redis being unreachable is retried in the background (`/readyz` says
/// so); meanwhile requests get 503.
///
/// # Errors
/// No `MT5_GATEWAY_TOKEN` or an unusable Redis URL (exit 2), the HTTP address not bindable
/// (exit 1).
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken) -> Result<(), HubError> {
    let g = &cfg.http.gateway;
    if g.token.expose().trim().is_empty() {
        return Err(HubError::Usage(format!(
            "the gateway's bearer token is missing: set the environment variable {GATEWAY_TOKEN_ENV}"
        )));
    }
    let telemetry = Telemetry::new()?;
    let mut tasks = Tasks::new(cfg, cancel);
    let producer = Arc::new(OnceCell::new());
    let gateway = Arc::new(Gateway::new(cfg, producer.clone(), &telemetry.registry, tasks.token())?);
    let http = HttpServer::bind(cfg, telemetry.registry.clone(), telemetry.bus.clone())
        .await?
        .with_routes(gateway::routes(gateway.clone()));
    tracing::info!(
        path = EVENTS_PATH,
        read_streams = ?g.read_streams,
        write_streams = ?g.write_streams,
        "Gateway ready."
    );
    tasks.spawn("http", http.serve(tasks.token()));
    let token = tasks.token();
    // The shared tails' followers (gateway.md): until shutdown, retrying on their own.
    tasks.spawn("gateway tails", async move {
        gateway.follow_tails(&token).await;
        token.cancelled().await;
        Ok(())
    });
    let (cfg2, token) = (cfg.clone(), tasks.token());
    // Connects in the background, then stays until shutdown (a component that ends stops the
    // process).
    tasks.spawn("producer", async move {
        match services::producer(&cfg2, &telemetry, &token, Retries::ConnectUnbounded).await {
            Ok(p) => {
                let _ = producer.set(p);
            }
            Err(_) if token.is_cancelled() => return Ok(()),
            Err(e) => return Err(e),
        }
        token.cancelled().await;
        Ok(())
    });
    tasks.join().await
}
