//! The typed EODHD news article, also the `article` field of a `news.raw.v1` event.
//!
//! EODHD's documented shape is `{date, title, content, link, symbols, tags, sentiment: {polarity,
//! neg, neu, pos}}`, but real responses and third-party fixtures vary, so reading is tolerant
//! where nothing is lost and strict where a value would be wrong:
//!
//! - tolerated: unknown extra fields (ignored); missing or `null` `content` (empty), `symbols`
//!   and `tags` (empty); missing, `null` or `{}` `sentiment` (none); a sentiment with only
//!   `polarity`; numbers sent as strings; dates with `Z`, `+00:00`, `+0000`, `+05:30`, `+05` or
//!   no offset at all (read as UTC), with a space instead of `T`, without seconds, or a bare
//!   `YYYY-MM-DD` (midnight UTC): [`parse_article_date`], which is also the filter's rule for
//!   `article.date` (one reader of the date for the whole crate).
//! - rejected, with an [`Error::InvalidArticle`] naming the field: a missing or unparsable `date`, a
//!   missing or non-string `title`, a missing or empty `link` (the de-duplication key), a
//!   `content` that is not a string, `symbols`/`tags` that are not arrays of strings, a
//!   `sentiment` that is not an object, and sentiment scores that are not numbers.
//!
//! Dates are normalised to UTC. Writing produces exactly the contract's shape, with `date` as
//! RFC 3339 UTC and `sentiment` `null` when absent; reading the written form gives the same
//! value back.

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::Error;

/// One news article.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Article {
    /// When it was published, in UTC (EODHD `date`).
    #[serde(serialize_with = "serialize_date")]
    pub date: DateTime<Utc>,
    /// The headline.
    pub title: String,
    /// The article text; may be truncated or contain HTML. Empty when EODHD sent none.
    pub content: String,
    /// The source URL: the article's identity for de-duplication and idempotency keys.
    pub link: String,
    /// Tickers mentioned, e.g. `["AAPL.US", "NVDA.US"]`; may be empty.
    pub symbols: Vec<String>,
    /// Topic tags; may be empty.
    pub tags: Vec<String>,
    /// EODHD's own sentiment scores, when it sent them.
    pub sentiment: Option<ArticleSentiment>,
}

/// EODHD's sentiment scores of an article.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArticleSentiment {
    /// Overall score, documented as -1.0 to 1.0 (the sign is the direction).
    pub polarity: f64,
    /// Negative share, 0.0 to 1.0, when sent.
    #[serde(default)]
    pub neg: Option<f64>,
    /// Neutral share, 0.0 to 1.0, when sent.
    #[serde(default)]
    pub neu: Option<f64>,
    /// Positive share, 0.0 to 1.0, when sent.
    #[serde(default)]
    pub pos: Option<f64>,
}

/// An item that is not a valid article: what [`Error::InvalidArticle`] carries, and what a
/// page lists of the items it skipped. `field` names the offending field (`date`, `title`,
/// `sentiment.polarity`, ...).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RejectedArticle {
    /// The offending field, e.g. `date` or `sentiment.polarity`; `article` when the item is not
    /// an object at all.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
    /// The article's link, when it had a usable one (for logs).
    pub link: Option<String>,
}

impl RejectedArticle {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        RejectedArticle {
            field,
            reason: reason.into(),
            link: None,
        }
    }
}

impl fmt::Display for RejectedArticle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid article")?;
        if let Some(link) = &self.link {
            write!(f, " ({link})")?;
        }
        write!(f, ": field `{}`: {}", self.field, self.reason)
    }
}

impl Article {
    /// Reads one article from its JSON value, tolerating missing and extra fields.
    ///
    /// # Errors
    /// [`Error::InvalidArticle`] naming the first field that cannot be read (see the module
    /// docs).
    pub fn from_value(value: &Value) -> Result<Self, Error> {
        Self::read(value).map_err(Error::InvalidArticle)
    }

    /// [`Article::from_value`] for the client, which keeps what it skipped.
    pub(crate) fn read(value: &Value) -> Result<Self, RejectedArticle> {
        let obj = value
            .as_object()
            .ok_or_else(|| RejectedArticle::new("article", format!("expected an object, got {}", kind(value))))?;
        let link = match obj.get("link") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        };
        read_fields(obj, link.as_deref()).map_err(|mut e| {
            e.link = link;
            e
        })
    }

    /// Reads one article from JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidArticle`] with field `article` when the text is not JSON, else as
    /// [`Article::from_value`].
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArticle(RejectedArticle::new("article", format!("not JSON: {e}"))))?;
        Self::from_value(&value)
    }

    /// The article as the JSON value written into `news.raw.v1` events.
    pub fn to_value(&self) -> Value {
        // Serializing plain strings, numbers and arrays cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl<'de> Deserialize<'de> for Article {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Article::read(&value).map_err(serde::de::Error::custom)
    }
}

fn serialize_date<S: Serializer>(date: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&date.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn read_fields(obj: &Map<String, Value>, link: Option<&str>) -> Result<Article, RejectedArticle> {
    let date = read_date(obj.get("date")).map_err(|reason| RejectedArticle::new("date", reason))?;
    let title = match obj.get("title") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(RejectedArticle::new(
                "title",
                format!("expected a string, got {}", kind(other)),
            ))
        }
        None => return Err(RejectedArticle::new("title", "missing")),
    };
    let link = match (link, obj.get("link")) {
        (Some(l), _) => l.to_string(),
        (None, Some(Value::String(_))) => return Err(RejectedArticle::new("link", "empty")),
        (None, Some(other)) => {
            return Err(RejectedArticle::new(
                "link",
                format!("expected a string, got {}", kind(other)),
            ))
        }
        (None, None) => return Err(RejectedArticle::new("link", "missing")),
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            return Err(RejectedArticle::new(
                "content",
                format!("expected a string, got {}", kind(other)),
            ))
        }
    };
    let symbols = string_list(obj.get("symbols"), "symbols")?;
    let tags = string_list(obj.get("tags"), "tags")?;
    let sentiment = match obj.get("sentiment") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s)) => read_sentiment(s)?,
        Some(other) => {
            return Err(RejectedArticle::new(
                "sentiment",
                format!("expected an object, got {}", kind(other)),
            ))
        }
    };
    Ok(Article {
        date,
        title,
        content,
        link,
        symbols,
        tags,
        sentiment,
    })
}

/// A sentiment object without `polarity` carries nothing the pipeline can use: it reads as no
/// sentiment (tolerated), but a score that is present must be a number.
fn read_sentiment(obj: &Map<String, Value>) -> Result<Option<ArticleSentiment>, RejectedArticle> {
    let polarity = score(obj, "polarity", "sentiment.polarity")?;
    let neg = score(obj, "neg", "sentiment.neg")?;
    let neu = score(obj, "neu", "sentiment.neu")?;
    let pos = score(obj, "pos", "sentiment.pos")?;
    Ok(polarity.map(|polarity| ArticleSentiment {
        polarity,
        neg,
        neu,
        pos,
    }))
}

fn score(obj: &Map<String, Value>, key: &str, field: &'static str) -> Result<Option<f64>, RejectedArticle> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| RejectedArticle::new(field, format!("not a finite number: {n}"))),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Some(f)),
            _ => Err(RejectedArticle::new(
                field,
                format!("not a number: {:?}", shorten(s, 32)),
            )),
        },
        Some(other) => Err(RejectedArticle::new(
            field,
            format!("expected a number, got {}", kind(other)),
        )),
    }
}

fn string_list(value: Option<&Value>, field: &'static str) -> Result<Vec<String>, RejectedArticle> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if s.trim().is_empty() => {}
                    Value::String(s) => out.push(s.trim().to_string()),
                    other => {
                        return Err(RejectedArticle::new(
                            field,
                            format!("expected an array of strings, found {}", kind(other)),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(other) => Err(RejectedArticle::new(
            field,
            format!("expected an array, got {}", kind(other)),
        )),
    }
}

/// Reads an article's `date` field (`value` is the field, `None` when absent) with
/// [`parse_article_date`]: the one reader of the date of a `news.raw.v1` article, shared by
/// [`Article`] (the fetcher) and the filter's lenient `RawNews`, so an article the fetcher
/// published is never refused by the filter for its date, nor the other way round.
///
/// # Errors
/// Why the value is not a date, for the caller to report under its own field name (`date`,
/// `article.date`): `missing`, `expected a string, got …`, or `not a date-time: "…"`.
#[inline]
pub(crate) fn read_date(value: Option<&Value>) -> Result<DateTime<Utc>, String> {
    date_of(value.map(|v| match v {
        Value::String(s) => Ok(s.as_str()),
        other => Err(kind(other)),
    }))
}

/// [`read_date`] of a value already told apart: `None` missing, `Err(kind)` not a string.
///
/// # Errors
/// As [`read_date`].
#[inline]
pub(crate) fn date_of(value: Option<Result<&str, &'static str>>) -> Result<DateTime<Utc>, String> {
    match value {
        Some(Ok(s)) => parse_article_date(s).ok_or_else(|| not_a_date(s)),
        Some(Err(kind)) => Err(format!("expected a string, got {kind}")),
        None => Err("missing".to_string()),
    }
}

#[cold]
fn not_a_date(s: &str) -> String {
    format!("not a date-time: {:?}", shorten(s, 64))
}

/// Parses an article date: RFC 3339 (`Z`, `+00:00`, any offset), offsets without a colon or
/// minutes (`+0000`, `+05`), a space instead of `T`, no offset (read as UTC), or a bare date
/// (midnight UTC). Returns UTC.
///
/// RFC 3339, what EODHD documents and what the fetcher writes, is tried first and inline: it
/// is on the filter's hot path (one date per event); the other forms are the cold path.
#[inline]
pub fn parse_article_date(text: &str) -> Option<DateTime<Utc>> {
    let s = text.trim();
    match DateTime::parse_from_rfc3339(s) {
        Ok(d) => Some(d.with_timezone(&Utc)),
        Err(_) => parse_other_date(s),
    }
}

/// The forms of [`parse_article_date`] other than RFC 3339.
#[cold]
fn parse_other_date(s: &str) -> Option<DateTime<Utc>> {
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(s, fmt) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(d.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// What a JSON value is, for error messages: `null`, `a string`, `an object`, ...
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    /// What [`Article::from_value`] says is wrong with `v`.
    fn rejected(v: &Value) -> RejectedArticle {
        match Article::from_value(v) {
            Err(Error::InvalidArticle(r)) => r,
            other => panic!("expected an invalid article, got {other:?}"),
        }
    }

    fn full() -> Value {
        json!({
            "date": "2024-06-05T20:35:00+00:00",
            "title": "Apple unveils new chips",
            "content": "Apple Inc. said...",
            "link": "https://finance.yahoo.com/news/apple-chips.html",
            "symbols": ["AAPL.US", "NVDA.US"],
            "tags": ["TECH"],
            "sentiment": {"polarity": 0.997, "neg": 0.024, "neu": 0.871, "pos": 0.105}
        })
    }

    /// The documented shape reads into every field, in UTC.
    #[test]
    fn documented_shape_reads_completely() {
        let a = Article::from_value(&full()).unwrap();
        assert_eq!(a.date, Utc.with_ymd_and_hms(2024, 6, 5, 20, 35, 0).unwrap());
        assert_eq!(a.symbols, vec!["AAPL.US", "NVDA.US"]);
        assert_eq!(a.tags, vec!["TECH"]);
        let s = a.sentiment.unwrap();
        assert_eq!(
            (s.polarity, s.neg, s.neu, s.pos),
            (0.997, Some(0.024), Some(0.871), Some(0.105))
        );
    }

    /// Missing content, symbols, tags and sentiment are tolerated, and extra fields ignored.
    #[test]
    fn missing_optional_fields_and_extra_fields_are_tolerated() {
        let a = Article::from_value(&json!({
            "date": "2024-06-05T20:35:00Z",
            "title": "t",
            "link": "https://x/1",
            "symbols": [],
            "sentiment": null,
            "source": "extra",
            "image": {"url": "https://x/i.png"}
        }))
        .unwrap();
        assert_eq!(a.content, "");
        assert!(a.symbols.is_empty() && a.tags.is_empty());
        assert_eq!(a.sentiment, None);
    }

    /// A sentiment with only polarity keeps the polarity; one without it reads as none.
    #[test]
    fn sentiment_with_only_polarity_is_kept_and_without_polarity_is_none() {
        let mut v = full();
        v["sentiment"] = json!({"polarity": "0.5", "sentiment": "positive"});
        let s = Article::from_value(&v).unwrap().sentiment.unwrap();
        assert_eq!((s.polarity, s.neg, s.neu, s.pos), (0.5, None, None, None));
        v["sentiment"] = json!({});
        assert_eq!(Article::from_value(&v).unwrap().sentiment, None);
        v["sentiment"] = json!({"neg": 0.1});
        assert_eq!(Article::from_value(&v).unwrap().sentiment, None);
    }

    /// A sentiment score given as text must be a finite number: "NaN" and "inf" parse as
    /// floats but are rejected, naming the field, like a non-finite JSON number would be.
    #[test]
    fn a_sentiment_score_written_as_nan_or_infinity_is_rejected() {
        for text in ["NaN", "inf", "-infinity"] {
            let mut v = full();
            v["sentiment"] = json!({"polarity": text});
            assert_eq!(rejected(&v).field, "sentiment.polarity", "{text}");
            v["sentiment"] = json!({"polarity": 0.5, "neu": text});
            assert_eq!(rejected(&v).field, "sentiment.neu", "{text}");
        }
        let mut v = full();
        v["sentiment"] = json!({"polarity": " -0.25 "});
        assert_eq!(Article::from_value(&v).unwrap().sentiment.unwrap().polarity, -0.25);
    }

    /// A rejection quotes the offending value, cut to 64 characters (32 for a score) with an
    /// ellipsis, so a huge garbage field does not end up whole in a dead letter's reason.
    #[test]
    fn a_rejection_quotes_the_value_cut_short() {
        let mut v = full();
        v["date"] = json!("yesterday");
        assert_eq!(rejected(&v).reason, r#"not a date-time: "yesterday""#);
        let exactly = "x".repeat(64);
        v["date"] = json!(exactly);
        assert_eq!(rejected(&v).reason, format!("not a date-time: {exactly:?}"));
        v["date"] = json!("é".repeat(100));
        assert_eq!(
            rejected(&v).reason,
            format!("not a date-time: {:?}", "é".repeat(64) + "…")
        );
        let mut v = full();
        v["sentiment"] = json!({"polarity": "y".repeat(40)});
        assert_eq!(rejected(&v).reason, format!("not a number: {:?}", "y".repeat(32) + "…"));
    }

    /// Blank entries of `symbols` and `tags` are dropped, the others trimmed.
    #[test]
    fn blank_symbols_and_tags_are_dropped_and_the_rest_trimmed() {
        let mut v = full();
        v["symbols"] = json!(["", " AAPL.US ", "  \t"]);
        v["tags"] = json!([" ", "TECH"]);
        let a = Article::from_value(&v).unwrap();
        assert_eq!(a.symbols, ["AAPL.US"]);
        assert_eq!(a.tags, ["TECH"]);
    }

    /// Every date shape seen in the wild parses, and odd offsets are converted to UTC.
    #[test]
    fn odd_date_offsets_parse_to_utc() {
        let at = |h, m| Utc.with_ymd_and_hms(2024, 6, 5, h, m, 0).unwrap();
        let cases = [
            ("2024-06-05T20:35:00Z", at(20, 35)),
            ("2024-06-05T20:35:00+00:00", at(20, 35)),
            ("2024-06-05T20:35:00.000+00:00", at(20, 35)),
            ("2024-06-05T22:35:00+0200", at(20, 35)),
            ("2024-06-06T02:05:00+05:30", at(20, 35)),
            ("2024-06-05T16:35:00-04:00", at(20, 35)),
            ("2024-06-05T23:35:00+03", at(20, 35)),
            ("2024-06-05 20:35:00+00:00", at(20, 35)),
            ("2024-06-05T20:35:00", at(20, 35)),
            ("2024-06-05 20:35:00", at(20, 35)),
            (" 2024-06-05T20:35:00Z ", at(20, 35)),
            ("2024-06-05", at(0, 0)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_article_date(text), Some(want), "{text}");
        }
    }

    /// Garbage is rejected with an error naming the field (and the link, for logs).
    #[test]
    fn garbage_is_rejected_naming_the_field() {
        let cases: [(&str, Value, &str); 10] = [
            ("date", json!("yesterday"), "date"),
            ("date", json!(1717619700), "date"),
            ("title", json!(42), "title"),
            ("title", Value::Null, "title"),
            ("link", json!(""), "link"),
            ("content", json!({"html": "<p>"}), "content"),
            ("symbols", json!("AAPL.US"), "symbols"),
            ("tags", json!([1, 2]), "tags"),
            ("sentiment", json!("positive"), "sentiment"),
            ("sentiment", json!({"polarity": "very"}), "sentiment.polarity"),
        ];
        for (key, bad, field) in cases {
            let mut v = full();
            v[key] = bad.clone();
            let err = rejected(&v);
            assert_eq!(err.field, field, "{key}={bad}: {err}");
            assert!(err.to_string().contains(field), "{err}");
            if key != "link" {
                assert_eq!(
                    err.link.as_deref(),
                    Some("https://finance.yahoo.com/news/apple-chips.html")
                );
            }
        }
        let mut v = full();
        v.as_object_mut().unwrap().remove("date");
        assert_eq!(rejected(&v).field, "date");
        assert_eq!(rejected(&json!([1])).field, "article");
        match Article::from_json("{nope") {
            Err(Error::InvalidArticle(r)) => assert_eq!(r.field, "article"),
            other => panic!("expected an invalid article, got {other:?}"),
        }
    }

    /// The written form is the contract's shape and reads back to the same article.
    #[test]
    fn serialized_form_is_the_contract_shape_and_round_trips() {
        let mut v = full();
        v["date"] = json!("2024-06-05T22:35:00+02:00");
        let a = Article::from_value(&v).unwrap();
        let out = a.to_value();
        assert_eq!(out["date"], json!("2024-06-05T20:35:00Z"));
        let keys: Vec<&str> = out.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["date", "title", "content", "link", "symbols", "tags", "sentiment"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        assert_eq!(
            out["sentiment"],
            json!({"polarity": 0.997, "neg": 0.024, "neu": 0.871, "pos": 0.105})
        );
        let back: Article = serde_json::from_value(out).unwrap();
        assert_eq!(back, a);

        let mut bare = a;
        bare.sentiment = None;
        assert_eq!(bare.to_value()["sentiment"], Value::Null);
        assert_eq!(serde_json::from_value::<Article>(bare.to_value()).unwrap(), bare);
    }

    /// Serde reading goes through the same validation.
    #[test]
    fn serde_reading_reports_the_field() {
        let mut v = full();
        v["date"] = json!("soon");
        let err = serde_json::from_value::<Article>(v).unwrap_err();
        assert!(err.to_string().contains("`date`"), "{err}");
    }
}
