//! [`NewsQuery`]: one `/api/news` request, and its query string.

use std::fmt;

use chrono::NaiveDate;
use url::Url;

use crate::eodhd_config::MAX_PAGE_LIMIT;
use crate::error::{Error, Result};

/// What the news is about: one ticker (`s`) or one topic tag (`t`). EODHD needs exactly one;
/// when a caller has both, the ticker wins (as in EODHD's own Python client).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A ticker, `CODE.EXCHANGE`, e.g. `AAPL.US` (`s=`).
    Symbol(String),
    /// A topic tag, e.g. `earnings report` (`t=`; URL-encoded).
    Tag(String),
}

/// One news request: subject, date window, and page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewsQuery {
    /// The ticker or tag.
    pub subject: Subject,
    /// First day (UTC) of the window, inclusive (`from=YYYY-MM-DD`). EODHD takes dates only.
    pub from: Option<NaiveDate>,
    /// Last day (UTC) of the window, inclusive (`to=YYYY-MM-DD`).
    pub to: Option<NaiveDate>,
    /// Articles to skip (`offset`). Default 0.
    pub offset: u32,
    /// Page size (`limit`), 1 to 1000; `None` uses the client's `page_limit`.
    pub limit: Option<u32>,
}

impl NewsQuery {
    /// News about one ticker, e.g. `AAPL.US`.
    pub fn symbol(symbol: impl Into<String>) -> Self {
        Self::new(Subject::Symbol(symbol.into()))
    }

    /// News with one topic tag.
    pub fn tag(tag: impl Into<String>) -> Self {
        Self::new(Subject::Tag(tag.into()))
    }

    fn new(subject: Subject) -> Self {
        NewsQuery {
            subject,
            from: None,
            to: None,
            offset: 0,
            limit: None,
        }
    }

    /// Sets the date window (inclusive UTC days; `None` leaves that end open).
    #[must_use]
    pub fn with_window(mut self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// Sets `offset`.
    #[must_use]
    pub fn with_offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }

    /// Sets `limit`.
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Checks what EODHD would reject.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`].
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidQuery { reason });
        match &self.subject {
            Subject::Symbol(s) if s.trim().is_empty() => return bad("the symbol is empty".into()),
            Subject::Tag(t) if t.trim().is_empty() => return bad("the tag is empty".into()),
            _ => {}
        }
        if let Some(limit) = self.limit {
            if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
                return bad(format!("limit {limit} is outside 1..={MAX_PAGE_LIMIT}"));
            }
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return bad(format!("from {from} is after to {to}"));
            }
        }
        Ok(())
    }

    /// Appends the query parameters, without the key, with `limit` resolved.
    pub(crate) fn append_to(&self, url: &mut Url, limit: u32) {
        let mut q = url.query_pairs_mut();
        match &self.subject {
            Subject::Symbol(s) => q.append_pair("s", s.trim()),
            Subject::Tag(t) => q.append_pair("t", t.trim()),
        };
        if let Some(from) = self.from {
            q.append_pair("from", &from.format("%Y-%m-%d").to_string());
        }
        if let Some(to) = self.to {
            q.append_pair("to", &to.format("%Y-%m-%d").to_string());
        }
        q.append_pair("offset", &self.offset.to_string());
        q.append_pair("limit", &limit.to_string());
        q.append_pair("fmt", "json");
    }
}

/// The query string without the key (`s=AAPL.US&from=2026-05-03&offset=0&limit=100&fmt=json`),
/// for logs and the `source_query` of `news.raw.v1` events. Without an explicit `limit` it
/// shows `limit=default`.
impl fmt::Display for NewsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A dummy base: only the query string is shown.
        let mut url = Url::parse("http://q/").map_err(|_| fmt::Error)?;
        self.append_to(&mut url, self.limit.unwrap_or(0));
        let q = url.query().unwrap_or_default();
        match self.limit {
            Some(_) => f.write_str(q),
            None => f.write_str(&q.replace("limit=0", "limit=default")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, d).unwrap()
    }

    /// The parameters are EODHD's, tags are URL-encoded, and the key is not among them.
    #[test]
    fn query_string_has_the_documented_parameters() {
        let q = NewsQuery::symbol("AAPL.US")
            .with_window(Some(day(3)), Some(day(4)))
            .with_offset(100);
        let mut url = Url::parse("https://eodhd.com/api/news").unwrap();
        q.append_to(&mut url, 50);
        assert_eq!(
            url.as_str(),
            "https://eodhd.com/api/news?s=AAPL.US&from=2026-05-03&to=2026-05-04&offset=100&limit=50&fmt=json"
        );
        let t = NewsQuery::tag("balance sheet&co").with_limit(5);
        assert_eq!(t.to_string(), "t=balance+sheet%26co&offset=0&limit=5&fmt=json");
        assert_eq!(
            NewsQuery::symbol("MSFT.US").to_string(),
            "s=MSFT.US&offset=0&limit=default&fmt=json"
        );
    }

    /// Empty subjects, out-of-range limits and reversed windows are rejected before sending.
    #[test]
    fn invalid_queries_are_rejected() {
        assert!(NewsQuery::symbol(" ").validate().is_err());
        assert!(NewsQuery::tag("").validate().is_err());
        assert!(NewsQuery::symbol("A").with_limit(0).validate().is_err());
        assert!(NewsQuery::symbol("A").with_limit(1001).validate().is_err());
        assert!(NewsQuery::symbol("A")
            .with_window(Some(day(4)), Some(day(3)))
            .validate()
            .is_err());
        NewsQuery::symbol("A")
            .with_limit(1000)
            .with_window(Some(day(4)), Some(day(4)))
            .validate()
            .unwrap();
    }
}
