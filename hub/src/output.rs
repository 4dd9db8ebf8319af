//! Writing to stdout: aligned tables, JSON, durations, and a closed pipe treated as "stop".

use std::io::{self, Write};
use std::time::Duration;

use crate::error::HubError;

/// A plain text table: a header row and aligned columns separated by two spaces.
#[derive(Debug, Default)]
pub(crate) struct Table {
    indent: usize,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles, indented by `indent` spaces.
    pub(crate) fn new(indent: usize, header: &[&str]) -> Self {
        Table {
            indent,
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub(crate) fn render(&self) -> String {
        let cols = self.header.len().max(self.rows.iter().map(Vec::len).max().unwrap_or(0));
        let mut widths = vec![0usize; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = " ".repeat(self.indent);
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == cols {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for a missing value.
pub(crate) fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A duration for people: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub(crate) fn human_ms(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if s < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Writes `text` to stdout and flushes. A closed pipe (`| head`) is not an error for the
/// caller to report: it returns `Ok(false)`, meaning "stop writing".
///
/// # Errors
/// Any other write error.
pub(crate) fn print(text: &str) -> Result<bool, HubError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(HubError::io("writing to stdout", e)),
    }
}

/// Prints one line (a newline is added).
///
/// # Errors
/// As [`print()`].
pub(crate) fn println(line: &str) -> Result<bool, HubError> {
    print(&format!("{line}\n"))
}

/// Prints a value as pretty JSON.
///
/// # Errors
/// As [`print()`].
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<bool, HubError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| HubError::io("encoding JSON", io::Error::other(e)))?;
    println(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns are aligned on the widest cell, the last column is not padded.
    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(2, &["A", "LONG HEADER", "C"]);
        t.row(vec!["xxxx".into(), "y".into(), "z".into()]);
        assert_eq!(t.render(), "  A     LONG HEADER  C\n  xxxx  y            z\n");
    }

    /// Durations read naturally at every scale.
    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(12_340), "12.3s");
        assert_eq!(human_ms(245_000), "4m05s");
        assert_eq!(human_ms(7_380_000), "2h03m");
        assert_eq!(human_ms(273_600_000), "3d04h");
        assert_eq!(or_dash(None::<u64>), "-");
    }
}
