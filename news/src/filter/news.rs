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
use serde_json::Value;

use serde_json::value::RawValue;

use super::json::{self, Object};
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
    /// extension, used when `data.ticker` is missing. Only the fields below are parsed.
    ///
    /// Lenient where the rules do not care (missing title, content or sentiment, a polarity that is
    /// not a number), strict where they do.
    ///
    /// # Errors
    /// [`Error::InvalidData`] naming the field: `data` not an object, no ticker, no
    /// `article` object, or an `article.date` that is missing or not a date-time.
    pub fn from_json(data: &'a str, ticker_extension: Option<&'a str>) -> Result<Self, Error> {
        let obj = Object::parse(data).ok_or_else(|| not_an_object(data))?;
        Self::from_object(&obj, ticker_extension)
    }

    /// As [`RawNews::from_json`], of a parsed value (its text is read into an owned `RawNews`).
    ///
    /// # Errors
    /// As [`RawNews::from_json`].
    pub fn from_data(data: &Value, ticker_extension: Option<&str>) -> Result<Self, Error> {
        RawNews::from_json(&data.to_string(), ticker_extension).map(RawNews::into_owned)
    }

    /// [`RawNews::from_json`] of the payload's top-level members.
    pub(crate) fn from_object(obj: &Object<'a>, ticker_extension: Option<&'a str>) -> Result<Self, Error> {
        let ticker = match obj.get("ticker") {
            None => Self::ticker_from_extension(ticker_extension)?,
            Some(t) if json::is_null(t) => Self::ticker_from_extension(ticker_extension)?,
            Some(t) => match json::string(t) {
                Some(Cow::Borrowed(s)) if !s.trim().is_empty() => Cow::Borrowed(s.trim()),
                Some(Cow::Owned(s)) if !s.trim().is_empty() => Cow::Owned(s.trim().to_string()),
                _ => {
                    return Err(Error::data(
                        "ticker",
                        format!("expected a non-empty string, got {}", json::kind(t)),
                    ))
                }
            },
        };
        let article = match obj.get("article") {
            Some(a) => Object::parse(a.get())
                .ok_or_else(|| Error::data("article", format!("expected an object, got {}", json::kind(a))))?,
            None => return Err(Error::data("article", "missing")),
        };
        let date = article
            .get("date")
            .map(|d| json::string(d).ok_or_else(|| json::kind(d)));
        let date = date_of(date.as_ref().map(|d| d.as_deref().map_err(|kind| *kind)))
            .map_err(|reason| Error::data("article.date", reason))?;
        let text = |field: &'static str, path: &'static str| -> Result<Cow<'a, str>, Error> {
            match article.get(field) {
                None => Ok(Cow::Borrowed("")),
                Some(v) if json::is_null(v) => Ok(Cow::Borrowed("")),
                Some(v) => json::string(v)
                    .ok_or_else(|| Error::data(path, format!("expected a string, got {}", json::kind(v)))),
            }
        };
        let title = text("title", "article.title")?;
        let content = text("content", "article.content")?;
        let polarity = article
            .get("sentiment")
            .and_then(|s| Object::parse(s.get()))
            .and_then(|s| s.get("polarity"))
            .and_then(json::number)
            .filter(|p| (-1.0..=1.0).contains(p));
        Ok(RawNews {
            ticker,
            date,
            title,
            content,
            polarity,
        })
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
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
