//! Typed queries: the reads (and the few small writes) that tools, services and harnesses make
//! besides publishing and consuming. Options in, reply structs out; no caller outside the bus
//! builds a Redis command or parses a reply.
//!
//! Every function takes any connection the bus made ([`crate::Connection`], from
//! [`crate::Redis`]); the bus's own tests also pass the driver's connections.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Value;

use crate::error::{is_no_such_key, Error, Result};
pub use crate::reply::StreamEntry;
use crate::reply::{self, int, items, pairs, text};
use crate::script::Scripts;

/// Which end of a range: an entry id, inclusive or exclusive, or the stream's first or last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The oldest entry (`-`) as a start, the newest (`+`) as an end.
    Unbounded,
    /// This id, included.
    Included(String),
    /// This id, excluded (`(id`).
    Excluded(String),
}

impl Bound {
    fn arg(&self, unbounded: &str) -> String {
        match self {
            Bound::Unbounded => unbounded.to_string(),
            Bound::Included(id) => id.clone(),
            Bound::Excluded(id) => format!("({id}"),
        }
    }
}

/// One `XRANGE` (or `XREVRANGE`) page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RangeOptions {
    /// The oldest entry wanted.
    pub start: Bound,
    /// The newest entry wanted.
    pub end: Bound,
    /// At most this many entries; `None` for all.
    pub count: Option<usize>,
    /// Newest first.
    pub newest_first: bool,
}

impl Default for RangeOptions {
    fn default() -> Self {
        RangeOptions {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            count: None,
            newest_first: false,
        }
    }
}

impl RangeOptions {
    /// The whole stream, oldest first.
    pub fn all() -> Self {
        RangeOptions::default()
    }

    /// The entries after `id` (excluded), oldest first.
    pub fn after(id: impl Into<String>) -> Self {
        RangeOptions {
            start: Bound::Excluded(id.into()),
            ..RangeOptions::default()
        }
    }

    /// Exactly the entry `id` (an empty page when it does not exist).
    pub fn exactly(id: impl Into<String>) -> Self {
        let id = id.into();
        RangeOptions {
            start: Bound::Included(id.clone()),
            end: Bound::Included(id),
            ..RangeOptions::default()
        }
    }

    /// At most `count` entries.
    #[must_use]
    pub fn count(mut self, count: usize) -> Self {
        self.count = Some(count);
        self
    }

    /// Newest first (`XREVRANGE`).
    #[must_use]
    pub fn newest_first(mut self) -> Self {
        self.newest_first = true;
        self
    }
}

/// One page of `stream` (`XRANGE`, or `XREVRANGE` when newest first). A missing stream is empty.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`].
pub async fn range<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    opts: &RangeOptions,
) -> Result<Vec<StreamEntry>> {
    let (name, first, last) = if opts.newest_first {
        ("XREVRANGE", opts.end.arg("+"), opts.start.arg("-"))
    } else {
        ("XRANGE", opts.start.arg("-"), opts.end.arg("+"))
    };
    let mut cmd = redis::cmd(name);
    cmd.arg(stream).arg(first).arg(last);
    if let Some(n) = opts.count {
        cmd.arg("COUNT").arg(n);
    }
    let v: Value = cmd.query_async(conn).await?;
    reply::entries(v, name)
}

/// The oldest entry of `stream`, if any.
///
/// # Errors
/// As [`range`].
pub async fn first_entry<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<Option<StreamEntry>> {
    Ok(range(conn, stream, &RangeOptions::all().count(1))
        .await?
        .into_iter()
        .next())
}

/// The newest entry of `stream`, if any.
///
/// # Errors
/// As [`range`].
pub async fn last_entry<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<Option<StreamEntry>> {
    Ok(range(conn, stream, &RangeOptions::all().count(1).newest_first())
        .await?
        .into_iter()
        .next())
}

/// Reads a stream page by page, oldest first: each page starts after the last entry of the one
/// before, so entries added while it reads are read too.
#[derive(Debug, Clone)]
pub struct RangeReader {
    stream: String,
    start: Bound,
    page: usize,
    done: bool,
}

impl RangeReader {
    /// A reader of all of `stream`, `page` entries per `XRANGE` (at least 1).
    pub fn new(stream: impl Into<String>, page: usize) -> Self {
        RangeReader {
            stream: stream.into(),
            start: Bound::Unbounded,
            page: page.max(1),
            done: false,
        }
    }

    /// The next page; `None` once the stream's end was reached.
    ///
    /// # Errors
    /// As [`range`]; the reader can be asked again after an error.
    pub async fn next_page<C: ConnectionLike + Send>(&mut self, conn: &mut C) -> Result<Option<Vec<StreamEntry>>> {
        if self.done {
            return Ok(None);
        }
        let opts = RangeOptions {
            start: self.start.clone(),
            ..RangeOptions::all().count(self.page)
        };
        let page = range(conn, &self.stream, &opts).await?;
        if page.len() < self.page {
            self.done = true;
        }
        match page.last() {
            Some(last) => {
                self.start = Bound::Excluded(last.id.clone());
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }

    /// Every remaining entry.
    ///
    /// # Errors
    /// As [`range`].
    pub async fn read_to_end<C: ConnectionLike + Send>(&mut self, conn: &mut C) -> Result<Vec<StreamEntry>> {
        let mut out = Vec::new();
        while let Some(page) = self.next_page(conn).await? {
            out.extend(page);
        }
        Ok(out)
    }
}

/// What an `XREAD` (no group) waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadOptions {
    /// At most this many entries.
    pub count: usize,
    /// How long to wait when nothing is there; `None` answers at once.
    pub block: Option<Duration>,
}

impl ReadOptions {
    /// At most `count` entries, at once.
    pub fn count(count: usize) -> Self {
        ReadOptions { count, block: None }
    }

    /// Waits up to `block` when nothing is there (`BLOCK 0`, forever, is not offered: a zero
    /// duration answers at once).
    #[must_use]
    pub fn block(mut self, block: Duration) -> Self {
        self.block = (!block.is_zero()).then_some(block);
        self
    }
}

/// The entries of `stream` after `after` (an entry id, or `$` for what arrives from now), as
/// `XREAD` gives them: for tails and long-polls. Use a connection whose response timeout exceeds
/// the block.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`].
pub async fn read_after<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    after: &str,
    opts: &ReadOptions,
) -> Result<Vec<StreamEntry>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(opts.count.max(1));
    if let Some(b) = opts.block {
        cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(stream).arg(after);
    let v: Value = cmd.query_async(conn).await?;
    reply::read_reply(v)
}

/// Entries in `stream` (`XLEN`; 0 when it does not exist).
///
/// # Errors
/// The driver's error (`WRONGTYPE` when the key is not a stream).
pub async fn len<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<u64> {
    Ok(redis::cmd("XLEN").arg(stream).query_async(conn).await?)
}

/// The id of the last entry ever added to `stream` (trimmed or deleted ones included), or `0-0`
/// when the stream does not exist: where a reader that wants only new entries starts.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`].
pub async fn last_generated_id<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<String> {
    let r: redis::RedisResult<Value> = redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(conn).await;
    match r {
        Ok(v) => pairs(&v)
            .get("last-generated-id")
            .and_then(text)
            .ok_or_else(|| Error::UnexpectedReply {
                command: "XINFO STREAM",
                detail: "no last-generated-id".into(),
            }),
        Err(e) if is_no_such_key(&e) => Ok("0-0".into()),
        Err(e) => Err(e.into()),
    }
}

/// A group's pending entries in summary (`XPENDING stream group`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingSummary {
    /// Entries delivered and not acknowledged.
    pub count: u64,
    /// The oldest pending id.
    pub first_id: Option<String>,
    /// The newest pending id.
    pub last_id: Option<String>,
    /// Pending entries per consumer (consumers holding none are not listed).
    pub consumers: Vec<(String, u64)>,
}

/// The pending summary of `group` on `stream`; `None` when the stream or the group does not
/// exist.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`].
pub async fn pending_summary<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
) -> Result<Option<PendingSummary>> {
    let r: redis::RedisResult<Value> = redis::cmd("XPENDING").arg(stream).arg(group).query_async(conn).await;
    let v = match r {
        Ok(v) => v,
        Err(e) if e.code() == Some("NOGROUP") => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let [count, first, last, consumers] = items(&v) else {
        return Err(Error::UnexpectedReply {
            command: "XPENDING",
            detail: format!("{v:?}"),
        });
    };
    let consumers = items(consumers)
        .iter()
        .map(|c| match items(c) {
            [name, n] => Ok((text(name).unwrap_or_default(), int(n).unwrap_or(0).max(0) as u64)),
            _ => Err(Error::UnexpectedReply {
                command: "XPENDING",
                detail: format!("consumer row {c:?}"),
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(PendingSummary {
        count: int(count).unwrap_or(0).max(0) as u64,
        first_id: text(first),
        last_id: text(last),
        consumers,
    }))
}

/// The oldest pending id of `group` on `stream`; `None` when nothing is pending or the stream
/// or the group does not exist. One `XPENDING`, asked whatever the group's pending count said:
/// a count read before may be stale.
///
/// # Errors
/// As [`pending_summary`].
pub async fn oldest_pending_id<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
) -> Result<Option<String>> {
    Ok(pending_summary(conn, stream, group).await?.and_then(|s| s.first_id))
}

/// Checks that Redis answers (`PING`).
///
/// # Errors
/// The driver's error.
pub async fn ping<C: ConnectionLike + Send>(conn: &mut C) -> Result<()> {
    let _: String = redis::cmd("PING").query_async(conn).await?;
    Ok(())
}

/// Deletes `keys` (streams included); returns how many existed.
///
/// # Errors
/// The driver's error.
pub async fn delete<C: ConnectionLike + Send>(conn: &mut C, keys: &[&str]) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(redis::cmd("DEL").arg(keys).query_async(conn).await?)
}

/// A cursor's value: a number kept under `key` that only moves forward (the news fetcher's
/// newest article time, in Unix ms); `None` when it was never set.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`] when the key holds something else.
pub async fn cursor<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Option<i64>> {
    let v: Option<String> = redis::cmd("GET").arg(key).query_async(conn).await?;
    v.map(|s| {
        s.parse().map_err(|_| Error::UnexpectedReply {
            command: "GET",
            detail: format!("cursor {key} holds {s:?}, not an integer"),
        })
    })
    .transpose()
}

/// Moves the cursor under `key` to `to` when that is forward (or the cursor is unset), atomically
/// (compare-and-set in one script); returns the cursor after the call.
///
/// # Errors
/// The driver's error (a script error when the key holds something that is not a number).
pub async fn advance_cursor<C: ConnectionLike + Send>(conn: &mut C, key: &str, to: i64) -> Result<i64> {
    let s = &Scripts::get().advance_cursor;
    let cmd = s.cmd(&[key], to);
    s.run(conn, &cmd).await
}

/// A time-scored record of names (a sorted set under `key`, scored in Unix ms): what the news
/// fetcher keeps of the articles it published. Drops the names scored before `floor_ms` and
/// returns the rest, in one round trip.
///
/// # Errors
/// The driver's error.
pub async fn seen_since<C: ConnectionLike + Send>(conn: &mut C, key: &str, floor_ms: i64) -> Result<Vec<String>> {
    let (names,): (Vec<String>,) = redis::pipe()
        .cmd("ZREMRANGEBYSCORE")
        .arg(key)
        .arg("-inf")
        .arg(format!("({floor_ms}"))
        .ignore()
        .cmd("ZRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    Ok(names)
}

/// Adds `(score_ms, name)` pairs to the time-scored record under `key` (see [`seen_since`]); a
/// name already there takes the new score.
///
/// # Errors
/// The driver's error.
pub async fn record_seen<C: ConnectionLike + Send>(conn: &mut C, key: &str, names: &[(i64, &str)]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd("ZADD");
    cmd.arg(key);
    for (score, name) in names {
        cmd.arg(*score).arg(*name);
    }
    let _: i64 = cmd.query_async(conn).await?;
    Ok(())
}

/// The replicas connected to the server (`INFO replication`'s `connected_slaves`): 0 for a
/// standalone server or a master whose replicas are gone.
///
/// # Errors
/// The driver's error, or [`Error::UnexpectedReply`] when the field is missing.
pub async fn connected_replicas<C: ConnectionLike + Send>(conn: &mut C) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("replication").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::UnexpectedReply {
            command: "INFO replication",
            detail: "no connected_slaves".into(),
        })
}
