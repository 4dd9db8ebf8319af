//! The demo's run of the real pipeline: one fetch round through the EODHD client into
//! `news_raw`, two filter consumers of the filter group draining it, then what came out of
//! `news_filtered` and the dead letter stream.

use std::time::{Duration, Instant};

use mt5_bus::envelope::entry_millis;
use mt5_bus::query::{self, RangeOptions};
use mt5_bus::stats::stream_stats;
use mt5_bus::{Connection, StreamEntry};
use mt5_news::filter::metrics::{INVALID, PASSED, REJECTED};
use mt5_news::filter::RejectReason;
use mt5_news::{EodhdClient, Fetcher, FetcherConfig, FilterConfig, FilterMetrics, RoundReport};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::services::{self, Retries, Telemetry};

/// Filter consumers the demo runs (two, to show the group sharing the work).
const CONSUMERS: usize = 2;
/// How long the filter may take to drain what the round published.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the group's progress is polled.
const POLL: Duration = Duration::from_millis(80);

/// One news item that passed the filter.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PassedNews {
    pub(crate) ticker: String,
    pub(crate) score: f64,
    pub(crate) model: String,
    pub(crate) title: String,
    pub(crate) date: String,
    pub(crate) keywords: Vec<String>,
    pub(crate) entry_id: String,
    pub(crate) raw_entry_id: String,
    /// Filtered entry id ms minus raw entry id ms.
    pub(crate) latency_ms: Option<u64>,
}

/// What the filter decided, from its counters.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FilterCounts {
    pub(crate) passed: u64,
    /// `(reason, count)` in rule order.
    pub(crate) rejected: Vec<(String, u64)>,
    pub(crate) invalid: u64,
}

impl FilterCounts {
    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|(_, n)| n).sum()
    }
}

/// The outcome of a demo run.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) round: RoundReport,
    pub(crate) filter: FilterCounts,
    pub(crate) passed: Vec<PassedNews>,
    pub(crate) dead_lettered: u64,
    pub(crate) took: Duration,
}

/// Runs the pipeline once on `cfg` (the demo's effective configuration), with the same
/// construction as `fetch`, `filter` and `run` ([`services`]).
///
/// # Errors
/// Configuration errors (exit 2), Redis unreachable (exit 3), the filter not draining in time,
/// a consumer failing, or cancellation.
pub(crate) async fn run(
    cfg: &HubConfig,
    cancel: &CancellationToken,
    progress: &mut Progress,
) -> Result<Outcome, HubError> {
    let started = Instant::now();
    let telemetry = Telemetry::new()?;
    let eodhd = services::eodhd_client(cfg, &telemetry, cancel)?;
    let filter_cancel = cancel.child_token();
    let mut consumers = JoinSet::new();
    for _ in 0..CONSUMERS {
        let consumer = services::filter_consumer(cfg, &telemetry, None)?;
        consumers.spawn(services::run_consumer(cfg.clone(), consumer, filter_cancel.clone()));
    }
    // Whatever happens next, the consumers are stopped and joined before returning.
    let result = fetch_and_drain(cfg, &telemetry, eodhd, cancel, progress, &mut consumers).await;
    filter_cancel.cancel();
    progress.update("stopping the filter consumers");
    while let Some(joined) = consumers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "A demo filter consumer ended with an error."),
            Err(e) => tracing::warn!(error = %e, "A demo filter consumer task failed."),
        }
    }
    let (round, conn, marks) = result?;
    let f = &cfg.news.filter;
    let passed = read_passed(&conn, &f.output_stream, &marks.filtered).await?;
    let dead_lettered =
        count_dead_letters(&conn, &cfg.bus.deadletter_stream, &marks.deadletter, &f.input_stream).await?;
    Ok(Outcome {
        round,
        filter: counts(&telemetry.filter),
        passed,
        dead_lettered,
        took: started.elapsed(),
    })
}

/// The last ids of the output streams before the run: what comes after is this run's.
#[derive(Debug)]
struct Marks {
    filtered: String,
    deadletter: String,
}

/// Connects to Redis, marks the output streams, runs one fetch round and waits until the filter
/// consumers have drained what it published.
async fn fetch_and_drain(
    cfg: &HubConfig,
    telemetry: &Telemetry,
    eodhd: EodhdClient,
    cancel: &CancellationToken,
    progress: &mut Progress,
    consumers: &mut JoinSet<Result<(), HubError>>,
) -> Result<(RoundReport, Connection, Marks), HubError> {
    let (fetch_cfg, filter_cfg) = (&cfg.news.fetcher, &cfg.news.filter);
    progress.start("connecting to Redis");
    let producer = services::producer(cfg, telemetry, cancel, Retries::Bounded).await?;
    let conn = producer.connection();
    let marks = Marks {
        filtered: last_id(&conn, &filter_cfg.output_stream).await?,
        deadletter: last_id(&conn, &cfg.bus.deadletter_stream).await?,
    };
    let fetcher = services::fetcher(cfg, eodhd, producer)?;
    let round = fetch_round(&fetcher, fetch_cfg, cancel, progress).await?;
    wait_for_filter(&conn, filter_cfg, cancel, progress, consumers).await?;
    Ok((round, conn, marks))
}

/// Runs one fetch round of `fetcher`, ticking `progress` while it runs, then reports it. Fails
/// when the demo was cancelled meanwhile or when every ticker failed.
async fn fetch_round(
    fetcher: &Fetcher,
    fetch_cfg: &FetcherConfig,
    cancel: &CancellationToken,
    progress: &mut Progress,
) -> Result<RoundReport, HubError> {
    progress.start(format!("fetching news for {}", fetch_cfg.watchlist.join(", ")));
    let round = fetcher.round();
    tokio::pin!(round);
    let mut tick = tokio::time::interval(POLL);
    let round = loop {
        tokio::select! {
            r = &mut round => break r.map_err(services::news_error)?,
            _ = tick.tick() => progress.tick(),
        }
    };
    if cancel.is_cancelled() {
        return Err(interrupted());
    }
    report_round(&round, fetch_cfg, progress);
    if !round.tickers.is_empty() && round.failed() == round.tickers.len() {
        let first = round.tickers.iter().find_map(|t| t.error.clone()).unwrap_or_default();
        return Err(HubError::Failed(format!("fetching failed for every ticker: {first}")));
    }
    Ok(round)
}

/// Notes a line per ticker of `round` (fetched, new, already published, invalid, failure) and
/// closes the fetch step with the round's totals.
fn report_round(round: &RoundReport, fetch_cfg: &FetcherConfig, progress: &mut Progress) {
    for t in &round.tickers {
        let mut line = format!(
            "{:<8} {:>3} articles, {:>3} new, {:>3} already published",
            t.ticker, t.fetched, t.published, t.duplicates
        );
        if t.rejected > 0 {
            line.push_str(&format!(", {} invalid skipped", t.rejected));
        }
        if let Some(e) = &t.error {
            line.push_str(&format!(" (failed: {e})"));
        }
        progress.note(line);
    }
    progress.done(format!(
        "fetched {} articles, published {} events to {} in {}",
        round.fetched(),
        round.published(),
        fetch_cfg.stream,
        crate::output::human_ms(round.duration.as_millis() as u64)
    ));
}

/// Polls the filter group on its input stream every [`POLL`], showing what is waiting and in
/// flight, until it has nothing pending and lag 0. Fails after [`DRAIN_TIMEOUT`], when a
/// consumer stops early, or when the demo is cancelled.
async fn wait_for_filter(
    conn: &Connection,
    filter_cfg: &FilterConfig,
    cancel: &CancellationToken,
    progress: &mut Progress,
    consumers: &mut JoinSet<Result<(), HubError>>,
) -> Result<(), HubError> {
    progress.start(format!("filtering with {CONSUMERS} consumers of {}", filter_cfg.group));
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let (found, pending, lag) = group_backlog(conn, filter_cfg).await?;
        if found && pending == 0 && lag == Some(0) {
            break;
        }
        progress.update(format!(
            "filtering with {CONSUMERS} consumers of {}: {} waiting, {pending} in flight",
            filter_cfg.group,
            lag.map_or_else(|| "?".to_string(), |l| l.to_string())
        ));
        if Instant::now() >= deadline {
            return Err(HubError::Failed(format!(
                "the filter did not drain {} within {}s ({pending} pending)",
                filter_cfg.input_stream,
                DRAIN_TIMEOUT.as_secs()
            )));
        }
        if let Some(Ok(done)) = consumers.try_join_next() {
            return Err(HubError::Failed(format!(
                "a filter consumer stopped early: {}",
                done.err().map_or_else(|| "no error".to_string(), |e| e.to_string())
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => progress.tick(),
            () = cancel.cancelled() => return Err(interrupted()),
        }
    }
    progress.done(format!(
        "filtered {} into {}",
        filter_cfg.input_stream, filter_cfg.output_stream
    ));
    Ok(())
}

/// Where the filter group stands on its input stream: whether it exists, its pending entries
/// and its lag (`(false, 0, None)` without the group). Redis's nil lag counts as 0 when the
/// group has been delivered the stream's last entry.
async fn group_backlog(conn: &Connection, filter_cfg: &FilterConfig) -> Result<(bool, u64, Option<u64>), HubError> {
    let mut c = conn.clone();
    let stats = stream_stats(&mut c, &filter_cfg.input_stream).await?;
    let group = stats.groups.iter().find(|g| g.name == filter_cfg.group);
    let (pending, lag) = group.map_or((0, None), |g| {
        let lag = g
            .lag
            .or_else(|| (stats.last_id.as_deref() == Some(g.last_delivered_id.as_str())).then_some(0));
        (g.pending, lag)
    });
    Ok((group.is_some(), pending, lag))
}

fn interrupted() -> HubError {
    HubError::Failed("the demo was interrupted".into())
}

/// The newest entry id of `stream`, `0-0` when empty or missing.
async fn last_id(conn: &Connection, stream: &str) -> Result<String, HubError> {
    let last = query::last_entry(&mut conn.clone(), stream).await?;
    Ok(last.map_or_else(|| "0-0".to_string(), |e| e.id))
}

/// Entries of `stream` after `after`.
async fn entries_after(conn: &Connection, stream: &str, after: &str) -> Result<Vec<StreamEntry>, HubError> {
    Ok(query::range(&mut conn.clone(), stream, &RangeOptions::after(after)).await?)
}

async fn read_passed(conn: &Connection, stream: &str, after: &str) -> Result<Vec<PassedNews>, HubError> {
    let found = entries_after(conn, stream, after).await?;
    Ok(found.iter().filter_map(passed_news).collect())
}

/// Reads one `news.filtered.v1` entry; other entries are skipped.
fn passed_news(entry: &StreamEntry) -> Option<PassedNews> {
    let data: Value = serde_json::from_str(entry.field("data")?).ok()?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let raw_entry_id = text(&data["raw_entry_id"]);
    let latency_ms = match (entry_millis(&entry.id), entry_millis(&raw_entry_id)) {
        (Some(out), Some(inp)) => Some(out.saturating_sub(inp)),
        _ => None,
    };
    Some(PassedNews {
        ticker: data["ticker"]
            .as_str()
            .or_else(|| data["matched"]["ticker"].as_str())
            .unwrap_or_default()
            .to_string(),
        score: data["sentiment"]["score"].as_f64().unwrap_or(0.0),
        model: text(&data["sentiment"]["model"]),
        title: text(&data["article"]["title"]),
        date: text(&data["article"]["date"]),
        keywords: data["matched"]["keywords"]
            .as_array()
            .map(|k| k.iter().filter_map(|k| k.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        entry_id: entry.id.clone(),
        raw_entry_id,
        latency_ms,
    })
}

async fn count_dead_letters(conn: &Connection, dlq: &str, after: &str, from_stream: &str) -> Result<u64, HubError> {
    let found = entries_after(conn, dlq, after).await?;
    Ok(found
        .iter()
        .filter(|e| e.field("dlq_stream") == Some(from_stream))
        .count() as u64)
}

fn counts(m: &FilterMetrics) -> FilterCounts {
    FilterCounts {
        passed: m.count(PASSED, PASSED),
        rejected: RejectReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), m.count(REJECTED, r.as_str())))
            .collect(),
        invalid: m.count(INVALID, INVALID),
    }
}

/// `p` in 0..=100 of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank percentiles.
    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&v, 100), Some(20));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
