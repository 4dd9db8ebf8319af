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

/// The chaos report's columns.
const COLUMNS: &[&str] = &[
    "scenario",
    "faults injected",
    "published",
    "lost",
    "duplicates",
    "dead-lettered",
    "recovery time",
    "e2e p95",
];

/// `<target>/chaos/report.md`.
pub fn report_path() -> PathBuf {
    target_dir().join("chaos").join("report.md")
}

/// A Markdown file holding one table whose rows are keyed by their first cell: putting a row
/// replaces the row with the same key, and the file is rewritten whole each time, so it stays a
/// valid table whether its rows come from one run or many. Used by the chaos report and by
/// `mt5-loadtest`'s.
#[derive(Debug, Clone)]
pub struct TableFile {
    /// The file.
    pub path: PathBuf,
    /// The heading and the text above the table (Markdown).
    pub preamble: String,
    /// The column names.
    pub columns: Vec<String>,
}

impl TableFile {
    /// A table file at `path` with `preamble` above the table and `columns`.
    pub fn new(path: PathBuf, preamble: impl Into<String>, columns: &[&str]) -> Self {
        TableFile {
            path,
            preamble: preamble.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn header(&self) -> String {
        format!("| {} |", self.columns.join(" | "))
    }

    fn separator(&self) -> String {
        format!("|{}", " --- |".repeat(self.columns.len()))
    }

    /// The cells of a row line of this table, or `None` for any other line.
    fn parse(&self, line: &str) -> Option<Vec<String>> {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        let cells: Vec<String> = inner.split(" | ").map(|c| c.trim().replace("\\|", "|")).collect();
        let is_row = cells.len() == self.columns.len() && cells[0] != self.columns[0] && !cells[0].starts_with("---");
        is_row.then_some(cells)
    }

    /// The file's text for `rows`.
    fn render(&self, rows: &BTreeMap<String, Vec<String>>) -> String {
        let mut out = self.preamble.clone();
        out.push_str(&self.header());
        out.push('\n');
        out.push_str(&self.separator());
        out.push('\n');
        for cells in rows.values() {
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    /// Puts the row `cells` (keyed by its first cell) into the file.
    ///
    /// # Errors
    /// The file cannot be read or written, or `cells` does not match the columns.
    pub fn put(&self, cells: Vec<String>) -> Result<PathBuf> {
        if cells.len() != self.columns.len() || cells.is_empty() {
            return Err(HarnessError::io(
                format!("a row for {}", self.path.display()),
                std::io::Error::other(format!("{} cells for {} columns", cells.len(), self.columns.len())),
            ));
        }
        let path = &self.path;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        }
        let existing = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(HarnessError::io(format!("reading {}", path.display()), e)),
        };
        let mut rows: BTreeMap<String, Vec<String>> = existing
            .lines()
            .filter_map(|l| self.parse(l))
            .map(|cells| (cells[0].clone(), cells))
            .collect();
        rows.insert(cells[0].clone(), cells);
        std::fs::write(path, self.render(&rows))
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        Ok(path.clone())
    }
}

/// The cells of `verdict`'s row for `scenario`.
fn cells(scenario: &str, v: &Verdict) -> Vec<String> {
    vec![
        scenario.to_string(),
        v.faults.clone(),
        v.published.to_string(),
        v.lost.to_string(),
        (v.duplicated_effects + v.double_outcomes).to_string(),
        v.dead_lettered_text(),
        v.recovery
            .map_or_else(|| "n/a".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        v.latency.map_or_else(|| "n/a".into(), |l| format!("{} ms", l.p95)),
    ]
}

/// The chaos report.
fn chaos_report() -> TableFile {
    TableFile::new(
        report_path(),
        "# Chaos report\n\nWritten by `cargo test -p mt5-chaos -- --test-threads=1`; one row per scenario (the latest run of each).\n\n",
        COLUMNS,
    )
}

/// Prints `chaos <scenario>: <verdict line>` to stderr (shown by `cargo test` for failing tests
/// and with `--nocapture`) and stdout, and writes the scenario's report row.
///
/// # Errors
/// The report cannot be written.
pub fn record(scenario: &str, verdict: &Verdict) -> Result<PathBuf> {
    let line = format!("chaos {scenario}: [{}] {}", verdict.faults, verdict.line());
    eprintln!("{line}");
    chaos_report().put(cells(scenario, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row put twice under one key is there once, with its latest cells; a `|` in a cell
    /// survives later puts; the header and separator are not rows; a row with the wrong number
    /// of cells is refused.
    #[test]
    fn rows_are_replaced_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let table = TableFile::new(dir.path().join("r.md"), "# R\n\n", &["k", "a | b", "c"]);
        table.put(vec!["s".into(), "1".into(), "x|y".into()]).unwrap();
        table.put(vec!["t".into(), "2".into(), "z|q".into()]).unwrap();
        table.put(vec!["s".into(), "3".into(), "w".into()]).unwrap();
        let text = std::fs::read_to_string(&table.path).unwrap();
        let rows: Vec<Vec<String>> = text.lines().filter_map(|l| table.parse(l)).collect();
        assert_eq!(rows, [vec!["s", "3", "w"], vec!["t", "2", "z|q"]], "{text}");
        assert!(text.starts_with("# R\n\n| k |"), "{text}");
        assert!(table.put(vec!["only".into()]).is_err());
    }
}
