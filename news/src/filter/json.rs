//! A JSON object read one level deep: its members' values stay unparsed text.
//!
//! The filter reads five fields of a ~1 KB `news.raw.v1` payload and forwards the rest; building
//! a `serde_json::Value` tree of the whole payload (a string and a map node per member) cost
//! more than the rules themselves. [`Object`] borrows every name and value from the text and
//! parses a value only when it is asked for.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object's members in text order, their values unparsed.
#[derive(Debug, Default)]
pub(crate) struct Object<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Object<'a> {
    /// Reads `text` as an object; `None` when it is not one (or not JSON).
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// The value of member `name` (the last one, when the name repeats: as serde_json reads it).
    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members.iter().rev().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Whether the object has a member `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.members.iter().any(|(n, _)| n == name)
    }

    /// The members, each name once (its last value), in text order of their last occurrence.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, (n, _))| !self.members[i + 1..].iter().any(|(m, _)| m == n))
            .map(|(_, (n, v))| (n.as_ref(), *v))
    }
}

/// What a JSON value is, for error messages: `null`, `a string`, `an object`, ... (the words
/// of `article::kind`).
pub(crate) fn kind(value: &RawValue) -> &'static str {
    match value.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Whether the value is JSON `null`.
pub(crate) fn is_null(value: &RawValue) -> bool {
    value.get().trim() == "null"
}

/// The value as a string: borrowed from the text when it has no escapes. `None` when it is not
/// a string.
pub(crate) fn string(value: &RawValue) -> Option<Cow<'_, str>> {
    if !value.get().trim_start().starts_with('"') {
        return None;
    }
    serde_json::from_str::<Text<'_>>(value.get()).ok().map(|t| t.0)
}

/// The value as a number. `None` when it is not a number.
pub(crate) fn number(value: &RawValue) -> Option<f64> {
    if kind(value) != "a number" {
        return None;
    }
    serde_json::from_str::<f64>(value.get()).ok()
}

/// A JSON string that borrows from the text when it can.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'de>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((name, value)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    members.push((name.0, value));
                }
                Ok(Object { members })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn members_borrow_and_the_last_duplicate_wins() {
        let text = r#"{"a": 1, "b\u0041": "x", "a": {"n": [1, 2]}}"#;
        let obj = Object::parse(text).unwrap();
        assert_eq!(obj.get("a").unwrap().get(), r#"{"n": [1, 2]}"#);
        assert_eq!(obj.get("bA").unwrap().get(), r#""x""#);
        assert!(obj.contains("a") && !obj.contains("c"));
        let names: Vec<&str> = obj.members().map(|(n, _)| n).collect();
        assert_eq!(names, ["bA", "a"], "each name once, at its last place");
        // serde_json agrees on which duplicate counts.
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["a"], json!({"n": [1, 2]}));
    }

    #[test]
    fn anything_but_an_object_is_none() {
        for text in ["[]", "\"{\"", "1", "null", "{", "{\"a\" 1}", ""] {
            assert!(Object::parse(text).is_none(), "{text:?}");
        }
        assert!(Object::parse("  {}").is_some());
    }

    #[test]
    fn kinds_use_the_words_of_value_kinds() {
        let cases = [
            ("{}", json!({})),
            ("[1]", json!([1])),
            ("\"s\"", json!("s")),
            ("true", json!(true)),
            ("false", json!(false)),
            ("null", json!(null)),
            ("-1.5e3", json!(-1.5e3)),
        ];
        for (text, value) in cases {
            assert_eq!(kind(&raw(text)), crate::article::kind(&value), "{text}");
        }
        assert!(is_null(&raw("null")) && !is_null(&raw("\"null\"")));
    }

    #[test]
    fn strings_borrow_unless_escaped_and_numbers_read_as_f64() {
        assert!(matches!(string(&raw(r#""plain""#)), Some(Cow::Borrowed("plain"))));
        let text = raw(r#""a\"b\u00e9\n""#);
        let escaped = string(&text).unwrap();
        assert!(matches!(escaped, Cow::Owned(_)));
        assert_eq!(escaped, "a\"bé\n");
        assert_eq!(string(&raw("1")), None);
        assert_eq!(number(&raw("0.25")), Some(0.25));
        assert_eq!(number(&raw("-1")), Some(-1.0));
        assert_eq!(number(&raw("12345678901234567890")), Some(12_345_678_901_234_567_890.0));
        assert_eq!(number(&raw("\"0.5\"")), None);
        assert_eq!(number(&raw("null")), None);
    }
}
