//! Turning one HTTP reply into articles or an error class.
//!
//! Never assume JSON: EODHD error bodies are plain text (`Unauthenticated`), HTML, or JSON
//! objects, whatever the status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use serde_json::Value;

use super::redact::{redact, snippet};
use crate::article::{Article, RejectedArticle};
use crate::error::Error;
use crate::quota::next_reset;

/// A reply as read off the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// The articles of one answered page.
#[derive(Debug, Default)]
pub(crate) struct PageItems {
    pub(crate) articles: Vec<Article>,
    pub(crate) rejected: Vec<RejectedArticle>,
    /// Items in the JSON array, valid or not: what the short-page check counts.
    pub(crate) received: usize,
}

impl Reply {
    fn content_type(&self) -> Option<String> {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string())
    }

    fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }

    /// `X-RateLimit-Limit`, when sent.
    pub(crate) fn rate_limit_limit(&self) -> Option<u64> {
        self.header_u64("x-ratelimit-limit")
    }

    /// `X-RateLimit-Remaining`, when sent.
    pub(crate) fn rate_limit_remaining(&self) -> Option<u64> {
        self.header_u64("x-ratelimit-remaining")
    }

    /// `Retry-After`, as seconds or an HTTP date.
    fn retry_after(&self, now: DateTime<Utc>) -> Option<Duration> {
        let text = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = text.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at = DateTime::parse_from_rfc2822(text).ok()?.with_timezone(&Utc);
        Some((at - now).to_std().unwrap_or(Duration::ZERO))
    }

    /// Classifies the reply: a page of articles, or the error class of its status and body.
    pub(crate) fn into_page(self, key: &str, now: DateTime<Utc>) -> Result<PageItems, Error> {
        let detail = || snippet(&self.body, key);
        let body_text = String::from_utf8_lossy(&self.body);
        if body_text.trim().eq_ignore_ascii_case("unauthenticated") {
            return Err(Error::Unauthorized {
                status: self.status,
                detail: "Unauthenticated".into(),
            });
        }
        match self.status {
            200..=299 => self.parse_articles(key),
            401 => Err(Error::Unauthorized {
                status: 401,
                detail: detail(),
            }),
            402 => Err(Error::QuotaExhausted {
                resets_at: next_reset(now),
            }),
            403 => Err(Error::Forbidden { detail: detail() }),
            // EODHD's spec lists 404 for "no news"; a JSON body means exactly that, anything else
            // (an HTML "not found" page) more likely a wrong base URL.
            404 if serde_json::from_slice::<Value>(&self.body).is_ok() => Ok(PageItems::default()),
            429 => Err(Error::RateLimited {
                retry_after: self.retry_after(now),
            }),
            300..=399 => {
                let location = self
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| redact(l, key))
                    .unwrap_or_else(|| "nowhere".into());
                Err(Error::Status {
                    status: self.status,
                    detail: format!("unexpected redirect to {location}; check news.eodhd.base_url"),
                })
            }
            500..=599 => Err(Error::Server {
                status: self.status,
                detail: detail(),
            }),
            status => Err(Error::Status {
                status,
                detail: detail(),
            }),
        }
    }

    fn invalid(&self, key: &str, what: &str) -> Error {
        Error::InvalidResponse {
            status: self.status,
            content_type: self.content_type(),
            detail: format!("{what}: {}", snippet(&self.body, key)),
        }
    }

    fn parse_articles(&self, key: &str) -> Result<PageItems, Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(PageItems::default());
        }
        let value: Value = match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => {
                let html = self
                    .content_type()
                    .is_some_and(|c| c.to_ascii_lowercase().contains("html"))
                    || self.body.trim_ascii_start().starts_with(b"<");
                let what = if html {
                    "an HTML page instead of JSON".to_string()
                } else {
                    format!("body is not JSON ({e})")
                };
                return Err(self.invalid(key, &what));
            }
        };
        let items = match value {
            Value::Array(items) => items,
            Value::Object(map) if map.is_empty() => return Ok(PageItems::default()),
            Value::Object(map) if ["errors", "error", "message"].iter().any(|k| map.contains_key(*k)) => {
                return Err(self.invalid(key, "a JSON error object instead of articles"))
            }
            _ => return Err(self.invalid(key, "expected a JSON array of articles")),
        };
        let mut page = PageItems {
            received: items.len(),
            ..PageItems::default()
        };
        for item in &items {
            match Article::read(item) {
                Ok(a) => page.articles.push(a),
                Err(mut e) => {
                    e.reason = redact(&e.reason, key);
                    e.link = e.link.map(|l| redact(&l, key));
                    page.rejected.push(e);
                }
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    use super::*;

    const KEY: &str = "SECRETKEY123";

    fn reply(status: u16, content_type: &str, body: &str) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        Reply {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, 13, 0, 0).unwrap()
    }

    /// Every documented status maps to its error class.
    #[test]
    fn statuses_map_to_error_classes() {
        type Check = fn(&Error) -> bool;
        let cases: [(u16, &str, Check); 8] = [
            (401, "Unauthenticated", |e| {
                matches!(e, Error::Unauthorized { status: 401, .. })
            }),
            (403, "Unauthenticated", |e| {
                matches!(e, Error::Unauthorized { status: 403, .. })
            }),
            (403, "Forbidden", |e| matches!(e, Error::Forbidden { .. })),
            (402, "", |e| {
                e.paused_until() == Some(Utc.with_ymd_and_hms(2026, 5, 5, 0, 0, 0).unwrap())
            }),
            (429, r#"{"error":"API rate limit exceeded"}"#, |e| {
                matches!(e, Error::RateLimited { retry_after: None })
            }),
            (502, "<html>Bad gateway</html>", |e| {
                matches!(e, Error::Server { status: 502, .. })
            }),
            (400, "bad", |e| matches!(e, Error::Status { status: 400, .. })),
            (404, "<html>Not found</html>", |e| {
                matches!(e, Error::Status { status: 404, .. })
            }),
        ];
        for (status, body, check) in cases {
            let err = reply(status, "text/plain", body).into_page(KEY, now()).unwrap_err();
            assert!(check(&err), "{status} {body}: {err:?}");
        }
        let ok = reply(404, "application/json", "[]").into_page(KEY, now()).unwrap();
        assert_eq!(ok.received, 0);
    }

    /// `Retry-After` is read as seconds or as an HTTP date.
    #[test]
    fn retry_after_is_read_as_seconds_or_date() {
        let mut r = reply(429, "text/html", "");
        r.headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(r.retry_after(now()), Some(Duration::from_secs(7)));
        r.headers
            .insert(RETRY_AFTER, HeaderValue::from_static("Mon, 04 May 2026 13:00:30 GMT"));
        assert_eq!(r.retry_after(now()), Some(Duration::from_secs(30)));
    }

    /// HTML with status 200, broken JSON and JSON error objects are invalid responses whose
    /// detail never holds the key.
    #[test]
    fn bodies_that_are_not_an_article_array_are_invalid() {
        let bodies = [
            (
                "text/html",
                format!("<html><body>Error. <a href='/api/news?api_token={KEY}'>retry</a></body></html>"),
            ),
            ("application/json", "[{\"date\": ".to_string()),
            ("application/json", r#"{"errors": "bad things"}"#.to_string()),
            ("application/json", "42".to_string()),
        ];
        for (ct, body) in bodies {
            let err = reply(200, ct, &body).into_page(KEY, now()).unwrap_err();
            assert!(matches!(err, Error::InvalidResponse { status: 200, .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains(KEY), "{err:?}");
        }
    }

    /// An invalid body is described by what it is: an HTML page (by its content type or by its
    /// first character), JSON that does not parse, a JSON error object, or other JSON.
    #[test]
    fn an_invalid_body_says_what_it_was() {
        let cases = [
            ("text/html", "<html>Error</html>", "an HTML page instead of JSON"),
            (
                "application/json",
                "  <html>Error</html>",
                "an HTML page instead of JSON",
            ),
            ("text/HTML; charset=utf-8", "Error", "an HTML page instead of JSON"),
            ("application/json", "[{\"date\": ", "body is not JSON"),
            (
                "application/json",
                r#"{"message": "bad things"}"#,
                "a JSON error object instead of articles",
            ),
            (
                "application/json",
                r#"{"data": []}"#,
                "expected a JSON array of articles",
            ),
            ("application/json", "42", "expected a JSON array of articles"),
        ];
        for (ct, body, what) in cases {
            let err = reply(200, ct, body).into_page(KEY, now()).unwrap_err();
            assert!(err.to_string().contains(what), "{ct} {body:?}: {err}");
        }
    }

    /// A page keeps its valid articles and reports the invalid ones; empty bodies are empty
    /// pages.
    #[test]
    fn invalid_articles_are_reported_and_the_page_kept() {
        let body = r#"[
            {"date":"2026-05-04T10:00:00+00:00","title":"ok","link":"https://x/1"},
            {"date":"not a date","title":"bad","link":"https://x/2"},
            {"date":"2026-05-04T09:00:00Z","title":7,"link":"https://x/3"}
        ]"#;
        let page = reply(200, "application/json", body).into_page(KEY, now()).unwrap();
        assert_eq!(page.received, 3);
        assert_eq!(page.articles.len(), 1);
        let fields: Vec<&str> = page.rejected.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["date", "title"]);
        for empty in ["", "  ", "{}", "[]"] {
            assert_eq!(
                reply(200, "application/json", empty)
                    .into_page(KEY, now())
                    .unwrap()
                    .received,
                0
            );
        }
    }
}
