//! The end-to-end latency harness of the news pipeline: `mt5-hub publish --rate R --count N`
//! into the raw stream, `filters` × `mt5-hub filter` into the filtered stream, all real
//! processes on one Redis, then the chaos history checker's verdict: lost, duplicated, and the
//! e2e latency (filtered entry id time − raw entry id time, 1 ms resolution) of every event.
//! Beside it, a tail reader of the filtered stream (`tail`, reporting a [`TailReport`]) times
//! every event from the publisher's µs stamp (`data.published_us`) to the output's arrival at the reader.
//! [`run_steps`] raises the rate step by step until the pipeline no longer keeps up.
//!
//! Every event is a `news.raw.v1` article that passes the default filter, so every one has an
//! effect to time. The bus timings are the shipped defaults except the reclaim ones, which do
//! not matter without faults.

use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{BusTimings, HubProcess, Load as PublishLoad, Scenario};

use crate::{LoadError, Percentiles, Result};

mod steps;
mod tail;

pub use steps::{run_steps, shortfall, Step, Steps, StepsReport, MAX_P95_US, MIN_PUBLISH_SHARE};
pub use tail::TailReport;

/// How long the group may take to drain after the publisher exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the tail reader may take to read the last outputs after the drain.
const TAIL_FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// The load.
#[derive(Debug, Clone)]
pub struct Load {
    /// Events per second the publisher aims at.
    pub rate: f64,
    /// Events in all.
    pub count: u64,
    /// Filter consumer processes.
    pub filters: usize,
    /// Events per `XADD` batch of the publisher (its default when `None`).
    pub batch: Option<u64>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Acknowledged publishes.
    pub published: u64,
    /// Events per second the publisher achieved (acknowledged / its wall time).
    pub publish_rate: f64,
    /// Events per second the filters wrote, from the first effect to the last.
    pub filter_rate: f64,
    /// E2e latency (raw entry id → filtered entry id), ms.
    pub e2e: Percentiles,
    /// E2e latency at µs resolution (`published_us` → arrival at the tail reader), of every
    /// output the reader saw.
    pub tail: TailReport,
    /// Lost events (the checker's).
    pub lost: u64,
    /// Duplicated effects.
    pub duplicates: u64,
    /// Events still pending after the drain.
    pub pending: u64,
}

impl Report {
    /// The report's one-line summary.
    pub fn line(&self) -> String {
        format!(
            "{} published at {:.0}/s, filtered at {:.0}/s, e2e (published_us → read) {} of {} timed; e2e (entry ids) {}; lost {}, duplicates {}, pending {}",
            self.published,
            self.publish_rate,
            self.filter_rate,
            us_text(&self.tail.e2e_us),
            self.tail.timed,
            self.e2e,
            self.lost,
            self.duplicates,
            self.pending
        )
    }
}

/// µs as ms with 3 decimals.
pub fn ms3(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

/// µs percentiles as ms with 3 decimals.
pub fn us_text(p: &Percentiles) -> String {
    format!(
        "p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        ms3(p.p50),
        ms3(p.p95),
        ms3(p.p99),
        ms3(p.max)
    )
}

fn setup(e: impl std::fmt::Display) -> LoadError {
    LoadError::Setup(e.to_string())
}

fn run_err(e: impl std::fmt::Display) -> LoadError {
    LoadError::Run(e.to_string())
}

/// Runs the pipeline under `load` on the Redis at `redis_url`, streams under `prefix` (fresh
/// ones: the checker reads them whole), and deletes those streams afterwards, failed or not, so
/// that runs repeated on one Redis do not fill its memory (the shipped `redis.conf` refuses
/// writes at `maxmemory`).
///
/// # Errors
/// A process did not start or exited with an error, or the group did not drain.
pub async fn run(name: &str, redis_url: &str, prefix: &str, load: &Load) -> Result<Report> {
    let mut timings = BusTimings::default();
    let bus = mt5_bus::BusConfig::default();
    timings.block_ms = bus.consumer.block_ms;
    timings.read_count = bus.consumer.count as u64;
    // The run keeps every entry of its streams until it ends (the checker reads them whole),
    // where a deployment trims what its groups acknowledged: the stream's length is not lag
    // here, so the backlog limit (1 000 000 entries by default, passed at 16 667/s × 60 s)
    // would refuse a long step's publishes although the filters keep up. Lag shows in the
    // latency and in the drain instead.
    let sc = Scenario::new(name, redis_url, prefix)
        .map_err(setup)?
        .with_timings(timings)
        .with_env("MT5_BUS__TRIM__BACKLOG_LIMIT", "0");
    let checker = Checker::for_scenario(&sc);
    let result = measure(&sc, &checker, load).await;
    let s = &sc.streams;
    let deleted: std::result::Result<(), String> = async {
        let mut conn = checker.connection().await.map_err(|e| e.to_string())?;
        mt5_bus::query::delete(&mut conn, &[&s.raw, &s.filtered, &s.deadletter])
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = deleted {
        tracing::warn!(error = %e, "Cannot delete the run's streams.");
    }
    result
}

/// The run itself: the processes, the load, the drain and the verdict.
async fn measure(sc: &Scenario, checker: &Checker, load: &Load) -> Result<Report> {
    let mut filters: Vec<HubProcess> = Vec::new();
    for i in 0..load.filters {
        let f = sc.spawn_filter(&format!("f{i}")).await.map_err(setup)?;
        f.http_addr(Duration::from_secs(20)).await.map_err(setup)?;
        filters.push(f);
    }
    let history = sc.history_path("load");
    let mut publish = PublishLoad::news(load.rate, load.count, history.clone());
    if let Some(b) = load.batch {
        publish = publish.with_batch(b);
    }
    let budget = Duration::from_secs_f64(load.count as f64 / load.rate.max(1.0) * 3.0 + 60.0);
    let tail = tail::Tail::start(
        checker.connection().await.map_err(setup)?,
        &sc.streams.filtered,
        load.count,
        Instant::now() + budget + DRAIN_TIMEOUT,
    )
    .await?;
    let started = Instant::now();
    let mut publisher = sc.spawn_publisher(&publish).await.map_err(setup)?;
    // A publisher still running at the budget's end is named with what it last logged (say,
    // backpressure warnings), not only with the timeout.
    let status = match publisher.wait_exit(budget).await {
        Ok(status) => status,
        Err(e) => {
            return Err(run_err(format!(
                "{e}; its last log lines:\n{}",
                publisher.stderr_tail(3)
            )))
        }
    };
    let publish_wall = started.elapsed();
    if !status.success() {
        return Err(LoadError::Run(format!(
            "the publisher exited with {status}: {}",
            publisher.stderr_tail(10)
        )));
    }
    checker.wait_drained(DRAIN_TIMEOUT).await.map_err(run_err)?;
    // Drained: every output is written, so the reader only has its last replies to take.
    let tail = tail.finish(TAIL_FINISH_TIMEOUT).await?;
    for f in &mut filters {
        let _ = f.sigterm_and_wait(Duration::from_secs(15)).await;
    }
    let verdict = checker.check(&[history]).await.map_err(run_err)?;
    let (first, last) = checker.output_span().await.map_err(run_err)?;
    let span_s = (last.saturating_sub(first) as f64 / 1000.0).max(0.001);
    let e2e = verdict.latency.unwrap_or_default();
    Ok(Report {
        published: verdict.published,
        publish_rate: verdict.published as f64 / publish_wall.as_secs_f64().max(0.001),
        filter_rate: verdict.effects as f64 / span_s,
        e2e,
        tail,
        lost: verdict.lost,
        duplicates: verdict.duplicated_effects + verdict.double_outcomes,
        pending: verdict.pending,
    })
}
