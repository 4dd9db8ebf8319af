//! The one-line verdicts and the Markdown report `target/chaos/report.md`.
//!
//! Each scenario calls [`record`] once per verdict: it prints the one-line verdict and puts the
//! scenario's row into the report table, replacing an earlier row of the same scenario. The file
//! is rewritten whole on every call, so it stays a valid table whether the scenarios run in one
//! `cargo test` or one at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::checker::Verdict;
use crate::harness::{target_dir, HarnessError, Result};

/// The table's header row.
const HEADER: &str =
    "| scenario | faults injected | published | lost | duplicates | dead-lettered | recovery time | e2e p95 |";
/// The separator under the header.
const SEPARATOR: &str = "| --- | --- | --- | --- | --- | --- | --- | --- |";

/// `<target>/chaos/report.md`.
pub fn report_path() -> PathBuf {
    target_dir().join("chaos").join("report.md")
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportRow {
    /// The scenario (the row's key).
    pub scenario: String,
    /// The faults injected.
    pub faults: String,
    /// Events published.
    pub published: String,
    /// Events lost.
    pub lost: String,
    /// Duplicated effects.
    pub duplicates: String,
    /// Dead letters by reason.
    pub dead_lettered: String,
    /// Time to recover.
    pub recovery: String,
    /// End-to-end p95 latency.
    pub e2e_p95: String,
}

impl ReportRow {
    /// The row of `verdict` for `scenario`.
    pub fn from_verdict(scenario: &str, v: &Verdict) -> Self {
        ReportRow {
            scenario: scenario.to_string(),
            faults: v.faults.clone(),
            published: v.published.to_string(),
            lost: v.lost.to_string(),
            duplicates: (v.duplicated_effects + v.double_outcomes).to_string(),
            dead_lettered: v.dead_lettered_text(),
            recovery: v
                .recovery
                .map_or_else(|| "n/a".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            e2e_p95: v.latency.map_or_else(|| "n/a".into(), |l| format!("{} ms", l.p95_ms)),
        }
    }

    fn cells(&self) -> [&str; 8] {
        [
            &self.scenario,
            &self.faults,
            &self.published,
            &self.lost,
            &self.duplicates,
            &self.dead_lettered,
            &self.recovery,
            &self.e2e_p95,
        ]
    }

    fn to_markdown(&self) -> String {
        let cells: Vec<String> = self.cells().iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |", cells.join(" | "))
    }

    fn parse(line: &str) -> Option<Self> {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        let cells: Vec<String> = inner.split(" | ").map(|c| c.trim().to_string()).collect();
        let [scenario, faults, published, lost, duplicates, dead_lettered, recovery, e2e_p95]: [String; 8] =
            cells.try_into().ok()?;
        if scenario == "scenario" || scenario.starts_with("---") {
            return None;
        }
        Some(ReportRow {
            scenario,
            faults,
            published,
            lost,
            duplicates,
            dead_lettered,
            recovery,
            e2e_p95,
        })
    }
}

/// The report text for `rows`.
fn render(rows: &BTreeMap<String, ReportRow>) -> String {
    let mut out = String::from(
        "# Chaos report\n\nWritten by `cargo test -p mt5-chaos -- --test-threads=1`; one row per scenario (the latest run of each).\n\n",
    );
    out.push_str(HEADER);
    out.push('\n');
    out.push_str(SEPARATOR);
    out.push('\n');
    for row in rows.values() {
        out.push_str(&row.to_markdown());
        out.push('\n');
    }
    out
}

/// Puts `row` into the report (replacing the scenario's earlier row) and rewrites the file.
///
/// # Errors
/// The report cannot be read or written.
pub fn write_row(row: &ReportRow) -> Result<PathBuf> {
    let path = report_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
    }
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(HarnessError::io(format!("reading {}", path.display()), e)),
    };
    let mut rows: BTreeMap<String, ReportRow> = existing
        .lines()
        .filter_map(ReportRow::parse)
        .map(|r| (r.scenario.clone(), r))
        .collect();
    rows.insert(row.scenario.clone(), row.clone());
    std::fs::write(&path, render(&rows)).map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// Prints `chaos <scenario>: <verdict line>` to stderr (shown by `cargo test` for failing tests
/// and with `--nocapture`) and stdout, and writes the scenario's report row.
///
/// # Errors
/// The report cannot be written.
pub fn record(scenario: &str, verdict: &Verdict) -> Result<PathBuf> {
    let line = format!("chaos {scenario}: [{}] {}", verdict.faults, verdict.line());
    eprintln!("{line}");
    write_row(&ReportRow::from_verdict(scenario, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rendered row parses back to itself; header lines are not rows.
    #[test]
    fn rows_round_trip() {
        let row = ReportRow {
            scenario: "s".into(),
            faults: "3 kills".into(),
            published: "10".into(),
            lost: "0".into(),
            duplicates: "0".into(),
            dead_lettered: "max_deliveries=2".into(),
            recovery: "1.00 s".into(),
            e2e_p95: "12 ms".into(),
        };
        assert_eq!(ReportRow::parse(&row.to_markdown()), Some(row.clone()));
        assert_eq!(ReportRow::parse(HEADER), None);
        assert_eq!(ReportRow::parse(SEPARATOR), None);
        let mut rows = BTreeMap::new();
        rows.insert("s".to_string(), row);
        let text = render(&rows);
        assert_eq!(text.lines().filter_map(ReportRow::parse).count(), 1);
    }
}
