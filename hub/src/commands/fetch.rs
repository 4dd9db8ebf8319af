//! `fetch [--once]`: the EODHD news fetcher.

use chrono::SecondsFormat;
use mt5_news::RoundReport;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::http::HttpServer;
use crate::output::{human_ms, or_dash, print, Table};
use crate::services::{self, Retries, Tasks, Telemetry};

/// `--once`: one round, a per-ticker summary, exit 1 when every ticker failed. Otherwise the
/// service: rounds every `news.fetcher.interval_secs` (plus jitter) and the HTTP server, until
/// SIGINT/SIGTERM.
///
/// # Errors
/// A missing `EODHD_API_KEY` or invalid settings (exit 2); Redis unreachable with `--once`
/// (exit 3); every ticker failing with `--once` (exit 1).
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, once: bool) -> Result<(), HubError> {
    let telemetry = Telemetry::new()?;
    if once {
        return run_once(cfg, &telemetry, cancel).await;
    }
    let mut tasks = Tasks::new(cfg, cancel);
    // The key is checked before anything listens: a usage error exits at once.
    let client = services::eodhd_client(cfg, &telemetry, &tasks.token())?;
    let http = HttpServer::bind(cfg, telemetry.registry.clone(), telemetry.bus.clone()).await?;
    tasks.spawn("http", http.serve(tasks.token()));
    tasks.spawn(
        "fetcher",
        fetcher_service(cfg.clone(), telemetry, client, tasks.token()),
    );
    tasks.join().await
}

/// Connects (retrying until cancelled) and runs rounds until cancelled.
pub(crate) async fn fetcher_service(
    cfg: HubConfig,
    telemetry: Telemetry,
    client: mt5_news::EodhdClient,
    cancel: CancellationToken,
) -> Result<(), HubError> {
    let producer = services::producer(&cfg, &telemetry, &cancel, Retries::Unbounded).await?;
    let fetcher = services::fetcher(&cfg, client, producer)?;
    tracing::info!(watchlist = ?cfg.news.fetcher.watchlist, interval_secs = cfg.news.fetcher.interval_secs, "News fetcher starting.");
    match fetcher.run(cfg.news.fetcher.schedule(), cancel).await {
        Ok(()) | Err(mt5_news::Error::Cancelled) => Ok(()),
        Err(e) => Err(services::news_error(e)),
    }
}

async fn run_once(cfg: &HubConfig, telemetry: &Telemetry, cancel: &CancellationToken) -> Result<(), HubError> {
    let client = services::eodhd_client(cfg, telemetry, cancel)?;
    let producer = services::producer(cfg, telemetry, cancel, Retries::Bounded).await?;
    let fetcher = services::fetcher(cfg, client, producer)?;
    let report = fetcher.round().await.map_err(services::news_error)?;
    print(&summary(&report))?;
    if !report.tickers.is_empty() && report.failed() == report.tickers.len() {
        return Err(HubError::Failed(format!(
            "every ticker failed ({} of {})",
            report.failed(),
            report.tickers.len()
        )));
    }
    Ok(())
}

/// The per-ticker table and a total line.
fn summary(report: &RoundReport) -> String {
    let mut t = Table::new(0, &["TICKER", "FETCHED", "PUBLISHED", "DUPLICATES", "CURSOR", "ERROR"]);
    for r in &report.tickers {
        t.row(vec![
            r.ticker.clone(),
            r.fetched.to_string(),
            r.published.to_string(),
            r.duplicates.to_string(),
            or_dash(r.cursor.map(|c| c.to_rfc3339_opts(SecondsFormat::Secs, true))),
            or_dash(r.error.as_deref()),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!(
        "total: fetched {}, published {}, duplicates {}, failed {} of {} tickers, took {}\n",
        report.fetched(),
        report.published(),
        report.duplicates(),
        report.failed(),
        report.tickers.len(),
        human_ms(report.duration.as_millis() as u64),
    ));
    if let Some(until) = report.paused_until {
        out.push_str(&format!(
            "paused: the EODHD daily quota is exhausted until {}\n",
            until.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    out
}
