//! [`Data`]: an event's JSON payload, kept as the text it was read or written as.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// An event's `data`: JSON text, checked to be valid JSON once, when it is made, and not parsed
/// further by the bus.
///
/// A consumer hands the `data` field to its handler as read: the bus checks it is JSON (an
/// entry whose `data` is not is dead-lettered as malformed) but builds no tree of it, so a
/// handler that needs three fields of a 1 KB payload parses three fields ([`Data::parse`] into
/// a struct that borrows), and one that forwards the payload copies text ([`Data::get`]).
/// [`Data::to_value`] gives the whole tree when that is simpler.
///
/// Made from a [`serde_json::Value`] (`Data::from(json!({..}))`, or any `Into<Data>` argument of
/// [`Event::new`](super::Event::new)) it is that value's compact serialization; made from text
/// ([`Data::from_json`]) it is the text without surrounding whitespace. Two `Data` are equal when
/// they hold the same JSON value (same text, or texts that parse to equal values); a `Data`
/// equals a [`Value`] the same way.
#[derive(Clone)]
pub struct Data(Box<RawValue>);

impl Data {
    /// Checks that `text` is one JSON value and keeps it (without surrounding whitespace).
    ///
    /// # Errors
    /// serde_json's error when `text` is not valid JSON.
    pub fn from_json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        // Takes the string without a copy when it has no surrounding whitespace and no spare
        // capacity (a stream field as read).
        RawValue::from_string(text.into()).map(Data)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the text into `T`, which may borrow from it (`&str` fields, `&RawValue`, ...).
    ///
    /// # Errors
    /// serde_json's error when the JSON does not fit `T`.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The whole JSON value, as a tree.
    pub fn to_value(&self) -> Value {
        // The text was checked to be JSON when this was made, by the same parser: this cannot
        // fail.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Always false: the shortest JSON value is one byte long.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl From<Box<RawValue>> for Data {
    /// Text serde_json made or checked (`serde_json::value::to_raw_value`, a `Box<RawValue>`
    /// deserialized), kept as it is.
    fn from(raw: Box<RawValue>) -> Self {
        Data(raw)
    }
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        Data::from(&value)
    }
}

impl From<&Value> for Data {
    fn from(value: &Value) -> Self {
        // A `Value` always serializes, and its serialization is JSON.
        serde_json::value::to_raw_value(value).map_or_else(|_| Data::default(), Data)
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_string()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

impl Default for Data {
    /// `null`.
    fn default() -> Self {
        Data(null())
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Data {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl PartialEq<Data> for Value {
    fn eq(&self, other: &Data) -> bool {
        other == self
    }
}

impl Serialize for Data {
    /// As the JSON value itself (inlined by serde_json, not as a string).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(Data)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_is_kept_as_given_without_surrounding_whitespace() {
        let d = Data::from_json("  {\"b\": 1,  \"a\": [1, 2.50]}\n").unwrap();
        assert_eq!(d.get(), "{\"b\": 1,  \"a\": [1, 2.50]}");
        assert_eq!(d.len(), 25, "the kept text's bytes");
        assert!(!d.is_empty());
        assert_eq!(
            (Data::from_json("0").unwrap().len(), Data::from(json!("é")).len()),
            (1, 4)
        );
        assert_eq!(d, json!({"a": [1, 2.5], "b": 1}));
    }

    #[test]
    fn invalid_json_is_refused() {
        for bad in ["", "   ", "{", "{\"a\":}", "nul", "1 2", "{} {}", "'x'"] {
            assert!(Data::from_json(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_value_becomes_its_compact_serialization() {
        let d = Data::from(json!({"z": "é\n", "a": null}));
        assert_eq!(d.get(), r#"{"a":null,"z":"é\n"}"#);
        assert_eq!(d.to_value(), json!({"z": "é\n", "a": null}));
        assert_eq!(Data::default().get(), "null");
    }

    #[test]
    fn equality_is_of_values_not_of_spelling() {
        let a = Data::from_json(r#"{"a": 1, "b": "x"}"#).unwrap();
        let b = Data::from_json(r#"{"b":"x","a":1}"#).unwrap();
        let c = Data::from_json(r#"{"b":"y","a":1}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(json!({"a": 1, "b": "x"}), a);
        assert_eq!(a, json!({"a": 1, "b": "x"}));
        assert_ne!(json!({"a": 1, "b": "y"}), a);
        assert_ne!(a, json!({"a": 1, "b": "y"}));
    }

    /// Text serde_json made or checked is kept as it is, and shown as it is by `Display` and
    /// `Debug` (a log line shows the JSON, not a wrapper around it).
    #[test]
    fn raw_text_is_kept_and_shown_as_it_is() {
        let text = r#"{"b": [1, 2.50], "a": "x"}"#;
        let raw = RawValue::from_string(text.to_string()).unwrap();
        let d = Data::from(raw);
        assert_eq!(d.get(), text);
        assert_eq!(d.to_string(), text);
        assert_eq!(format!("{d:?}"), text);
    }

    #[test]
    fn parse_borrows_from_the_text() {
        #[derive(Deserialize)]
        struct View<'a> {
            title: &'a str,
            #[serde(borrow)]
            rest: &'a RawValue,
        }
        let d = Data::from_json(r#"{"title":"t","rest":{"x":[1]},"other":true}"#).unwrap();
        let v: View<'_> = d.parse().unwrap();
        assert_eq!(v.title, "t");
        assert_eq!(v.rest.get(), r#"{"x":[1]}"#);
    }

    #[test]
    fn serializes_inline_and_deserializes_from_json() {
        #[derive(Serialize, Deserialize)]
        struct Wrap {
            data: Data,
        }
        let w = Wrap {
            data: Data::from_json("[1, {\"a\": true}]").unwrap(),
        };
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(text, r#"{"data":[1, {"a": true}]}"#);
        let back: Wrap = serde_json::from_str(&text).unwrap();
        assert_eq!(back.data.get(), "[1, {\"a\": true}]");
    }
}
