//! The end-to-end latency harness of the news pipeline: `mt5-hub publish --rate R --count N`
//! into the raw stream, `filters` × `mt5-hub filter` into the filtered stream, all real
//! processes on one Redis, then the chaos history checker's verdict: lost, duplicated, and the
//! e2e latency (filtered entry id time − raw entry id time) of every event.
//!
//! Every event is a `news.raw.v1` article that passes the default filter, so every one has an
//! effect to time. The bus timings are the shipped defaults except the reclaim ones, which do
//! not matter without faults.

use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{BusTimings, HubProcess, Load as PublishLoad, Scenario};

use crate::{LoadError, Percentiles, Result};

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
            "{} published at {:.0}/s, filtered at {:.0}/s, e2e {}; lost {}, duplicates {}, pending {}",
            self.published, self.publish_rate, self.filter_rate, self.e2e, self.lost, self.duplicates, self.pending
        )
    }
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
    let sc = Scenario::new(name, redis_url, prefix)
        .map_err(setup)?
        .with_timings(timings);
    let checker = Checker::for_scenario(&sc);
    let result = measure(&sc, &checker, load).await;
    let s = &sc.streams;
    let deleted: std::result::Result<(), String> = async {
        let mut conn = checker.connection().await.map_err(|e| e.to_string())?;
        redis::cmd("DEL")
            .arg(&s.raw)
            .arg(&s.filtered)
            .arg(&s.deadletter)
            .query_async::<()>(&mut conn)
            .await
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
    let started = Instant::now();
    let mut publisher = sc.spawn_publisher(&publish).await.map_err(setup)?;
    let budget = Duration::from_secs_f64(load.count as f64 / load.rate.max(1.0) * 3.0 + 60.0);
    let status = publisher.wait_exit(budget).await.map_err(run_err)?;
    let publish_wall = started.elapsed();
    if !status.success() {
        return Err(LoadError::Run(format!(
            "the publisher exited with {status}: {}",
            publisher.stderr_tail(10)
        )));
    }
    checker.wait_drained(Duration::from_secs(120)).await.map_err(run_err)?;
    for f in &mut filters {
        let _ = f.sigterm_and_wait(Duration::from_secs(15)).await;
    }
    let verdict = checker.check(&[history]).await.map_err(run_err)?;
    let (first, last) = checker.output_span().await.map_err(run_err)?;
    let span_s = (last.saturating_sub(first) as f64 / 1000.0).max(0.001);
    let e2e = verdict.latency.map_or_else(Percentiles::default, |l| Percentiles {
        p50: l.p50_ms.max(0) as u64,
        p95: l.p95_ms.max(0) as u64,
        p99: l.p99_ms.max(0) as u64,
        max: l.max_ms.max(0) as u64,
    });
    Ok(Report {
        published: verdict.published,
        publish_rate: verdict.published as f64 / publish_wall.as_secs_f64().max(0.001),
        filter_rate: verdict.effects as f64 / span_s,
        e2e,
        lost: verdict.lost,
        duplicates: verdict.duplicated_effects + verdict.double_outcomes,
        pending: verdict.pending,
    })
}
