//! The event envelope: CloudEvents 1.0 attribute names, one stream field per attribute.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::producer::PublishOptions;

mod data;

pub use data::Data;

/// The CloudEvents spec version every event carries.
pub const SPEC_VERSION: &str = "1.0";
/// The content type of `data`.
pub const JSON_CONTENT_TYPE: &str = "application/json";

const F_SPECVERSION: &str = "specversion";
const F_ID: &str = "id";
const F_SOURCE: &str = "source";
const F_TYPE: &str = "type";
const F_TIME: &str = "time";
const F_CONTENT_TYPE: &str = "datacontenttype";
const F_DATA: &str = "data";

/// Why a stream entry is not a valid envelope. A malformed entry is dead-lettered at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedError {
    /// A required field (`id`, `type`, `data`) is missing or empty.
    #[error("required field `{0}` is missing or empty")]
    MissingField(&'static str),
    /// A field's value is not UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(String),
    /// A field's name is not UTF-8; shown with the invalid bytes as `\xNN`.
    #[error("field name `{0}` is not valid UTF-8")]
    NameNotUtf8(String),
    /// `data` is not valid JSON.
    #[error("field `data` is not valid JSON: {0}")]
    InvalidJson(String),
    /// `time` is not an RFC 3339 timestamp.
    #[error("field `time` is not an RFC 3339 timestamp: {0}")]
    InvalidTime(String),
    /// The entry is larger than the maximum entry size.
    #[error("entry of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        max: usize,
    },
}

/// The envelope attributes, each one stream field; an extension may not take their names.
pub const ATTRIBUTES: &[&str] = &[F_SPECVERSION, F_ID, F_SOURCE, F_TYPE, F_TIME, F_CONTENT_TYPE, F_DATA];

/// The prefix of the fields a dead letter adds (`dlq_reason`, ...); reserved.
pub const DEAD_LETTER_PREFIX: &str = "dlq_";

/// Why an event given from outside (a `publish` input line, a gateway `POST`) or an extension
/// name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEvent {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("expected a JSON object like {{\"type\":\"t\",\"data\":{{}}}}")]
    NotAnObject,
    /// A key that must hold a non-empty string holds something else.
    #[error("`{0}` must be a non-empty string")]
    NotAString(&'static str),
    /// No `type`, and no default type.
    #[error("`type` is missing (and no default type was given, e.g. publish --type)")]
    MissingType,
    /// No `data` (`null` is data).
    #[error("`data` is missing")]
    MissingData,
    /// `extensions` is not an object.
    #[error("`extensions` must be an object of strings")]
    ExtensionsNotAnObject,
    /// An extension's value is not a string.
    #[error("extension `{0}` must be a string")]
    ExtensionNotAString(String),
    /// An extension name that is not lower-case letters, digits and `_`, or that shadows an
    /// envelope attribute or a dead letter field.
    #[error("extension `{0}`: names are lower-case letters, digits and `_`, not an envelope attribute and not dlq_*")]
    ExtensionName(String),
    /// A key the input does not have.
    #[error("unknown key `{0}` (expected type, data, id, source, idempotency_key, extensions)")]
    UnknownKey(String),
}

/// Whether `name` may be an extension attribute: non-empty lower-case ASCII letters, digits and
/// `_`, not an envelope attribute, not `dlq_*`.
///
/// # Errors
/// [`InvalidEvent::ExtensionName`].
pub fn check_extension_name(name: &str) -> Result<(), InvalidEvent> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !ATTRIBUTES.contains(&name)
        && !name.starts_with(DEAD_LETTER_PREFIX);
    if valid {
        Ok(())
    } else {
        Err(InvalidEvent::ExtensionName(name.to_string()))
    }
}

/// An event as it is given from outside: one `publish` input line or one event of a gateway
/// `POST`, `{"type", "data", "id"?, "source"?, "idempotency_key"?, "extensions"?}`. Unknown keys,
/// empty strings and invalid extension names are refused when it is parsed (from text with
/// [`str::parse`], from a JSON value with `try_from`, or by serde).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "serde_json::Value")]
#[non_exhaustive]
pub struct EventInput {
    /// `type`; [`EventInput::into_event`] falls back to its default.
    pub event_type: Option<String>,
    /// `data` (may be `null`).
    pub data: serde_json::Value,
    /// `id`; a fresh UUID when absent.
    pub id: Option<String>,
    /// `source`; [`EventInput::into_event`] falls back to its default.
    pub source: Option<String>,
    /// `idempotency_key`.
    pub idempotency_key: Option<String>,
    /// `extensions`, names checked by [`check_extension_name`].
    pub extensions: BTreeMap<String, String>,
}

impl TryFrom<serde_json::Value> for EventInput {
    type Error = InvalidEvent;

    fn try_from(value: serde_json::Value) -> Result<Self, InvalidEvent> {
        use serde_json::Value;
        let Value::Object(mut obj) = value else {
            return Err(InvalidEvent::NotAnObject);
        };
        let mut string = |key: &'static str| match obj.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(InvalidEvent::NotAString(key)),
        };
        let event_type = string(F_TYPE)?;
        let id = string(F_ID)?;
        let source = string(F_SOURCE)?;
        let idempotency_key = string("idempotency_key")?;
        let data = obj.remove(F_DATA).ok_or(InvalidEvent::MissingData)?;
        let given = match obj.remove("extensions") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(InvalidEvent::ExtensionsNotAnObject),
        };
        if let Some(unknown) = obj.keys().next() {
            return Err(InvalidEvent::UnknownKey(unknown.clone()));
        }
        let mut extensions = BTreeMap::new();
        for (name, value) in given {
            check_extension_name(&name)?;
            let Value::String(value) = value else {
                return Err(InvalidEvent::ExtensionNotAString(name));
            };
            extensions.insert(name, value);
        }
        Ok(EventInput {
            event_type,
            data,
            id,
            source,
            idempotency_key,
            extensions,
        })
    }
}

impl std::str::FromStr for EventInput {
    type Err = InvalidEvent;

    /// Parses one JSON object.
    fn from_str(text: &str) -> Result<Self, InvalidEvent> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| InvalidEvent::Json(e.to_string()))?;
        EventInput::try_from(value)
    }
}

impl EventInput {
    /// The event (a fresh id unless one was given, the time now) and its publish options.
    /// `default_type` and `default_source` fill a missing `type` and `source`.
    ///
    /// # Errors
    /// [`InvalidEvent::MissingType`] when there is no `type` and no non-empty default.
    pub fn into_event(
        self,
        default_type: Option<&str>,
        default_source: &str,
    ) -> Result<(Event, PublishOptions), InvalidEvent> {
        let event_type = self
            .event_type
            .or_else(|| default_type.filter(|t| !t.is_empty()).map(str::to_string))
            .ok_or(InvalidEvent::MissingType)?;
        let source = self.source.unwrap_or_else(|| default_source.to_string());
        let mut event = Event::new(source, event_type, self.data);
        if let Some(id) = self.id {
            event.id = id;
        }
        // Names were checked when the input was parsed.
        event.extensions = self.extensions;
        let opts = self
            .idempotency_key
            .map_or_else(PublishOptions::default, PublishOptions::idempotent);
        Ok((event, opts))
    }
}

/// One event: what producers publish and handlers receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUID, stable across retries, replays and dead-lettering.
    pub id: String,
    /// Who produced it, e.g. `eodhd` or `mt5-hub/filter`.
    pub source: String,
    /// The event type, e.g. `news.raw.v1` (the CloudEvents `type` attribute).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the event was first published; kept on retries and replays.
    pub time: DateTime<Utc>,
    /// Always `application/json` for events built here.
    pub datacontenttype: String,
    /// The JSON payload, as text ([`Data`]).
    pub data: Data,
    /// Extension attributes: lower-case fields such as `ticker` or `traceparent`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

impl Event {
    /// A new event with a fresh UUID and the current time.
    pub fn new(source: impl Into<String>, event_type: impl Into<String>, data: impl Into<Data>) -> Self {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            source: source.into(),
            event_type: event_type.into(),
            time: Utc::now(),
            datacontenttype: JSON_CONTENT_TYPE.into(),
            data: data.into(),
            extensions: BTreeMap::new(),
        }
    }

    /// Adds an extension attribute (its name is lower-cased).
    ///
    /// # Errors
    /// [`InvalidEvent::ExtensionName`] when the name, lower-cased, is not lower-case letters,
    /// digits and `_`, or would shadow an envelope attribute (`id`, `data`, ...) or a dead letter
    /// field (`dlq_*`): such a field would be read back as something else.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Result<Self, InvalidEvent> {
        let name = name.into().to_ascii_lowercase();
        check_extension_name(&name)?;
        self.extensions.insert(name, value.into());
        Ok(self)
    }

    /// Sets the id (for example, to keep one id across retries).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Calls `f` with each stream field, in the order of [`Event::to_fields`], without
    /// collecting them (the publish hot path writes them straight into the command).
    pub fn for_each_field(&self, mut f: impl FnMut(&str, &str)) {
        f(F_SPECVERSION, SPEC_VERSION);
        f(F_ID, &self.id);
        f(F_SOURCE, &self.source);
        f(F_TYPE, &self.event_type);
        f(F_TIME, &format_time(&self.time));
        f(F_CONTENT_TYPE, &self.datacontenttype);
        f(F_DATA, self.data.get());
        for (k, v) in &self.extensions {
            f(k, v);
        }
    }

    /// The number of stream fields.
    pub fn field_count(&self) -> usize {
        7 + self.extensions.len()
    }

    /// The stream fields, in a stable order: the attributes, then the extensions.
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(7 + self.extensions.len());
        out.push((F_SPECVERSION.into(), SPEC_VERSION.into()));
        out.push((F_ID.into(), self.id.clone()));
        out.push((F_SOURCE.into(), self.source.clone()));
        out.push((F_TYPE.into(), self.event_type.clone()));
        out.push((F_TIME.into(), format_time(&self.time)));
        out.push((F_CONTENT_TYPE.into(), self.datacontenttype.clone()));
        out.push((F_DATA.into(), self.data.get().to_string()));
        for (k, v) in &self.extensions {
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// Parses stream fields (names and values as read, raw bytes or text) into an event.
    /// `entry_id` supplies the time when `time` is absent.
    ///
    /// # Errors
    /// A [`MalformedError`] naming what is wrong, also for a name or value that is not UTF-8;
    /// never panics on any input.
    pub fn from_fields<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        entry_id: &str,
        fields: &[(K, V)],
        max_bytes: usize,
    ) -> Result<Event, MalformedError> {
        let size = fields_size(fields);
        if size > max_bytes {
            return Err(MalformedError::TooLarge { size, max: max_bytes });
        }
        let mut id = None;
        let mut source = String::new();
        let mut event_type = None;
        let mut time = None;
        let mut datacontenttype = JSON_CONTENT_TYPE.to_string();
        let mut data = None;
        let mut extensions = BTreeMap::new();
        for (name, value) in fields {
            let name = std::str::from_utf8(name.as_ref())
                .map_err(|_| MalformedError::NameNotUtf8(escape_bytes(name.as_ref())))?;
            let text = std::str::from_utf8(value.as_ref()).map_err(|_| MalformedError::NotUtf8(name.to_string()))?;
            match name {
                F_SPECVERSION => {}
                F_ID => id = Some(text),
                F_SOURCE => source = text.to_string(),
                F_TYPE => event_type = Some(text),
                F_TIME => time = Some(text),
                F_CONTENT_TYPE => datacontenttype = text.to_string(),
                F_DATA => data = Some(text),
                other => {
                    extensions.insert(other.to_string(), text.to_string());
                }
            }
        }
        let id = id.filter(|s| !s.is_empty()).ok_or(MalformedError::MissingField(F_ID))?;
        let event_type = event_type
            .filter(|s| !s.is_empty())
            .ok_or(MalformedError::MissingField(F_TYPE))?;
        let data = data
            .filter(|s| !s.is_empty())
            .ok_or(MalformedError::MissingField(F_DATA))?;
        let data = Data::from_json(data).map_err(|e| MalformedError::InvalidJson(e.to_string()))?;
        let time = match time {
            Some(t) => DateTime::parse_from_rfc3339(t)
                .map_err(|e| MalformedError::InvalidTime(e.to_string()))?
                .with_timezone(&Utc),
            None => entry_time(entry_id).unwrap_or_else(Utc::now),
        };
        Ok(Event {
            id: id.to_string(),
            source,
            event_type: event_type.to_string(),
            time,
            datacontenttype,
            data,
            extensions,
        })
    }
}

/// Bytes as readable text without losing any: UTF-8 characters as they are, except `\` as `\\`,
/// `\n`, `\r`, `\t`, other control characters as `\xNN` (ASCII) or `\u{NNNN}`, and every byte
/// that is not part of valid UTF-8 as `\xNN`. For messages and one-line displays of raw stream
/// fields.
pub fn escape_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-28T12:00:00.123Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The encoded size of stream fields: names plus values, in bytes.
pub fn fields_size<K: AsRef<[u8]>, V: AsRef<[u8]>>(fields: &[(K, V)]) -> usize {
    fields.iter().map(|(k, v)| k.as_ref().len() + v.as_ref().len()).sum()
}

/// The milliseconds part of a stream entry id (`<ms>-<seq>`).
pub fn entry_millis(entry_id: &str) -> Option<u64> {
    entry_id.split('-').next()?.parse().ok()
}

/// The time encoded in a stream entry id.
pub fn entry_time(entry_id: &str) -> Option<DateTime<Utc>> {
    let ms = i64::try_from(entry_millis(entry_id)?).ok()?;
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn round_trip_keeps_every_attribute() {
        let e = Event::new("eodhd", "news.raw.v1", serde_json::json!({"ticker": "AAPL.US", "n": 1}))
            .with_extension("Ticker", "AAPL.US")
            .unwrap();
        let fields: Vec<(String, Vec<u8>)> = e.to_fields().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        let back = Event::from_fields("1-0", &fields, 1 << 20).unwrap();
        assert_eq!(back.id, e.id);
        assert_eq!(back.event_type, "news.raw.v1");
        assert_eq!(back.data, e.data);
        assert_eq!(back.extensions.get("ticker").map(String::as_str), Some("AAPL.US"));
        assert_eq!(format_time(&back.time), format_time(&e.time));
        assert_eq!(fields[0], ("specversion".to_string(), b"1.0".to_vec()));
        let mut streamed = Vec::new();
        e.for_each_field(|k, v| streamed.push((k.to_string(), v.to_string())));
        assert_eq!(streamed, e.to_fields());
        assert_eq!(e.field_count(), streamed.len());
    }

    #[test]
    fn an_extension_cannot_shadow_an_attribute_or_a_dead_letter_field() {
        let e = || Event::new("s", "t", serde_json::json!({}));
        for name in [
            "id",
            "data",
            "Type",
            "time",
            "dlq_reason",
            "DLQ_error",
            "",
            "bad-name",
            "tick er",
        ] {
            let err = e().with_extension(name, "x").unwrap_err();
            assert!(matches!(err, InvalidEvent::ExtensionName(_)), "{name}: {err}");
        }
        let ok = e().with_extension("Trace_Parent2", "x").unwrap();
        assert_eq!(ok.extensions.get("trace_parent2").map(String::as_str), Some("x"));
    }

    #[test]
    fn an_event_input_is_read_with_its_defaults() {
        let input: EventInput =
            r#"{"type":"t.v1","data":{"a":1},"id":"abc","source":"me","idempotency_key":"k1","extensions":{"ticker":"AAPL.US"}}"#
                .parse()
                .unwrap();
        let (e, o) = input.into_event(Some("other"), "cli").unwrap();
        assert_eq!(
            (e.event_type.as_str(), e.id.as_str(), e.source.as_str()),
            ("t.v1", "abc", "me")
        );
        assert_eq!(e.data, serde_json::json!({"a": 1}));
        assert_eq!(e.extensions["ticker"], "AAPL.US");
        assert_eq!(o.idempotency_key.as_deref(), Some("k1"));
        let (e, o) = r#"{"data":null}"#.parse::<EventInput>().unwrap().into_event(Some("dflt.v1"), "cli").unwrap();
        assert_eq!((e.event_type.as_str(), e.source.as_str()), ("dflt.v1", "cli"));
        assert_eq!(e.data, serde_json::Value::Null);
        assert!(o.idempotency_key.is_none());
        let no_type = r#"{"data":1}"#.parse::<EventInput>().unwrap();
        assert_eq!(
            no_type.clone().into_event(None, "cli").unwrap_err(),
            InvalidEvent::MissingType
        );
        assert_eq!(
            no_type.into_event(Some(""), "cli").unwrap_err(),
            InvalidEvent::MissingType
        );
    }

    #[test]
    fn a_bad_event_input_says_what_is_wrong() {
        for (text, want) in [
            ("{nope", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"type":"t"}"#, "`data` is missing"),
            (r#"{"type":"t","data":1,"extra":2}"#, "unknown key `extra`"),
            (r#"{"type":5,"data":1}"#, "`type` must be a non-empty string"),
            (r#"{"type":"","data":1}"#, "`type` must be a non-empty string"),
            (r#"{"type":"t","data":1,"id":""}"#, "`id` must be a non-empty string"),
            (
                r#"{"type":"t","data":1,"extensions":[]}"#,
                "`extensions` must be an object",
            ),
            (r#"{"type":"t","data":1,"extensions":{"data":"x"}}"#, "extension `data`"),
            (
                r#"{"type":"t","data":1,"extensions":{"Ticker":"x"}}"#,
                "extension `Ticker`",
            ),
            (
                r#"{"type":"t","data":1,"extensions":{"dlq_reason":"x"}}"#,
                "extension `dlq_reason`",
            ),
            (
                r#"{"type":"t","data":1,"extensions":{"n":1}}"#,
                "extension `n` must be a string",
            ),
        ] {
            let err = text.parse::<EventInput>().unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        // serde reaches the same rules (the gateway's body is read that way).
        let err = serde_json::from_str::<EventInput>(r#"{"type":"t","data":1,"extra":2}"#).unwrap_err();
        assert!(err.to_string().contains("unknown key `extra`"), "{err}");
    }

    #[test]
    fn missing_required_fields_are_malformed() {
        let base = [("id", "x"), ("type", "t"), ("data", "{}")];
        for skip in ["id", "type", "data"] {
            let f: Vec<_> = base.iter().copied().filter(|(k, _)| *k != skip).collect();
            let err = Event::from_fields("1-0", &raw(&f), 1024).unwrap_err();
            assert!(
                matches!(err, MalformedError::MissingField(name) if name == skip),
                "{skip}: {err}"
            );
        }
    }

    #[test]
    fn invalid_json_data_is_malformed() {
        let err = Event::from_fields("1-0", &raw(&[("id", "x"), ("type", "t"), ("data", "{nope")]), 1024);
        assert!(matches!(err, Err(MalformedError::InvalidJson(_))));
    }

    #[test]
    fn oversized_entries_are_malformed() {
        let big = "x".repeat(100);
        let err = Event::from_fields("1-0", &raw(&[("id", "x"), ("type", "t"), ("data", &big)]), 50);
        assert!(matches!(err, Err(MalformedError::TooLarge { max: 50, .. })));
    }

    /// An entry's size is its names' and values' bytes added up; an entry of exactly the
    /// maximum is accepted, one byte more is too large.
    #[test]
    fn the_size_limit_counts_names_and_values_and_admits_exactly_the_maximum() {
        let fields = raw(&[("id", "abc"), ("type", "t"), ("data", "{}")]);
        assert_eq!(fields_size(&fields), 2 + 3 + 4 + 1 + 4 + 2);
        assert!(Event::from_fields("1-0", &fields, 16).is_ok());
        assert_eq!(
            Event::from_fields("1-0", &fields, 15),
            Err(MalformedError::TooLarge { size: 16, max: 15 })
        );
    }

    #[test]
    fn non_utf8_values_are_malformed_not_a_panic() {
        let fields = vec![("id".to_string(), vec![0xff, 0xfe]), ("type".into(), b"t".to_vec())];
        assert_eq!(
            Event::from_fields("1-0", &fields, 1024),
            Err(MalformedError::NotUtf8("id".into()))
        );
    }

    /// A field name that is not UTF-8 makes the entry malformed (so it is dead-lettered with its
    /// raw bytes), and the error shows the name with its invalid bytes escaped.
    #[test]
    fn non_utf8_field_names_are_malformed_not_a_panic() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"id".to_vec(), b"x".to_vec()),
            (b"type".to_vec(), b"t".to_vec()),
            (b"data".to_vec(), b"{}".to_vec()),
            (vec![b'n', 0xff], b"v".to_vec()),
        ];
        assert_eq!(
            Event::from_fields("1-0", &fields, 1024),
            Err(MalformedError::NameNotUtf8("n\\xff".into()))
        );
    }

    /// Escaping keeps UTF-8 text readable and loses no byte.
    #[test]
    fn escaped_bytes_are_readable_and_lossless() {
        assert_eq!(escape_bytes("héllo".as_bytes()), "héllo");
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(
            escape_bytes(b"a\\xffb"),
            "a\\\\xffb",
            "a literal backslash stays distinct"
        );
        assert_eq!(escape_bytes(b"l1\nl2\t\x1b"), "l1\\nl2\\t\\x1b");
        assert_eq!(escape_bytes(&[0xe2, 0x82]), "\\xe2\\x82", "a cut multi-byte character");
        assert_eq!(
            escape_bytes("a\u{85}b\u{9f}".as_bytes()),
            "a\\u{0085}b\\u{009f}",
            "a control character beyond ASCII"
        );
    }

    #[test]
    fn missing_time_falls_back_to_the_entry_id() {
        let e = Event::from_fields(
            "1700000000123-0",
            &raw(&[("id", "x"), ("type", "t"), ("data", "1")]),
            1024,
        )
        .unwrap();
        assert_eq!(e.time.timestamp_millis(), 1_700_000_000_123);
    }

    #[test]
    fn entry_ids_give_their_millis() {
        assert_eq!(entry_millis("1700000000123-7"), Some(1_700_000_000_123));
        assert_eq!(entry_millis("garbage"), None);
    }
}
