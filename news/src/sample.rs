//! The bundled sample news: recorded-shape EODHD `/api/news` answers for four tickers, compiled
//! into the crate from `news/data/sample/*.json` (files of this crate, so a build of the binary
//! needs none of the test fixtures), and the date shifting that keeps them fresh.
//!
//! The files are recorded around an anchor (the newest article of the whole set is
//! `2026-05-04T15:30:00+00:00`). Whoever serves them (the test fixtures' mock EODHD, the
//! `mt5-hub demo` command) shifts every parsable date by `now - newest` with
//! [`sample_articles_at`], keeping each date's own UTC offset and style, so the newest article
//! is "now" and freshness rules never rot. `news/data/sample/README.md` lists the special
//! cases each file holds (a duplicate across pages, a malformed article, odd offsets, a long
//! body).
//!
//! The articles stay plain JSON values rather than [`crate::Article`]s: they are what the API
//! sends, malformed items included, so that serving them exercises the client's validation.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

/// The bundled sample files: `(ticker, JSON text)`, each text one JSON array, newest first.
pub const SAMPLE_FILES: &[(&str, &str)] = &[
    ("AAPL.US", include_str!("../data/sample/AAPL.US.json")),
    ("MSFT.US", include_str!("../data/sample/MSFT.US.json")),
    ("NVDA.US", include_str!("../data/sample/NVDA.US.json")),
    ("TSLA.US", include_str!("../data/sample/TSLA.US.json")),
];

/// The tickers of the bundled samples, in [`SAMPLE_FILES`] order.
pub const SAMPLE_TICKERS: &[&str] = &["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"];

/// The bundled sample articles per ticker, with their recorded dates (newest
/// `2026-05-04T15:30:00+00:00`).
///
/// A file that is not a JSON array (only a broken checkout could do that; this crate's tests
/// check every file) gives an empty list.
pub fn sample_articles() -> BTreeMap<String, Vec<Value>> {
    SAMPLE_FILES
        .iter()
        .map(|(ticker, text)| {
            let items = match serde_json::from_str(text) {
                Ok(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            (ticker.to_string(), items)
        })
        .collect()
}

/// The bundled sample articles with every parsable date shifted so the newest is `now`.
pub fn sample_articles_at(now: DateTime<Utc>) -> BTreeMap<String, Vec<Value>> {
    let mut all = sample_articles();
    if let Some(newest) = all.values().flat_map(|v| v.iter()).filter_map(article_date).max() {
        let by = now - newest;
        for items in all.values_mut() {
            shift_dates(items, by);
        }
    }
    all
}

/// The article's `date` in UTC, when it is a valid RFC 3339 date-time.
pub fn article_date(article: &Value) -> Option<DateTime<Utc>> {
    let text = article.get("date")?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|d| d.with_timezone(&Utc))
}

/// Moves every parsable `date` by `by`, keeping its UTC offset and its style (`Z` or
/// `+hh:mm`); others are left alone.
pub fn shift_dates(articles: &mut [Value], by: TimeDelta) {
    for article in articles {
        let Some(Value::String(text)) = article.get_mut("date") else {
            continue;
        };
        if let Ok(d) = DateTime::parse_from_rfc3339(text) {
            let use_z = text.ends_with('Z') || text.ends_with('z');
            *text = (d + by).to_rfc3339_opts(SecondsFormat::Secs, use_z);
        }
    }
}

/// What a `GET /api/news` query asks for, as a server of the samples reads it: `s` (one
/// ticker or a comma list) or `t` (a tag), `from`/`to` (UTC days, inclusive), `offset`
/// (default 0) and `limit` (default 50, 1..=1000). The key (`api_token`) is the server's
/// business.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleQuery {
    /// Upper-case tickers (`s`), or empty when a tag was asked for.
    pub symbols: Vec<String>,
    /// The tag (`t`), when no ticker was given.
    pub tag: Option<String>,
    /// First UTC day.
    pub from: Option<NaiveDate>,
    /// Last UTC day.
    pub to: Option<NaiveDate>,
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
}

impl SampleQuery {
    /// Reads the query parameters (the last value of each name).
    ///
    /// # Errors
    /// What EODHD would answer with 400: no `s` and no `t`, a date that is not `YYYY-MM-DD`, a
    /// number that is not one, a `limit` outside 1..=1000.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<SampleQuery, String> {
        let (symbols, tag) = match (params.get("s"), params.get("t")) {
            (Some(s), _) if !s.trim().is_empty() => (
                s.split(',')
                    .map(|x| x.trim().to_ascii_uppercase())
                    .filter(|x| !x.is_empty())
                    .collect(),
                None,
            ),
            (_, Some(t)) if !t.trim().is_empty() => (Vec::new(), Some(t.trim().to_string())),
            _ => return Err("s or t is required".into()),
        };
        let date = |name: &str| -> Result<Option<NaiveDate>, String> {
            params
                .get(name)
                .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| format!("{name} must be YYYY-MM-DD")))
                .transpose()
        };
        let number = |name: &str, default: usize| -> Result<usize, String> {
            params.get(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| format!("{name} must be an integer"))
            })
        };
        let limit = number("limit", 50)?;
        if !(1..=1000).contains(&limit) {
            return Err("limit must be within 1..1000".into());
        }
        Ok(SampleQuery {
            symbols,
            tag,
            from: date("from")?,
            to: date("to")?,
            offset: number("offset", 0)?,
            limit,
        })
    }

    /// The page of `articles` (per upper-case ticker, newest first) this query asks for. One
    /// ticker: its list as it is (duplicates included, as EODHD repeats items across pages).
    /// Several tickers or a tag: one copy of each link, newest first. Then the date window (an
    /// article without a parsable date is in every window), `offset` and `limit`.
    pub fn select(&self, articles: &BTreeMap<String, Vec<Value>>) -> Vec<Value> {
        let mut found: Vec<Value> = match (&self.tag, self.symbols.as_slice()) {
            (None, [one]) => articles.get(one).cloned().unwrap_or_default(),
            (None, many) => {
                let mut all: Vec<Value> = many.iter().filter_map(|s| articles.get(s)).flatten().cloned().collect();
                dedupe_and_sort(&mut all);
                all
            }
            (Some(tag), _) => {
                let mut all: Vec<Value> = articles
                    .values()
                    .flatten()
                    .filter(|a| {
                        a.get("tags").and_then(Value::as_array).is_some_and(|tags| {
                            tags.iter()
                                .any(|t| t.as_str().is_some_and(|t| t.eq_ignore_ascii_case(tag)))
                        })
                    })
                    .cloned()
                    .collect();
                dedupe_and_sort(&mut all);
                all
            }
        };
        found.retain(|a| match article_date(a) {
            Some(d) => {
                let day = d.date_naive();
                self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
            }
            // The malformed article: the real server would have a date for it.
            None => true,
        });
        found.into_iter().skip(self.offset).take(self.limit).collect()
    }
}

/// One copy of each link, newest first (undated last).
fn dedupe_and_sort(articles: &mut Vec<Value>) {
    let mut seen = HashSet::new();
    articles.retain(|a| {
        let link = a.get("link").and_then(Value::as_str).unwrap_or_default().to_string();
        seen.insert(link)
    });
    articles.sort_by_key(|a| std::cmp::Reverse(article_date(a)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bundled file is a non-empty JSON array, and the tickers match the files.
    #[test]
    fn every_sample_file_is_a_json_array() {
        let tickers: Vec<&str> = SAMPLE_FILES.iter().map(|(t, _)| *t).collect();
        assert_eq!(tickers, SAMPLE_TICKERS);
        for (ticker, text) in SAMPLE_FILES {
            let v: Value = serde_json::from_str(text).unwrap();
            assert!(v.as_array().is_some_and(|a| !a.is_empty()), "{ticker}");
        }
        assert_eq!(sample_articles()["AAPL.US"].len(), 24);
    }

    /// Shifting moves the newest date to `now` and keeps offsets, styles and unparsable dates.
    #[test]
    fn shifting_makes_the_newest_article_now() {
        let now = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let shifted = sample_articles_at(now);
        let newest = shifted.values().flatten().filter_map(article_date).max().unwrap();
        assert_eq!(newest, now);
        assert!(shifted["NVDA.US"]
            .iter()
            .any(|a| a["date"].as_str().is_some_and(|d| d.ends_with("+05:30"))));
        assert_eq!(shifted["TSLA.US"][3]["date"], "sometime last week");

        let mut one = vec![serde_json::json!({"date": "2026-05-04T15:30:00Z"})];
        shift_dates(&mut one, TimeDelta::hours(1));
        assert_eq!(one[0]["date"], "2026-05-04T16:30:00Z");
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Queries select by ticker, list, tag, window and page, like EODHD.
    #[test]
    fn queries_select_like_eodhd() {
        let all = sample_articles();
        let q = SampleQuery::parse(&params(&[("s", "aapl.us"), ("limit", "10"), ("offset", "20")])).unwrap();
        assert_eq!(q.select(&all).len(), 4);
        let q = SampleQuery::parse(&params(&[("s", "AAPL.US,MSFT.US")])).unwrap();
        let both = SampleQuery { limit: 1000, ..q }.select(&all);
        assert!(both.len() < 24 + 11, "one copy of the shared article");
        let q = SampleQuery::parse(&params(&[("s", "MSFT.US"), ("from", "2030-01-01")])).unwrap();
        assert!(q.select(&all).is_empty());
        assert!(SampleQuery::parse(&params(&[("limit", "5")])).is_err());
        assert!(SampleQuery::parse(&params(&[("s", "X"), ("limit", "0")])).is_err());
        assert!(SampleQuery::parse(&params(&[("s", "X"), ("from", "May 1")])).is_err());
        let q = SampleQuery::parse(&params(&[("t", "earnings")])).unwrap();
        assert_eq!(q.tag.as_deref(), Some("earnings"));
        // A blank `s` is no ticker: the tag decides, and blank both is the 400 of neither.
        let q = SampleQuery::parse(&params(&[("s", " "), ("t", "earnings")])).unwrap();
        assert!(q.symbols.is_empty());
        assert_eq!(q.tag.as_deref(), Some("earnings"));
        assert!(SampleQuery::parse(&params(&[("s", " ")])).is_err());
        assert!(SampleQuery::parse(&params(&[("t", " ")])).is_err());
        assert!(SampleQuery::parse(&params(&[("s", ""), ("t", "")])).is_err());
    }
}
