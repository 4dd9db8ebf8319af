//! The dead letter stream: how entries are written there, and list, show, replay and purge.

use chrono::Utc;
use redis::aio::ConnectionLike;
use redis::Value;

use crate::consumer::DeadLetterReason;
use crate::envelope::format_time;
use crate::error::{Error, Result};
use crate::reply::{self, StreamEntry};
use crate::script::Scripts;

/// The fields a dead letter adds to the original ones.
pub mod field {
    /// The stream the entry came from (where replay puts it back).
    pub const STREAM: &str = "dlq_stream";
    /// Its entry id there.
    pub const ENTRY_ID: &str = "dlq_entry_id";
    /// The group that gave up on it.
    pub const GROUP: &str = "dlq_group";
    /// The consumer that dead-lettered it.
    pub const CONSUMER: &str = "dlq_consumer";
    /// Its delivery count then.
    pub const DELIVERIES: &str = "dlq_deliveries";
    /// `malformed`, `unsupported`, `max_deliveries` or `handler`.
    pub const REASON: &str = "dlq_reason";
    /// The error text.
    pub const ERROR: &str = "dlq_error";
    /// When it was dead-lettered (RFC 3339).
    pub const TIME: &str = "dlq_time";
}

/// Every original field (raw, also when malformed) plus the `dlq_*` fields.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dead_letter_fields(
    original: &[(String, Vec<u8>)],
    stream: &str,
    entry_id: &str,
    group: &str,
    consumer: &str,
    deliveries: u64,
    reason: DeadLetterReason,
    error: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = original
        .iter()
        .filter(|(k, _)| !k.starts_with("dlq_"))
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    out.push((field::STREAM.into(), stream.into()));
    out.push((field::ENTRY_ID.into(), entry_id.into()));
    out.push((field::GROUP.into(), group.into()));
    out.push((field::CONSUMER.into(), consumer.into()));
    out.push((field::DELIVERIES.into(), deliveries.to_string()));
    out.push((field::REASON.into(), reason.as_str().into()));
    out.push((field::ERROR.into(), error.into()));
    out.push((field::TIME.into(), format_time(&Utc::now())));
    out
}

/// One dead letter as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    /// Its id in the dead letter stream.
    pub entry_id: String,
    /// The original stream.
    pub stream: Option<String>,
    /// The original entry id.
    pub original_entry_id: Option<String>,
    /// The event `id`, when the original had one.
    pub event_id: Option<String>,
    /// The event `type`, when the original had one.
    pub event_type: Option<String>,
    /// The reason.
    pub reason: Option<String>,
    /// The error text.
    pub error: Option<String>,
    /// Delivery count when dead-lettered.
    pub deliveries: Option<u64>,
    /// The group.
    pub group: Option<String>,
    /// When it was dead-lettered.
    pub time: Option<String>,
    /// Every field, original and `dlq_*`, as text.
    pub fields: Vec<(String, String)>,
}

impl DeadLetter {
    fn from_entry(e: &StreamEntry) -> Self {
        let get = |k: &str| e.field(k).map(str::to_string);
        DeadLetter {
            entry_id: e.id.clone(),
            stream: get(field::STREAM),
            original_entry_id: get(field::ENTRY_ID),
            event_id: get("id"),
            event_type: get("type"),
            reason: get(field::REASON),
            error: get(field::ERROR),
            deliveries: get(field::DELIVERIES).and_then(|d| d.parse().ok()),
            group: get(field::GROUP),
            time: get(field::TIME),
            fields: e
                .fields
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ListOptions {
    /// Only this reason.
    pub reason: Option<String>,
    /// Only entries from this stream.
    pub stream: Option<String>,
    /// At most this many (after filtering); `None` for all.
    pub limit: Option<usize>,
}

impl ListOptions {
    /// Filter by reason.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// At most `limit` entries.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Filter by original stream.
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }
}

/// Entries read per `XRANGE` page.
const PAGE: usize = 500;

/// Lists dead letters, oldest first.
///
/// # Errors
/// The driver's error.
pub async fn list<C: ConnectionLike + Send>(conn: &mut C, dlq: &str, opts: &ListOptions) -> Result<Vec<DeadLetter>> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let v: Value = redis::cmd("XRANGE")
            .arg(dlq)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        let page = reply::entries(&v, "XRANGE")?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.id);
        let full = page.len() == PAGE;
        for e in &page {
            let d = DeadLetter::from_entry(e);
            if opts.reason.as_ref().is_some_and(|r| d.reason.as_ref() != Some(r)) {
                continue;
            }
            if opts.stream.as_ref().is_some_and(|s| d.stream.as_ref() != Some(s)) {
                continue;
            }
            out.push(d);
            if opts.limit.is_some_and(|l| out.len() >= l) {
                return Ok(out);
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// One dead letter by its id in the dead letter stream.
///
/// # Errors
/// [`Error::DeadLetterNotFound`] or the driver's error.
pub async fn show<C: ConnectionLike + Send>(conn: &mut C, dlq: &str, entry_id: &str) -> Result<DeadLetter> {
    let v: Value = redis::cmd("XRANGE")
        .arg(dlq)
        .arg(entry_id)
        .arg(entry_id)
        .query_async(conn)
        .await?;
    reply::entries(&v, "XRANGE")?
        .first()
        .map(DeadLetter::from_entry)
        .ok_or_else(|| Error::DeadLetterNotFound(entry_id.into()))
}

/// What a replay did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Its id in the dead letter stream.
    pub deadletter_id: String,
    /// The stream it went back to.
    pub stream: String,
    /// Its new entry id there; `None` when it had already been replayed (idempotent).
    pub new_entry_id: Option<String>,
}

/// Replays dead letters by id: each goes back to its `dlq_stream` with its original fields (same
/// event `id`) and leaves the dead letter stream, atomically, so replaying twice does nothing
/// the second time.
///
/// # Errors
/// [`Error::DeadLetterNotFound`], [`Error::NotReplayable`] or the driver's error.
pub async fn replay<C: ConnectionLike + Send>(conn: &mut C, dlq: &str, ids: &[String]) -> Result<Vec<Replayed>> {
    let mut out = Vec::with_capacity(ids.len());
    let s = &Scripts::get().replay;
    for id in ids {
        let d = match show(conn, dlq, id).await {
            Ok(d) => d,
            Err(Error::DeadLetterNotFound(_)) => {
                out.push(Replayed {
                    deadletter_id: id.clone(),
                    stream: String::new(),
                    new_entry_id: None,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let target = d.stream.clone().ok_or_else(|| Error::NotReplayable(id.clone()))?;
        let cmd = s.cmd(&[dlq, target.as_str()], id.as_str());
        let new_id: Option<String> = s.run(conn, &cmd).await?;
        tracing::info!(deadletter_id = %id, stream = %target, new_entry_id = ?new_id, "Replayed a dead letter.");
        out.push(Replayed {
            deadletter_id: id.clone(),
            stream: target,
            new_entry_id: new_id,
        });
    }
    Ok(out)
}

/// Replays every dead letter matching `opts`.
///
/// # Errors
/// As [`replay`].
pub async fn replay_matching<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq: &str,
    opts: &ListOptions,
) -> Result<Vec<Replayed>> {
    let ids: Vec<String> = list(conn, dlq, opts).await?.into_iter().map(|d| d.entry_id).collect();
    replay(conn, dlq, &ids).await
}

/// Deletes dead letters by id; returns how many existed.
///
/// # Errors
/// The driver's error.
pub async fn purge<C: ConnectionLike + Send>(conn: &mut C, dlq: &str, ids: &[String]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let n: u64 = redis::cmd("XDEL").arg(dlq).arg(ids).query_async(conn).await?;
    tracing::info!(count = n, "Purged dead letters.");
    Ok(n)
}

/// Deletes every dead letter; returns how many there were.
///
/// # Errors
/// The driver's error.
pub async fn purge_all<C: ConnectionLike + Send>(conn: &mut C, dlq: &str) -> Result<u64> {
    let n: u64 = redis::cmd("XTRIM")
        .arg(dlq)
        .arg("MAXLEN")
        .arg(0)
        .query_async(conn)
        .await?;
    tracing::info!(count = n, "Purged all dead letters.");
    Ok(n)
}
