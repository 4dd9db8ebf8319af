//! `target/loadtest/report.md`: one row per run (the latest of each), as a Markdown table.

use std::path::PathBuf;

use mt5_chaos::harness::target_dir;
use mt5_chaos::report::TableFile;

use crate::{LoadError, Result};

/// The report's columns.
const COLUMNS: &[&str] = &[
    "run",
    "load",
    "throughput",
    "latency p50 / p95 / p99",
    "lost",
    "duplicates",
    "errors",
];

/// `<target>/loadtest/report.md`.
pub fn report_path() -> PathBuf {
    target_dir().join("loadtest").join("report.md")
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The run (the row's key), e.g. `gateway 16 users`.
    pub run: String,
    /// What load was applied.
    pub load: String,
    /// What got through, per second.
    pub throughput: String,
    /// The latency figures.
    pub latency: String,
    /// Events lost.
    pub lost: u64,
    /// Events seen twice.
    pub duplicates: u64,
    /// Failed requests or publishes.
    pub errors: u64,
}

/// Prints `loadtest <run>: ...` and puts the row into the report.
///
/// # Errors
/// The report cannot be written.
pub fn record(row: &Row) -> Result<PathBuf> {
    println!("{}", row.line());
    put(row)
}

impl Row {
    /// `loadtest <run>: [load] throughput ..., latency ..., lost ..., duplicates ..., errors ...`.
    pub fn line(&self) -> String {
        format!(
            "loadtest {}: [{}] throughput {}, latency {}, lost {}, duplicates {}, errors {}",
            self.run, self.load, self.throughput, self.latency, self.lost, self.duplicates, self.errors
        )
    }
}

/// Puts the row into the report, printing nothing (for output that must stay machine-readable).
///
/// # Errors
/// The report cannot be written.
pub fn put(row: &Row) -> Result<PathBuf> {
    let table = TableFile::new(
        report_path(),
        "# Load test report\n\nWritten by `mt5-loadtest` (and `cargo test -p mt5-loadtest`); one row per run (the latest of each). See docs/loadtest.md.\n\n",
        COLUMNS,
    );
    table
        .put(vec![
            row.run.clone(),
            row.load.clone(),
            row.throughput.clone(),
            row.latency.clone(),
            row.lost.to_string(),
            row.duplicates.to_string(),
            row.errors.to_string(),
        ])
        .map_err(|e| LoadError::Report {
            path: report_path().display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })
}

/// The row of a gateway run.
pub fn gateway_row(run: &str, r: &crate::gateway::Report) -> Row {
    Row {
        run: run.to_string(),
        load: format!(
            "{} goose users, {:.0} s: {} posts, {} long-polls",
            r.users, r.duration_s, r.posts.count, r.polls.count
        ),
        throughput: format!(
            "{:.0} posts/s, {} deliveries to {} terminals",
            r.posts.per_second, r.delivered, r.terminals
        ),
        latency: format!(
            "POST {} / {} / {} ms; delivery {} / {} / {} ms",
            r.posts.response.p50,
            r.posts.response.p95,
            r.posts.response.p99,
            r.delivery.p50,
            r.delivery.p95,
            r.delivery.p99
        ),
        lost: r.lost,
        duplicates: r.duplicates + r.out_of_order,
        errors: (r.posts.failed + r.polls.failed) as u64,
    }
}

/// The row of an e2e run.
pub fn e2e_row(run: &str, load: &crate::e2e::Load, r: &crate::e2e::Report) -> Row {
    Row {
        run: run.to_string(),
        load: format!(
            "publish {} events at {}/s, {} filter processes",
            load.count, load.rate, load.filters
        ),
        throughput: format!("published {:.0}/s, filtered {:.0}/s", r.publish_rate, r.filter_rate),
        latency: format!(
            "e2e {} / {} / {} ms (µs stamp); {} / {} / {} ms (entry ids)",
            crate::e2e::ms3(r.tail.e2e_us.p50),
            crate::e2e::ms3(r.tail.e2e_us.p95),
            crate::e2e::ms3(r.tail.e2e_us.p99),
            r.e2e.p50,
            r.e2e.p95,
            r.e2e.p99
        ),
        lost: r.lost,
        duplicates: r.duplicates,
        errors: r.pending,
    }
}

/// The row of a drain comparison: both sides' median rates in the throughput column, their
/// drain times in the latency column, the events whose pass decision differs between the sides
/// in the load column. Only runs that checked out get a row, so lost, duplicates and errors
/// (entries pending after the drain) are 0.
pub fn drain_row(run: &str, r: &crate::drain::Report) -> Row {
    let secs = |rate: f64| r.events as f64 / rate.max(1e-9);
    Row {
        run: run.to_string(),
        load: format!(
            "{} preloaded events, {} consumer processes per side, {} rounds, sentiment {}; pass decisions differ on {}",
            r.events,
            r.consumers,
            r.rounds,
            r.sentiment.as_str(),
            r.differing()
        ),
        throughput: format!(
            "rust {:.0} ev/s, python {:.0} ev/s (×{:.2}); Redis {:.2} / {:.2} µs/ev",
            r.rust.rate.median,
            r.python.rate.median,
            r.ratio(),
            r.rust.cpu_us_per_event,
            r.python.cpu_us_per_event
        ),
        latency: format!(
            "drain rust {:.2} s, python {:.2} s",
            secs(r.rust.rate.median),
            secs(r.python.rate.median)
        ),
        lost: 0,
        duplicates: 0,
        errors: 0,
    }
}
