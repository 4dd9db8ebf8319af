//! The dead letter stream: how entries are written there, and list, show, replay and purge.

use base64::Engine as _;
use chrono::Utc;
use redis::aio::ConnectionLike;

use crate::consumer::DeadLetterReason;
use crate::envelope::{escape_bytes, format_time};
use crate::error::{Error, Result};
use crate::query::{self, RangeOptions, RangeReader, StreamEntry};
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

/// Every original field, byte-exact (names and values as read, in order, also when they are not
/// UTF-8 or the entry is malformed), plus the `dlq_*` fields. Original fields named `dlq_*` are
/// left out: they would be taken for ours, and replay drops every `dlq_*` field anyway.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dead_letter_fields(
    original: &[(Vec<u8>, Vec<u8>)],
    stream: &str,
    entry_id: &str,
    group: &str,
    consumer: &str,
    deliveries: u64,
    reason: DeadLetterReason,
    error: &str,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = original
        .iter()
        .filter(|(k, _)| !k.starts_with(crate::envelope::DEAD_LETTER_PREFIX.as_bytes()))
        .cloned()
        .collect();
    let mut add = |name: &str, value: &str| out.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
    add(field::STREAM, stream);
    add(field::ENTRY_ID, entry_id);
    add(field::GROUP, group);
    add(field::CONSUMER, consumer);
    add(field::DELIVERIES, &deliveries.to_string());
    add(field::REASON, reason.as_str());
    add(field::ERROR, error);
    add(field::TIME, &format_time(&Utc::now()));
    out
}

/// A field name or value of a dead letter, byte-exact. Its JSON form is a string when the bytes
/// are UTF-8, else `{"base64": "<standard base64>"}`; its `Display` is [`escape_bytes`] (one
/// line, invalid bytes as `\xNN`, nothing lost).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldBytes(pub Vec<u8>);

impl FieldBytes {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text, when the bytes are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl From<Vec<u8>> for FieldBytes {
    fn from(b: Vec<u8>) -> Self {
        FieldBytes(b)
    }
}

impl From<&str> for FieldBytes {
    fn from(s: &str) -> Self {
        FieldBytes(s.as_bytes().to_vec())
    }
}

impl PartialEq<str> for FieldBytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for FieldBytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl std::fmt::Display for FieldBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

impl serde::Serialize for FieldBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        match self.as_str() {
            Some(text) => s.serialize_str(text),
            None => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("base64", &base64::engine::general_purpose::STANDARD.encode(&self.0))?;
                m.end()
            }
        }
    }
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
    /// Every field, original and `dlq_*`, byte-exact in stream order.
    pub fields: Vec<(FieldBytes, FieldBytes)>,
}

impl DeadLetter {
    /// The first field named `name`, byte-exact (also when its value is not UTF-8, where the
    /// text accessors such as `event_id` are `None`).
    pub fn field(&self, name: &str) -> Option<&FieldBytes> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

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
                .map(|(k, v)| (FieldBytes(k.clone()), FieldBytes(v.clone())))
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
    if opts.limit == Some(0) {
        return Ok(out);
    }
    let mut pages = RangeReader::new(dlq, PAGE);
    while let Some(page) = pages.next_page(conn).await? {
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
    }
    Ok(out)
}

/// One dead letter by its id in the dead letter stream.
///
/// # Errors
/// [`Error::DeadLetterNotFound`] or the driver's error.
pub async fn show<C: ConnectionLike + Send>(conn: &mut C, dlq: &str, entry_id: &str) -> Result<DeadLetter> {
    query::range(conn, dlq, &RangeOptions::exactly(entry_id))
        .await?
        .first()
        .map(DeadLetter::from_entry)
        .ok_or_else(|| Error::DeadLetterNotFound(entry_id.into()))
}

/// What a replay did with one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Replayed {
    /// Back in `stream` as `new_entry_id`, byte-exact, and gone from the dead letter stream.
    Replayed {
        /// Its id in the dead letter stream.
        deadletter_id: String,
        /// The stream it went back to.
        stream: String,
        /// Its new entry id there.
        new_entry_id: String,
    },
    /// Not in the dead letter stream: already replayed or purged (replaying twice does nothing
    /// the second time).
    NotFound {
        /// The id asked for.
        deadletter_id: String,
    },
}

impl Replayed {
    /// The dead letter's id.
    pub fn deadletter_id(&self) -> &str {
        match self {
            Replayed::Replayed { deadletter_id, .. } | Replayed::NotFound { deadletter_id } => deadletter_id,
        }
    }
}

/// Replays dead letters by id: each goes back to its `dlq_stream` with its original fields,
/// byte-exact (same event `id`), and leaves the dead letter stream, atomically, so replaying
/// twice does nothing the second time.
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
                out.push(Replayed::NotFound {
                    deadletter_id: id.clone(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let target = d.stream.clone().ok_or_else(|| Error::NotReplayable(id.clone()))?;
        let cmd = s.cmd(&[dlq, target.as_str()], id.as_str());
        let new_id: Option<String> = s.run(conn, &cmd).await?;
        tracing::info!(deadletter_id = %id, stream = %target, new_entry_id = ?new_id, "Replayed a dead letter.");
        // The script finds it gone when a concurrent replay or purge came first.
        out.push(match new_id {
            Some(new_entry_id) => Replayed::Replayed {
                deadletter_id: id.clone(),
                stream: target,
                new_entry_id,
            },
            None => Replayed::NotFound {
                deadletter_id: id.clone(),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Field bytes are kept as given and compare with text byte for byte.
    #[test]
    fn field_bytes_keep_their_bytes_and_compare_exactly() {
        let raw = FieldBytes::from(vec![0xff, b'a']);
        assert_eq!(raw.as_bytes(), [0xff, b'a']);
        assert_eq!(raw.as_str(), None);
        let text = FieldBytes::from("handler");
        assert_eq!(text.as_str(), Some("handler"));
        assert!(text == "handler");
        assert!(text != "handlers" && text != "");
        assert!(<FieldBytes as PartialEq<str>>::eq(&text, "handler"));
        assert!(!<FieldBytes as PartialEq<str>>::eq(&text, "Handler"));
    }

    /// Every original field keeps its bytes (a non-UTF-8 name and value included) and its place;
    /// the `dlq_*` fields follow; an original `dlq_*` field is not taken for ours.
    #[test]
    fn dead_letter_fields_keep_the_original_bytes() {
        let original = vec![
            (b"id".to_vec(), b"e1".to_vec()),
            (b"data".to_vec(), vec![0xff, 0x00, b'{']),
            (vec![b'k', 0xfe], b"v".to_vec()),
            (b"dlq_stream".to_vec(), b"forged".to_vec()),
        ];
        let out = dead_letter_fields(&original, "s", "1-0", "g", "c", 2, DeadLetterReason::Malformed, "bad");
        assert_eq!(&out[..3], &original[..3]);
        let names: Vec<&[u8]> = out[3..].iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b"dlq_stream"[..],
                b"dlq_entry_id",
                b"dlq_group",
                b"dlq_consumer",
                b"dlq_deliveries",
                b"dlq_reason",
                b"dlq_error",
                b"dlq_time"
            ]
        );
        assert_eq!(out[3].1, b"s");
        assert_eq!(out[8].1, b"malformed");
    }

    /// UTF-8 stays a plain JSON string; other bytes become `{"base64": ...}`; the display escapes.
    #[test]
    fn field_bytes_serialize_as_text_or_base64() {
        let text = FieldBytes::from("héllo");
        let raw = FieldBytes(vec![0xff, b'a', 0x00]);
        assert_eq!(serde_json::to_value(&text).unwrap(), serde_json::json!("héllo"));
        assert_eq!(
            serde_json::to_value(&raw).unwrap(),
            serde_json::json!({"base64": "/2EA"})
        );
        assert_eq!(raw.to_string(), "\\xffa\\x00");
        assert_eq!(text, "héllo");
        assert_eq!(raw.as_str(), None);
    }
}
