//! `run`: the fetcher, one filter consumer (with its reclaimer), the trimmer and the HTTP server
//! in one process, under one cancellation token.

use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::http::HttpServer;
use crate::services::{self, Retries, Tasks, Telemetry};

/// Runs everything until SIGINT/SIGTERM, then joins every component within
/// `bus.consumer.shutdown_timeout_ms`.
///
/// The reclaimer runs inside the filter consumer (`[bus.reclaim]`): it claims entries of
/// consumers without a heartbeat, and entries idle past `min_idle_ms`, into that consumer, which
/// then re-reads them; a claim needs a live consumer to process what it took.
///
/// # Errors
/// A missing `EODHD_API_KEY` or invalid settings (exit 2); a configured group, or the filter's,
/// missing on a stream with entries (exit 2, naming `groups create`); the HTTP address not
/// bindable or a component failing (exit 1). Redis being unreachable is retried forever.
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, consumer: Option<String>) -> Result<(), HubError> {
    let telemetry = Telemetry::new()?;
    let mut tasks = Tasks::new(cfg, cancel);
    let client = services::eodhd_client(cfg, &telemetry, &tasks.token())?;
    let consumer = services::filter_consumer(cfg, &telemetry, consumer)?;
    let http = HttpServer::bind(cfg, telemetry.registry.clone(), telemetry.bus.clone()).await?;
    tasks.spawn("http", http.serve(tasks.token()));
    tasks.spawn("filter", services::run_consumer(cfg.clone(), consumer, tasks.token()));
    let (c, t, token) = (cfg.clone(), telemetry.clone(), tasks.token());
    tasks.spawn("trimmer", async move {
        let producer = services::producer(&c, &t, &token, Retries::Unbounded).await?;
        services::run_trimmer(&c, &producer, &t, token).await;
        Ok(())
    });
    tasks.spawn(
        "fetcher",
        super::fetch::fetcher_service(cfg.clone(), telemetry, client, tasks.token()),
    );
    tasks.join().await
}
