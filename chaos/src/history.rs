//! The publisher's history: one JSON line per acknowledged publish of
//! `mt5-hub publish --rate --history FILE` (`event_id`, `entry_id`, `seq`, `published_at_ms`,
//! `duplicate`). A SIGKILLed publisher may leave a torn last line; it is skipped (that publish
//! was not recorded, so the checker does not count it as published).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::harness::{HarnessError, Result};

/// One acknowledged publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct HistoryLine {
    /// The event id (stable across retries with an idempotency key).
    pub event_id: String,
    /// The entry id XADD (or the idempotency script) returned.
    pub entry_id: String,
    /// The load's sequence number.
    pub seq: u64,
    /// When the publish was acknowledged, in Unix ms.
    pub published_at_ms: i64,
    /// Whether the idempotency key already existed (nothing written).
    pub duplicate: bool,
}

/// Every line of one or more history files.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The lines, file by file, in order.
    pub lines: Vec<HistoryLine>,
    /// Lines that could not be parsed (a torn last line after a SIGKILL).
    pub torn: usize,
}

impl History {
    /// Reads the files; a missing file counts as empty.
    ///
    /// # Errors
    /// A file exists but cannot be read.
    pub fn read(paths: &[impl AsRef<Path>]) -> Result<Self> {
        let mut h = History::default();
        for p in paths {
            let p = p.as_ref();
            let text = match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(HarnessError::io(format!("reading {}", p.display()), e)),
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<HistoryLine>(line) {
                    Ok(l) => h.lines.push(l),
                    Err(_) => h.torn += 1,
                }
            }
        }
        Ok(h)
    }

    /// The distinct event ids published.
    pub fn event_ids(&self) -> BTreeSet<&str> {
        self.lines.iter().map(|l| l.event_id.as_str()).collect()
    }

    /// Acknowledged publishes whose idempotency key already existed (retries that deduped).
    pub fn duplicates(&self) -> usize {
        self.lines.iter().filter(|l| l.duplicate).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Torn lines are skipped and counted; ids are deduplicated.
    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        std::fs::write(
            &p,
            "{\"event_id\":\"a\",\"entry_id\":\"1-0\",\"seq\":0,\"published_at_ms\":1,\"duplicate\":false}\n\
             {\"event_id\":\"a\",\"entry_id\":\"1-0\",\"seq\":0,\"published_at_ms\":2,\"duplicate\":true}\n\
             {\"event_id\":\"b\",\"ent",
        )
        .unwrap();
        let h = History::read(&[&p, &dir.path().join("missing")]).unwrap();
        assert_eq!(h.lines.len(), 2);
        assert_eq!(h.torn, 1);
        assert_eq!(h.event_ids().len(), 1);
        assert_eq!(h.duplicates(), 1);
    }
}
