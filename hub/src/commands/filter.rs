//! `filter [--consumer NAME]`: one consumer of the news filter's group.

use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::http::HttpServer;
use crate::services::{self, Tasks, Telemetry};

/// Runs one filter consumer and the HTTP server until SIGINT/SIGTERM; the consumer finishes what
/// it holds within `bus.consumer.shutdown_timeout_ms` and deletes its heartbeat.
///
/// # Errors
/// Invalid `[news.filter]` settings (exit 2), its group missing on an input stream with entries
/// (exit 2, naming `groups create`), the HTTP address not bindable (exit 1). Redis being
/// unreachable is retried forever (see `/readyz`).
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, consumer: Option<String>) -> Result<(), HubError> {
    let telemetry = Telemetry::new()?;
    let consumer = services::filter_consumer(cfg, &telemetry, consumer)?;
    let http = HttpServer::bind(cfg, telemetry.registry.clone(), telemetry.bus.clone()).await?;
    let mut tasks = Tasks::new(cfg, cancel);
    tasks.spawn("http", http.serve(tasks.token()));
    tasks.spawn("filter", services::run_consumer(cfg.clone(), consumer, tasks.token()));
    tasks.join().await
}
