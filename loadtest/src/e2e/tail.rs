//! The tail reader of the filtered stream: µs e2e latency, publish to arrival.
//!
//! `mt5-hub publish --rate` stamps every event's data with `published_us` (the wall clock, µs
//! since the Unix epoch, right before its batch goes to Redis) and the filter copies the raw data
//! into its output. This reader, on a Redis connection of its own, follows the filtered stream
//! with `XREAD BLOCK` from where it ended before the load began, stamps each reply's arrival with
//! the same wall clock and keeps `arrival − published_us` of every entry. The reader's own delay
//! (the reply's trip back, the harness's scheduling) is inside the figure: it is conservative.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;
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
    pub(crate) async fn start(
        mut conn: MultiplexedConnection,
        stream: &str,
        expected: u64,
        deadline: Instant,
    ) -> Result<Tail> {
        let last: Vec<(String, Value)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let from = last.into_iter().next().map_or_else(|| "0-0".to_string(), |(id, _)| id);
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
    mut conn: MultiplexedConnection,
    stream: String,
    mut from: String,
    expected: u64,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> Result<TailReport> {
    let mut latencies: Vec<u64> = Vec::with_capacity(expected.min(10_000_000) as usize);
    let mut untimed = 0u64;
    let mut seen = 0u64;
    while seen < expected && Instant::now() < deadline {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&stream)
            .arg(&from)
            .query_async(&mut conn)
            .await?;
        // One stamp per reply, taken before any parsing: every entry in it arrived now.
        let arrival_us = now_us();
        let mut n = 0u64;
        for_each_entry(&reply, |id, data| {
            n += 1;
            from.clear();
            from.push_str(id);
            match data.and_then(published_us) {
                Some(p) => latencies.push(u64::try_from(arrival_us - p).unwrap_or(0)),
                None => untimed += 1,
            }
        });
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

/// Calls `f(entry id, data field)` for every entry of an `XREAD` reply (RESP2 arrays or a RESP3
/// map; nil when the block timed out).
fn for_each_entry(reply: &Value, mut f: impl FnMut(&str, Option<&str>)) {
    let per_stream: Vec<&Value> = match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    for entries in per_stream {
        let Value::Array(entries) = entries else { continue };
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let [id, fields] = parts.as_slice() else { continue };
            let Some(id) = text(id) else { continue };
            f(id, data_field(fields));
        }
    }
}

/// The `data` field of an entry's fields (a flat array, or a map under RESP3).
fn data_field(fields: &Value) -> Option<&str> {
    match fields {
        Value::Array(kv) => kv
            .chunks(2)
            .find(|p| p.len() == 2 && text(&p[0]) == Some("data"))
            .and_then(|p| text(&p[1])),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k) == Some("data"))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
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

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

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

    /// RESP2 `XREAD` replies give every entry's id and data; nil gives nothing.
    #[test]
    fn xread_replies_are_walked_entry_by_entry() {
        let entry = |id: &str, data: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(vec![bulk("id"), bulk("e"), bulk("data"), bulk(data)]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![entry("1-0", r#"{"published_us":5}"#), entry("1-1", "{}")]),
        ])]);
        let mut seen = Vec::new();
        for_each_entry(&reply, |id, data| {
            seen.push((id.to_string(), data.and_then(published_us)))
        });
        assert_eq!(seen, vec![("1-0".to_string(), Some(5)), ("1-1".to_string(), None)]);
        let mut n = 0;
        for_each_entry(&Value::Nil, |_, _| n += 1);
        assert_eq!(n, 0);
    }
}
