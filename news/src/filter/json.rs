//! JSON read without a `serde_json::Value` tree.
//!
//! The filter reads five fields of a ~1 KB `news.raw.v1` payload and forwards the rest; building
//! a `Value` tree of the whole payload (a string and a map node per member) cost more than the
//! rules themselves.
//!
//! - [`Json`] with a [`FromMembers`] type reads the fields a reader wants in one pass over the
//!   text, borrowing strings from it and skipping everything else: how the rules' fields are read
//!   (`RawNews::from_json`).
//! - [`Object`] is an object read one level deep: it borrows every name and value from the text
//!   and parses a value only when asked: how a passing event's members are forwarded.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// An object read member by member, in one pass: [`Json::Object`] of it.
pub(crate) trait FromMembers<'de>: Default {
    /// Reads the value of member `name` off `map` (its name has just been read). A member the
    /// type does not keep must still be read, with `map.next_value::<IgnoredAny>()`.
    fn member<M: MapAccess<'de>>(&mut self, name: &str, map: &mut M) -> Result<(), M::Error>;
}

/// An object whose members are all skipped.
#[derive(Debug, Default)]
pub(crate) struct Skipped;

impl<'de> FromMembers<'de> for Skipped {
    fn member<M: MapAccess<'de>>(&mut self, _: &str, map: &mut M) -> Result<(), M::Error> {
        map.next_value::<IgnoredAny>().map(drop)
    }
}

/// A JSON value read in one pass, as far as a reader cares: a string (borrowed from the text
/// unless escaped), a number, `null`, an object read by `T`, or the kind of anything else
/// (arrays and booleans are skipped).
#[derive(Debug)]
pub(crate) enum Json<'a, T = Skipped> {
    Null,
    Str(Cow<'a, str>),
    Num(f64),
    Object(T),
    /// A boolean or an array, by [`kind`]'s word.
    Other(&'static str),
}

impl<T> Json<'_, T> {
    /// What the value is, in [`kind`]'s words.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Str(_) => "a string",
            Json::Num(_) => "a number",
            Json::Object(_) => "an object",
            Json::Other(kind) => kind,
        }
    }
}

impl<'de, T: FromMembers<'de>> Deserialize<'de> for Json<'de, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: FromMembers<'de>> Visitor<'de> for JsonVisitor<T> {
            type Value = Json<'de, T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Json::Null)
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Json::Other("a boolean"))
            }

            // As `serde_json::from_str::<f64>` reads the same text.
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Json::Num(v as f64))
            }

            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Json::Num(v as f64))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Json::Num(v))
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Json::Str(Cow::Owned(v)))
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Json::Other("an array"))
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut object = T::default();
                while let Some(name) = map.next_key::<Text<'de>>()? {
                    object.member(&name.0, &mut map)?;
                }
                Ok(Json::Object(object))
            }
        }
        deserializer.deserialize_any(JsonVisitor(std::marker::PhantomData))
    }
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
        assert!(obj.contains("a") && !obj.contains("c"));
        let members: Vec<(&str, &str)> = obj.members().map(|(n, v)| (n, v.get())).collect();
        assert_eq!(
            members,
            [("bA", r#""x""#), ("a", r#"{"n": [1, 2]}"#)],
            "each name once, with its last value, at its last place"
        );
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

    fn read(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
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
            assert_eq!(read(text).kind(), crate::article::kind(&value), "{text}");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped_and_numbers_read_as_f64() {
        assert!(matches!(read(r#""plain""#), Json::Str(Cow::Borrowed("plain"))));
        let Json::Str(escaped) = read(r#""a\"b\u00e9\n""#) else {
            panic!("a string")
        };
        assert!(matches!(escaped, Cow::Owned(_)));
        assert_eq!(escaped, "a\"bé\n");
        let number = |text: &str| match read(text) {
            Json::Num(n) => Some(n),
            _ => None,
        };
        assert_eq!(number("0.25"), Some(0.25));
        assert_eq!(number("-1"), Some(-1.0));
        assert_eq!(number("12345678901234567890"), Some(12_345_678_901_234_567_890.0));
        assert_eq!(
            number("123456789012345678901234567890"),
            Some(serde_json::from_str::<f64>("123456789012345678901234567890").unwrap()),
            "read as serde_json reads an f64"
        );
        assert_eq!(number("\"0.5\""), None);
        assert_eq!(number("null"), None);
    }

    /// An object reader sees each member once, skips the rest, and keeps the last duplicate.
    #[test]
    fn objects_are_read_member_by_member_in_one_pass() {
        #[derive(Debug, Default)]
        struct Names(Vec<String>, Option<f64>);
        impl<'de> FromMembers<'de> for Names {
            fn member<M: MapAccess<'de>>(&mut self, name: &str, map: &mut M) -> Result<(), M::Error> {
                self.0.push(name.to_string());
                match name {
                    "n" => self.1 = Some(map.next_value::<f64>()?),
                    _ => drop(map.next_value::<IgnoredAny>()?),
                }
                Ok(())
            }
        }
        let text = r#"{"n": 1, "skip": {"deep": [1, {"n": 9}]}, "n": 2.5}"#;
        let Json::Object(Names(names, n)) = serde_json::from_str::<Json<'_, Names>>(text).unwrap() else {
            panic!("an object")
        };
        assert_eq!(names, ["n", "skip", "n"]);
        assert_eq!(
            n,
            Some(2.5),
            "the last duplicate, and nested members are not the object's"
        );
        assert!(
            serde_json::from_str::<Json<'_, Names>>(r#"{"n": 1"#).is_err(),
            "not JSON"
        );
        assert_eq!(read(r#"{"a": [1, 2], "b": "c"}"#).kind(), "an object");
    }
}
