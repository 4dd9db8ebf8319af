//! The fields of a `news.raw.v1` payload the filter needs, read leniently.
//!
//! This is deliberately a small view of the payload rather than the client's full article
//! model: the filter only needs the ticker, the date, the text and the optional polarity, and
//! forwards everything else untouched. Lenient as the view is, the article's date has one
//! rule for the whole crate: it is read by the same code as the fetcher's [`Article`]
//! ([`parse_article_date`]), so what the fetcher publishes the filter can read.
//!
//! [`Article`]: crate::Article
//! [`parse_article_date`]: crate::parse_article_date

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess};
use serde_json::value::RawValue;
use serde_json::Value;

use super::json::{self, FromMembers, Json};
use crate::article::date_of;
use crate::error::Error;

/// The parts of a raw news event the rules look at.
///
/// [`RawNews::from_data`] borrows the text from the payload rather than copying it (the filter
/// reads ~1 KB of text per event); [`RawNews::into_owned`] detaches it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RawNews<'a> {
    /// The ticker this entry was fetched for, e.g. `AAPL.US` (`data.ticker`, else the event's
    /// `ticker` extension), trimmed.
    pub ticker: Cow<'a, str>,
    /// When the article was published (`data.article.date`, in any form
    /// [`parse_article_date`](crate::parse_article_date) accepts), in UTC.
    pub date: DateTime<Utc>,
    /// The headline (`data.article.title`; missing counts as empty).
    pub title: Cow<'a, str>,
    /// The article text (`data.article.content`; missing counts as empty).
    pub content: Cow<'a, str>,
    /// EODHD's own polarity (`data.article.sentiment.polarity`), when present and a finite
    /// number in -1.0..=1.0.
    pub polarity: Option<f64>,
}

impl<'a> RawNews<'a> {
    /// A value for tests and tools.
    pub fn new(
        ticker: impl Into<Cow<'a, str>>,
        date: DateTime<Utc>,
        title: impl Into<Cow<'a, str>>,
        content: impl Into<Cow<'a, str>>,
    ) -> Self {
        RawNews {
            ticker: ticker.into(),
            date,
            title: title.into(),
            content: content.into(),
            polarity: None,
        }
    }

    /// Sets EODHD's polarity.
    #[must_use]
    pub fn with_polarity(mut self, polarity: Option<f64>) -> Self {
        self.polarity = polarity;
        self
    }

    /// The same news, owning its text.
    pub fn into_owned(self) -> RawNews<'static> {
        RawNews {
            ticker: Cow::Owned(self.ticker.into_owned()),
            date: self.date,
            title: Cow::Owned(self.title.into_owned()),
            content: Cow::Owned(self.content.into_owned()),
            polarity: self.polarity,
        }
    }

    /// Reads a `news.raw.v1` `data` payload (JSON text, e.g. [`mt5_bus::Data::get`]),
    /// borrowing its text where it has no escapes; `ticker_extension` is the event's `ticker`
    /// extension, used when `data.ticker` is missing. Only the fields below are parsed, in one
    /// pass over the text; every other member is skipped, not copied.
    ///
    /// Lenient where the rules do not care (missing title, content or sentiment, a polarity that is
    /// not a number), strict where they do. A repeated member counts by its last occurrence, as
    /// `serde_json` reads it into a `Value`.
    ///
    /// # Errors
    /// [`Error::InvalidData`] naming the field: `data` not an object, no ticker, no
    /// `article` object, or an `article.date` that is missing or not a date-time.
    pub fn from_json(data: &'a str, ticker_extension: Option<&'a str>) -> Result<Self, Error> {
        let payload = match serde_json::from_str::<Json<'a, Payload<'a>>>(data) {
            Ok(Json::Object(payload)) => payload,
            _ => return Err(not_an_object(data)),
        };
        let ticker = match payload.ticker {
            None | Some(Json::Null) => Self::ticker_from_extension(ticker_extension)?,
            Some(Json::Str(Cow::Borrowed(s))) if !s.trim().is_empty() => Cow::Borrowed(s.trim()),
            Some(Json::Str(Cow::Owned(s))) if !s.trim().is_empty() => Cow::Owned(s.trim().to_string()),
            Some(t) => {
                return Err(Error::data(
                    "ticker",
                    format!("expected a non-empty string, got {}", t.kind()),
                ))
            }
        };
        let article = match payload.article {
            Some(Json::Object(article)) => article,
            Some(a) => return Err(Error::data("article", format!("expected an object, got {}", a.kind()))),
            None => return Err(Error::data("article", "missing")),
        };
        let date = article.date.as_ref().map(|d| match d {
            Json::Str(s) => Ok(s.as_ref()),
            other => Err(other.kind()),
        });
        let date = date_of(date).map_err(|reason| Error::data("article.date", reason))?;
        let text = |value: Option<Json<'a>>, path: &'static str| -> Result<Cow<'a, str>, Error> {
            match value {
                None | Some(Json::Null) => Ok(Cow::Borrowed("")),
                Some(Json::Str(s)) => Ok(s),
                Some(other) => Err(Error::data(path, format!("expected a string, got {}", other.kind()))),
            }
        };
        let title = text(article.title, "article.title")?;
        let content = text(article.content, "article.content")?;
        let polarity = match article.sentiment {
            Some(Json::Object(Sentiment {
                polarity: Some(Json::Num(p)),
            })) if (-1.0..=1.0).contains(&p) => Some(p),
            _ => None,
        };
        Ok(RawNews {
            ticker,
            date,
            title,
            content,
            polarity,
        })
    }

    /// As [`RawNews::from_json`], of a parsed value (its text is read into an owned `RawNews`).
    ///
    /// # Errors
    /// As [`RawNews::from_json`].
    pub fn from_data(data: &Value, ticker_extension: Option<&str>) -> Result<Self, Error> {
        RawNews::from_json(&data.to_string(), ticker_extension).map(RawNews::into_owned)
    }

    fn ticker_from_extension(ticker_extension: Option<&'a str>) -> Result<Cow<'a, str>, Error> {
        match ticker_extension.map(str::trim) {
            Some(t) if !t.is_empty() => Ok(Cow::Borrowed(t)),
            _ => Err(Error::data("ticker", "missing (no data.ticker, no ticker extension)")),
        }
    }
}

/// The error for a payload that is not a JSON object.
#[cold]
pub(crate) fn not_an_object(data: &str) -> Error {
    let kind = serde_json::from_str::<&RawValue>(data).map_or("not JSON", json::kind);
    Error::data("data", format!("expected an object, got {kind}"))
}

/// The members of a payload the rules read, each by its last occurrence.
#[derive(Default)]
struct Payload<'a> {
    ticker: Option<Json<'a>>,
    article: Option<Json<'a, Article<'a>>>,
}

impl<'de> FromMembers<'de> for Payload<'de> {
    fn member<M: MapAccess<'de>>(&mut self, name: &str, map: &mut M) -> Result<(), M::Error> {
        match name {
            "ticker" => self.ticker = Some(map.next_value()?),
            "article" => self.article = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

/// The members of `article` the rules read, each by its last occurrence.
#[derive(Default)]
struct Article<'a> {
    date: Option<Json<'a>>,
    title: Option<Json<'a>>,
    content: Option<Json<'a>>,
    sentiment: Option<Json<'a, Sentiment<'a>>>,
}

impl<'de> FromMembers<'de> for Article<'de> {
    fn member<M: MapAccess<'de>>(&mut self, name: &str, map: &mut M) -> Result<(), M::Error> {
        match name {
            "date" => self.date = Some(map.next_value()?),
            "title" => self.title = Some(map.next_value()?),
            "content" => self.content = Some(map.next_value()?),
            "sentiment" => self.sentiment = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

/// The `polarity` of `article.sentiment`, by its last occurrence.
#[derive(Default)]
struct Sentiment<'a> {
    polarity: Option<Json<'a>>,
}

impl<'de> FromMembers<'de> for Sentiment<'de> {
    fn member<M: MapAccess<'de>>(&mut self, name: &str, map: &mut M) -> Result<(), M::Error> {
        match name {
            "polarity" => self.polarity = Some(map.next_value()?),
            _ => drop(map.next_value::<IgnoredAny>()?),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn field_of(data: Value) -> &'static str {
        match RawNews::from_data(&data, None) {
            Err(Error::InvalidData { field, .. }) => field,
            other => panic!("expected invalid data, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_contract_shape() {
        let data = json!({
            "ticker": "AAPL.US", "fetch_time": "2025-06-03T12:00:00.000Z", "source_query": "s=AAPL.US",
            "article": {"date": "2025-06-03T10:05:00+00:00", "title": "T", "content": "C", "link": "https://x",
                        "symbols": ["AAPL.US"], "tags": [],
                        "sentiment": {"polarity": 0.75, "neg": 0.0, "neu": 0.5, "pos": 0.5}}
        });
        let text = data.to_string();
        let n = RawNews::from_json(&text, None).unwrap();
        assert_eq!(n.ticker, "AAPL.US");
        assert_eq!(n.date, Utc.with_ymd_and_hms(2025, 6, 3, 10, 5, 0).unwrap());
        assert_eq!((&*n.title, &*n.content), ("T", "C"));
        assert!(matches!(n.content, Cow::Borrowed(_)), "the text is not copied");
        assert_eq!(n.polarity, Some(0.75));
        assert_eq!(
            RawNews::from_data(&data, None).unwrap(),
            n,
            "the value reads as its text"
        );
    }

    #[test]
    fn escaped_text_is_read_unescaped_and_duplicates_as_serde_json_reads_them() {
        let text = r#"{"ticker": "A.US", "ticker": " B\u002eUS ",
            "article": {"date": "2025-06-03", "title": "\"Quoted\" \u00e9", "content": "a\nb",
                        "sentiment": {"polarity": -1}, "sentiment": {"polarity": 2}}}"#;
        let n = RawNews::from_json(text, None).unwrap();
        assert_eq!(n.ticker, "B.US");
        assert_eq!(n.title, "\"Quoted\" é");
        assert_eq!(n.content, "a\nb");
        assert_eq!(n.polarity, None, "the last sentiment counts, and 2 is out of range");
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(RawNews::from_data(&value, None).unwrap(), n);
    }

    /// What `from_json` must read, restated on a `serde_json::Value` (which keeps the last of
    /// repeated members): `Ok((ticker, title, content, polarity))` or the field named.
    fn read_by_value(data: &Value, ext: Option<&str>) -> Result<(String, String, String, Option<f64>), &'static str> {
        let Some(obj) = data.as_object() else {
            return Err("data");
        };
        let ticker = match obj.get("ticker") {
            None | Some(Value::Null) => ext.map(str::trim).filter(|t| !t.is_empty()).ok_or("ticker")?,
            Some(Value::String(t)) if !t.trim().is_empty() => t.trim(),
            Some(_) => return Err("ticker"),
        };
        let article = obj.get("article").and_then(Value::as_object).ok_or("article")?;
        let date = article.get("date").and_then(Value::as_str).ok_or("article.date")?;
        crate::parse_article_date(date).ok_or("article.date")?;
        let text = |name: &str, path: &'static str| match article.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(path),
        };
        let polarity = article
            .get("sentiment")
            .and_then(|s| s.get("polarity"))
            .and_then(Value::as_f64)
            .filter(|p| (-1.0..=1.0).contains(p));
        Ok((
            ticker.to_string(),
            text("title", "article.title")?,
            text("content", "article.content")?,
            polarity,
        ))
    }

    /// A value the reader must tell apart: strings (escaped or not, dates among them), numbers
    /// in and out of the polarity range, and every other kind.
    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("\"2025-06-03T10:05:00Z\"".to_string()),
            Just("\" AAPL.US \"".to_string()),
            Just("\"  \"".to_string()),
            Just("\" \\t \"".to_string()),
            Just("\"Caf\\u00e9 \\\"up\\\"\\n\"".to_string()),
            (-3.0f64..3.0).prop_map(|n| format!("{n}")),
            Just("12345678901234567890".to_string()),
            Just("[1, {\"polarity\": 0.9}]".to_string()),
            Just("{\"title\": \"nested\", \"polarity\": 0.5}".to_string()),
        ]
    }

    /// An object: members named from `names` (duplicates likely) valued by `value`, then, mostly,
    /// the members of `valid` (so that most payloads get as far as the fields after them).
    fn object(
        names: &'static [&'static str],
        value: BoxedStrategy<String>,
        valid: BoxedStrategy<String>,
    ) -> BoxedStrategy<String> {
        let members = prop::collection::vec((prop::sample::select(names), value), 0..5);
        (members, prop::option::weighted(0.8, valid))
            .prop_map(|(members, valid)| {
                let members = members.iter().map(|(n, v)| format!("\"{n}\": {v}"));
                let all: Vec<String> = members.chain(valid).collect();
                format!("{{{}}}", all.join(", "))
            })
            .boxed()
    }

    /// A payload: a `ticker`, an `article` with a `date`, a `sentiment` with a `polarity`, each
    /// mostly valid and each among members of the same and other names of every kind.
    fn payload() -> BoxedStrategy<String> {
        // The range's ends are inside it.
        let number = || prop_oneof![4 => (-1.5f64..1.5).prop_map(|n| format!("{n}")), 1 => Just("1".into()), 1 => Just("-1.0".into())];
        let polarity = prop_oneof![1 => leaf(), 3 => number()].boxed();
        let sentiment = object(
            &["polarity", "other", "p\\u006flarity"],
            polarity,
            number().prop_map(|n| format!("\"polarity\": {n}")).boxed(),
        );
        let sentiment = prop_oneof![1 => leaf(), 4 => sentiment].boxed();
        let article = object(
            &["date", "title", "content", "sentiment", "other", "t\\u0069tle"],
            prop_oneof![2 => leaf(), 1 => sentiment.clone()].boxed(),
            sentiment
                .prop_map(|s| format!("\"date\": \"2025-06-03\", \"title\": \"T\", \"sentiment\": {s}"))
                .boxed(),
        );
        let article = prop_oneof![1 => leaf(), 4 => article].boxed();
        object(
            &["ticker", "article", "other"],
            prop_oneof![2 => leaf(), 1 => article.clone()].boxed(),
            article
                .prop_map(|a| format!("\"ticker\": \"A.US\", \"article\": {a}"))
                .boxed(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// `from_json`'s one pass reads every payload as a `Value` reading does: the same
        /// fields, the same last duplicates, the same field named when it refuses.
        #[test]
        fn one_pass_reading_agrees_with_a_value_reading(
            text in payload(),
            ext in prop::option::of(Just(" EXT.US ")),
        ) {
            let value: Value = serde_json::from_str(&text).unwrap();
            let want = read_by_value(&value, ext);
            let got = match RawNews::from_json(&text, ext) {
                Ok(n) => Ok((n.ticker.into_owned(), n.title.into_owned(), n.content.into_owned(), n.polarity)),
                Err(Error::InvalidData { field, .. }) => Err(field),
                Err(other) => panic!("{other}"),
            };
            prop_assert_eq!(got, want, "{}", text);
        }
    }

    #[test]
    fn tolerates_missing_text_and_sentiment() {
        let data = json!({"article": {"date": "2025-06-03T10:05:00Z", "sentiment": null}});
        let n = RawNews::from_data(&data, Some(" MSFT.US ")).unwrap();
        assert_eq!(n.ticker, "MSFT.US");
        assert_eq!((&*n.title, &*n.content, n.polarity), ("", "", None));
        let polarity = |p: Value| {
            let data =
                json!({"ticker": "X", "article": {"date": "2025-06-03T10:05:00Z", "sentiment": {"polarity": p}}});
            RawNews::from_data(&data, None).unwrap().polarity
        };
        assert_eq!(polarity(json!("high")), None);
        assert_eq!(polarity(json!(7.0)), None, "out of range counts as missing");
        assert_eq!(polarity(json!(-0.25)), Some(-0.25));
    }

    /// Without `data.ticker`, the event's ticker extension names the ticker; a blank one is
    /// as good as none.
    #[test]
    fn a_blank_ticker_extension_is_no_ticker() {
        let data = r#"{"article": {"date": "2025-06-03T10:05:00Z"}}"#;
        for ext in [None, Some(""), Some("  ")] {
            match RawNews::from_json(data, ext) {
                Err(Error::InvalidData { field, .. }) => assert_eq!(field, "ticker", "{ext:?}"),
                other => panic!("{ext:?}: {other:?}"),
            }
        }
        assert_eq!(RawNews::from_json(data, Some(" MSFT.US ")).unwrap().ticker, "MSFT.US");
    }

    /// `into_owned` keeps every field and outlives the payload.
    #[test]
    fn owned_news_outlives_the_payload() {
        let owned = {
            let data = json!({"ticker": "X", "article": {"date": "2025-06-03T10:05:00Z", "title": "T"}});
            let n = RawNews::from_data(&data, None).unwrap();
            let owned = n.clone().into_owned();
            assert_eq!(owned, n);
            owned
        };
        assert_eq!((&*owned.ticker, &*owned.title), ("X", "T"));
    }

    #[test]
    fn accepts_common_date_spellings() {
        let want = Utc.with_ymd_and_hms(2025, 6, 3, 10, 5, 0).unwrap();
        let date = |s: &str| {
            let data = json!({"ticker": "X", "article": {"date": s}});
            RawNews::from_data(&data, None).ok().map(|n| n.date)
        };
        for s in [
            "2025-06-03T10:05:00+00:00",
            "2025-06-03T10:05:00Z",
            "2025-06-03T12:05:00+02:00",
            "2025-06-03T10:05:00+0000",
            "2025-06-03T15:05:00+05",
            "2025-06-03 10:05:00",
            "2025-06-03T10:05:00.000",
        ] {
            assert_eq!(date(s), Some(want), "{s}");
        }
        assert_eq!(date("yesterday"), None);
    }

    /// The filter reads an article date exactly when the fetcher does, and to the same
    /// instant: a payload the fetcher published is never dead-lettered for its date, and a date
    /// the fetcher refuses is not taken by the filter either.
    #[test]
    fn the_filter_reads_the_dates_the_fetcher_reads() {
        let article = |date: &str| json!({"date": date, "title": "T", "content": "C", "link": "https://x/1", "symbols": [], "tags": []});
        for date in [
            "2026-05-04T10:00:00+05",
            "2026-05-04T10:00:00+05:30",
            "2026-05-04T10:00:00+0530",
            "2026-05-04T10:00:00-04:00",
            "2026-05-04T10:00:00Z",
            "2026-05-04t10:00:00z",
            "2026-05-04T10:00:00.123+00:00",
            "2026-05-04 10:00:00+00:00",
            "2026-05-04 10:00:00 +00:00",
            "2026-05-04T10:00:00",
            "2026-05-04 10:00:00",
            "2026-05-04T10:00",
            "2026-05-04",
            " 2026-05-04T10:00:00Z ",
            "2026-05-04T10:00:00 Z",
            "2026-05-04T10:00:00 UTC",
            "04/05/2026 10:00",
            "yesterday",
            "",
        ] {
            let fetcher = crate::Article::from_value(&article(date)).map(|a| a.date).ok();
            let data = json!({"ticker": "X", "article": article(date)});
            let filter = RawNews::from_data(&data, None).map(|n| n.date).ok();
            assert_eq!(filter, fetcher, "{date:?}: filter vs fetcher");
        }
    }

    #[test]
    fn rejects_the_wrong_shape_naming_the_field() {
        assert_eq!(field_of(json!([1])), "data");
        assert_eq!(field_of(json!({"article": {"date": "2025-06-03T10:05:00Z"}})), "ticker");
        assert_eq!(field_of(json!({"ticker": 5, "article": {}})), "ticker");
        // Blank, read borrowed and (with an escape in it) unescaped into a copy.
        let article = json!({"date": "2025-06-03T10:05:00Z"});
        assert_eq!(field_of(json!({"ticker": "  ", "article": article})), "ticker");
        assert_eq!(field_of(json!({"ticker": " \t ", "article": article})), "ticker");
        assert_eq!(field_of(json!({"ticker": "X"})), "article");
        assert_eq!(field_of(json!({"ticker": "X", "article": "text"})), "article");
        assert_eq!(field_of(json!({"ticker": "X", "article": {}})), "article.date");
        assert_eq!(
            field_of(json!({"ticker": "X", "article": {"date": "soon"}})),
            "article.date"
        );
        assert_eq!(field_of(json!({"ticker": "X", "article": {"date": 1}})), "article.date");
        assert_eq!(
            field_of(json!({"ticker": "X", "article": {"date": "2025-06-03T10:05:00Z", "title": 3}})),
            "article.title"
        );
    }
}
