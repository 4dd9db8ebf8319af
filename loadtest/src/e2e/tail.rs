//! The tail reader of the filtered stream: µs e2e latency, publish to arrival.
//!
//! `mt5-hub publish --rate` stamps every event's data with `published_us` (the wall clock, µs
//! since the Unix epoch, right before its batch goes to Redis) and the filter copies the raw data
//! into its output. This reader, on a Redis connection of its own, follows the filtered stream
//! with `XREAD BLOCK` from where it ended before the load began, stamps each reply's arrival with
//! the same wall clock and keeps `arrival − published_us` of every entry. The reader's own delay
//! (the reply's trip back, its conversion into entries by the bus, the harness's scheduling) is
//! inside the figure: it is conservative.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_bus::query::{self, ReadOptions};
use mt5_bus::{Connection, StreamEntry};
use tokio::task::JoinHandle;

use crate::{LoadError, Percentiles, Result};

/// Entries per `XREAD`.
const READ_COUNT: usize = 1000;
/// `XREAD BLOCK`, ms: how long an empty read waits, so how soon a stopped reader notices.
const BLOCK_MS: u64 = 200;
/// The data field the publisher stamps.
const PUBLISHED_US: &str = "\"published_us\":";

/// What the tail reader saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailReport {
    /// E2e latency (`published_us` → arrival at the reader), µs.
    pub e2e_us: Percentiles,
    /// Entries with a `published_us` (one figure each).
    pub timed: u64,
    /// Entries without one (an output the publisher did not stamp).
    pub untimed: u64,
}

/// A running tail reader; aborted when dropped (a failed run does not leave it reading).
#[derive(Debug)]
pub(crate) struct Tail {
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<Result<TailReport>>>,
}

/// The wall clock, µs since the Unix epoch (the publisher's clock: one machine).
fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Tail {
    /// Starts following `stream` on `conn` (a connection of its own: its reads block) from its
    /// current end, which is resolved here, before the load starts (an `XREAD … $` sent by the
    /// task could reach Redis after the first outputs and miss them). It stops after `expected`
    /// entries, once [`Tail::finish`] is called and a read comes back empty, or at `deadline`.
    ///
    /// # Errors
    /// The stream's end cannot be read.
    pub(crate) async fn start(mut conn: Connection, stream: &str, expected: u64, deadline: Instant) -> Result<Tail> {
        let last = query::last_entry(&mut conn, stream).await?;
        let from = last.map_or_else(|| "0-0".to_string(), |e| e.id);
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(follow(conn, stream.to_string(), from, expected, deadline, stop.clone()));
        Ok(Tail { stop, task: Some(task) })
    }

    /// Tells the reader to stop at its next empty read and waits for its report (at most
    /// `timeout`).
    ///
    /// # Errors
    /// A read failed, or the reader did not stop in time.
    pub(crate) async fn finish(mut self, timeout: Duration) -> Result<TailReport> {
        self.stop.store(true, Ordering::Release);
        let Some(task) = self.task.as_mut() else {
            return Err(LoadError::Run("the tail reader was already finished".into()));
        };
        let out = tokio::time::timeout(timeout, task)
            .await
            .map_err(|_| LoadError::Run(format!("the tail reader did not stop within {timeout:?}")))?
            .map_err(|e| LoadError::Run(format!("the tail reader: {e}")))?;
        self.task = None;
        out
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The reader's loop.
async fn follow(
    mut conn: Connection,
    stream: String,
    mut from: String,
    expected: u64,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> Result<TailReport> {
    let mut latencies: Vec<u64> = Vec::with_capacity(expected.min(10_000_000) as usize);
    let mut untimed = 0u64;
    let mut seen = 0u64;
    let read = ReadOptions::count(READ_COUNT).block(Duration::from_millis(BLOCK_MS));
    while seen < expected && Instant::now() < deadline {
        let entries = query::read_after(&mut conn, &stream, &from, &read).await?;
        // One stamp per reply, taken before the entries' data is looked at: every entry in it
        // arrived now.
        let arrival_us = now_us();
        let n = absorb(&entries, arrival_us, &mut from, &mut latencies, &mut untimed);
        seen += n;
        if n == 0 && stop.load(Ordering::Acquire) {
            break;
        }
    }
    let timed = latencies.len() as u64;
    Ok(TailReport {
        e2e_us: Percentiles::of(&mut latencies),
        timed,
        untimed,
    })
}

/// Takes one reply's `entries`, which arrived at `arrival_us`: the latency of each stamped one
/// into `latencies`, the others counted in `untimed`; `from` becomes the last entry's id.
/// Returns how many entries there were.
fn absorb(
    entries: &[StreamEntry],
    arrival_us: i64,
    from: &mut String,
    latencies: &mut Vec<u64>,
    untimed: &mut u64,
) -> u64 {
    if let Some(last) = entries.last() {
        from.clone_from(&last.id);
    }
    for e in entries {
        match e.field("data").and_then(published_us) {
            Some(p) => latencies.push(u64::try_from(arrival_us - p).unwrap_or(0)),
            None => *untimed += 1,
        }
    }
    entries.len() as u64
}

/// `published_us` of a JSON data text, found by its key instead of parsing the whole document:
/// the reader must keep up with the pipeline on the same cores. A nested key of that name would
/// be taken too; the publisher's data has none.
fn published_us(data: &str) -> Option<i64> {
    let at = data.find(PUBLISHED_US)? + PUBLISHED_US.len();
    let rest = data[at..].trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stamp is read wherever the key sits, with or without a space after the colon.
    #[test]
    fn published_us_is_read_from_the_data_text() {
        assert_eq!(
            published_us(r#"{"a":{"b":1},"published_us":1700000000123456,"z":"x"}"#),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(published_us(r#"{"published_us": 42}"#), Some(42));
        assert_eq!(published_us(r#"{"seq":1}"#), None);
        assert_eq!(published_us(r#"{"published_us":"x"}"#), None);
    }

    /// Every entry of a reply counts: stamped ones give `arrival − published_us`, others (no
    /// stamp, no data, a deleted entry) are untimed; the next read starts after the last id.
    #[test]
    fn replies_are_taken_entry_by_entry() {
        let entry = |id: &str, fields: Option<&[(&str, &str)]>| StreamEntry {
            id: id.to_string(),
            fields: fields.map(|f| {
                f.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect()
            }),
        };
        let entries = [
            entry("1-0", Some(&[("id", "e"), ("data", r#"{"published_us":5}"#)])),
            entry("1-1", Some(&[("data", "{}")])),
            entry("1-2", None),
        ];
        let (mut from, mut latencies, mut untimed) = ("0-0".to_string(), Vec::new(), 0);
        assert_eq!(absorb(&entries, 105, &mut from, &mut latencies, &mut untimed), 3);
        assert_eq!(
            (from.as_str(), latencies.as_slice(), untimed),
            ("1-2", &[100u64][..], 2)
        );
        assert_eq!(absorb(&[], 200, &mut from, &mut latencies, &mut untimed), 0);
        assert_eq!(from, "1-2");
    }
}
