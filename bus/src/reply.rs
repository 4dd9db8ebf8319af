//! Parsing of raw stream replies (`XREADGROUP`, `XRANGE`, `XPENDING`, `XINFO`, `XCLAIM`,
//! `XAUTOCLAIM`) from `redis::Value`, tolerant of RESP2 and RESP3 shapes.

use std::collections::HashMap;

use redis::Value;

use crate::error::{Error, Result};

/// One stream entry as read. `fields` is `None` when the entry was deleted (trimmed) while
/// pending: Redis then returns its id with nil fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// The entry id, `<ms>-<seq>`.
    pub id: String,
    /// Field/value pairs in stream order, byte-exact, or `None` for a deleted entry. Names are
    /// bytes too: Redis allows any bytes in a field name, and an entry whose name is not UTF-8
    /// must still be readable (the envelope parser then calls it malformed and it is
    /// dead-lettered byte-exact), not fail the whole read again and again.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl StreamEntry {
    /// The value of a field as text, if present and UTF-8.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

fn unexpected(command: &'static str, detail: impl Into<String>) -> Error {
    Error::UnexpectedReply {
        command,
        detail: detail.into(),
    }
}

/// A bulk or simple string as text.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An integer reply (also accepts numeric strings).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The items of an array (or set) reply; nil is empty.
pub(crate) fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// A flat key/value array (RESP2) or a map (RESP3) as a map keyed by text.
pub(crate) fn pairs(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v.clone()))).collect(),
        other => items(other)
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k)?, v.clone())),
                _ => None,
            })
            .collect(),
    }
}

/// A bulk or simple string reply as bytes, taken out of the reply (no copy).
fn into_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// The items of an array (or set) reply, taken out of it; nil is empty.
fn into_items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

/// One `[id, [field, value, ...] | nil]` entry. Takes the reply by value: the field values move
/// out of it instead of being copied (the consume path reads ~1 KB per entry).
pub(crate) fn entry(v: Value, command: &'static str) -> Result<StreamEntry> {
    let parts = into_items(v);
    let [id, fields]: [Value; 2] = parts
        .try_into()
        .map_err(|p: Vec<Value>| unexpected(command, format!("entry with {} parts", p.len())))?;
    let id = text(&id).ok_or_else(|| unexpected(command, "entry id is not a string"))?;
    let fields = match fields {
        Value::Nil => None,
        Value::Map(m) => Some(
            m.into_iter()
                .filter_map(|(k, v)| Some((into_bytes(k)?, into_bytes(v)?)))
                .collect(),
        ),
        other => {
            let flat = into_items(other);
            if flat.len() % 2 != 0 {
                return Err(unexpected(command, "odd number of field items"));
            }
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((
                    into_bytes(k).ok_or_else(|| unexpected(command, "field name is not a string"))?,
                    into_bytes(v).ok_or_else(|| unexpected(command, "field value is not a string"))?,
                ));
            }
            Some(out)
        }
    };
    Ok(StreamEntry { id, fields })
}

/// A list of entries (`XRANGE`, `XREVRANGE`, `XCLAIM` without `JUSTID`).
///
/// # Errors
/// [`Error::UnexpectedReply`] naming `command` when the reply has another shape.
pub(crate) fn entries(v: Value, command: &'static str) -> Result<Vec<StreamEntry>> {
    into_items(v).into_iter().map(|e| entry(e, command)).collect()
}

/// An `XREADGROUP`/`XREAD` reply for one stream: nil on timeout, else `[[stream, entries]]`
/// (or a map in RESP3). Also parses `XREAD` replies.
///
/// # Errors
/// [`Error::UnexpectedReply`] when the reply has another shape.
pub(crate) fn read_reply(v: Value) -> Result<Vec<StreamEntry>> {
    const CMD: &str = "XREADGROUP";
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Map(m) => {
            let mut out = Vec::new();
            for (_, es) in m {
                out.extend(entries(es, CMD)?);
            }
            Ok(out)
        }
        other => {
            let mut out = Vec::new();
            for s in into_items(other) {
                let [_, es]: [Value; 2] = into_items(s)
                    .try_into()
                    .map_err(|_| unexpected(CMD, "stream element is not [name, entries]"))?;
                out.extend(entries(es, CMD)?);
            }
            Ok(out)
        }
    }
}

/// One extended `XPENDING` row: `[id, consumer, idle ms, deliveries]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingEntry {
    /// The entry id.
    pub id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Milliseconds since it was last delivered (or claimed).
    pub idle_ms: u64,
    /// Times it was delivered by reads.
    pub deliveries: u64,
}

/// Parses an extended `XPENDING` reply.
pub(crate) fn pending_rows(v: &Value) -> Result<Vec<PendingEntry>> {
    items(v)
        .iter()
        .map(|row| match items(row) {
            [id, consumer, idle, count] => Ok(PendingEntry {
                id: text(id).ok_or_else(|| unexpected("XPENDING", "id"))?,
                consumer: text(consumer).ok_or_else(|| unexpected("XPENDING", "consumer"))?,
                idle_ms: int(idle).unwrap_or(0).max(0) as u64,
                deliveries: int(count).unwrap_or(0).max(0) as u64,
            }),
            _ => Err(unexpected("XPENDING", "row is not [id, consumer, idle, deliveries]")),
        })
        .collect()
}

/// A list of ids (`XCLAIM ... JUSTID`).
pub(crate) fn id_list(v: &Value) -> Vec<String> {
    items(v).iter().filter_map(text).collect()
}

/// Compares two stream ids numerically.
pub(crate) fn cmp_ids(a: &str, b: &str) -> std::cmp::Ordering {
    parse_id(a).cmp(&parse_id(b))
}

/// Parses `<ms>-<seq>` (a bare `<ms>` is `<ms>-0`).
pub(crate) fn parse_id(id: &str) -> (u64, u64) {
    let mut it = id.splitn(2, '-');
    let ms = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seq = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (ms, seq)
}

/// The smallest id greater than `id`.
pub(crate) fn next_id(id: &str) -> String {
    let (ms, seq) = parse_id(id);
    match seq.checked_add(1) {
        Some(s) => format!("{ms}-{s}"),
        None => format!("{}-0", ms + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn read_replies_keep_deleted_entries_as_none() {
        let v = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a"), bulk("b")])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(v).unwrap();
        assert_eq!(got[0].fields.as_deref(), Some(&[(b"a".to_vec(), b"b".to_vec())][..]));
        assert_eq!(
            got[1],
            StreamEntry {
                id: "2-0".into(),
                fields: None
            }
        );
        assert!(read_reply(Value::Nil).unwrap().is_empty());
        let resp3 = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("a"), bulk("b")]),
            ])]),
        )]);
        assert_eq!(read_reply(resp3).unwrap()[0].field("a"), Some("b"));
    }

    /// Names and values that are not UTF-8 are read byte-exact: such an entry must not fail the
    /// read (a consumer would retry it forever) but reach the envelope check and the dead letter
    /// stream as it is.
    #[test]
    fn non_utf8_names_and_values_are_kept_byte_exact() {
        let v = Value::Array(vec![
            Value::BulkString(b"1-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(vec![b'n', 0xff]),
                Value::BulkString(vec![0xfe, 0x00]),
                bulk("id"),
                bulk("x"),
            ]),
        ]);
        let e = entry(v, "XRANGE").unwrap();
        assert_eq!(
            e.fields.as_deref(),
            Some(&[(vec![b'n', 0xff], vec![0xfe, 0x00]), (b"id".to_vec(), b"x".to_vec())][..])
        );
        assert_eq!(e.field("id"), Some("x"));
        assert_eq!(e.field("n"), None);
    }

    /// Every string shape a server sends (RESP2 or RESP3, a bulk, status or verbatim string,
    /// `OK`, a number) is text, and bytes where a field is taken out of a reply; what is not a
    /// string is neither.
    #[test]
    fn every_string_shape_is_text_and_bytes() {
        let shapes = [
            (bulk("v"), Some("v")),
            (Value::SimpleString("v".into()), Some("v")),
            (
                Value::VerbatimString {
                    format: redis::VerbatimFormat::Text,
                    text: "v".into(),
                },
                Some("v"),
            ),
            (Value::Okay, Some("OK")),
            (Value::Int(-42), Some("-42")),
            (Value::BulkString(vec![0xff]), None),
            (Value::Nil, None),
            (Value::Array(vec![bulk("v")]), None),
        ];
        for (v, want) in shapes {
            assert_eq!(text(&v).as_deref(), want, "{v:?}");
        }
        assert_eq!(int(&Value::Int(7)), Some(7));
        assert_eq!(int(&bulk("-12")), Some(-12));
        assert_eq!(int(&Value::SimpleString("3".into())), Some(3));
        assert_eq!(int(&bulk("x")), None);

        // A field value a script returns as a status reply or a number reads as its text.
        let fields = Value::Array(vec![
            Value::SimpleString("status".into()),
            Value::SimpleString("ok".into()),
            bulk("n"),
            Value::Int(5),
        ]);
        let e = entry(Value::Array(vec![bulk("1-0"), fields]), "XRANGE").unwrap();
        assert_eq!(
            e.fields.as_deref(),
            Some(&[(b"status".to_vec(), b"ok".to_vec()), (b"n".to_vec(), b"5".to_vec())][..])
        );
        let bad = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("n"), Value::Nil])]);
        assert!(entry(bad, "XRANGE").is_err(), "a nil value is not a field value");
    }

    #[test]
    fn odd_shapes_are_errors_not_panics() {
        let v = Value::Array(vec![Value::Array(vec![bulk("s")])]);
        assert!(read_reply(v).is_err());
        assert!(pending_rows(&Value::Array(vec![Value::Array(vec![bulk("x")])])).is_err());
    }

    #[test]
    fn ids_step_forward_and_compare_numerically() {
        assert_eq!(next_id("5-1"), "5-2");
        assert_eq!(next_id(&format!("5-{}", u64::MAX)), "6-0");
        assert_eq!(cmp_ids("10-0", "9-99"), std::cmp::Ordering::Greater);
    }
}
