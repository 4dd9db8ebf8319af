//! The EODHD news client: `GET <base_url>/api/news` with rate limiting, quota accounting, a
//! circuit breaker and retries, returning typed articles or a typed error class.
//!
//! One page request ([`EodhdClient::news`]) goes through, in order:
//! 1. fast failures, with no request sent: a key EODHD already rejected, a paused quota, an
//!    open circuit;
//! 2. the requests-per-minute limiter (waits, cancellably);
//! 3. the request, with the per-request timeout;
//! 4. classification of the reply ([`crate::Error`]), quota and breaker bookkeeping, metrics;
//! 5. on 429, 5xx, timeouts and connection errors: a wait (`Retry-After`, else capped
//!    exponential backoff with jitter) and another attempt, up to `retry.max_attempts`.
//!
//! [`EodhdClient::news_all`] walks pages (`offset += limit`) until a short page or the page
//! cap, de-duplicating by link; a page with an invalid body is skipped and the walk goes on.
//!
//! The key is only ever in the request URL. It never reaches a log line, an error (transport
//! errors are stored `without_url()`, body snippets are redacted), a metric, or `Debug`.
//!
//! # Example
//! ```no_run
//! use mt5_bus::Secret;
//! use mt5_news::{EodhdClient, EodhdConfig, NewsMetrics, NewsQuery};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn example() -> mt5_news::Result<()> {
//! let key = std::env::var("EODHD_API_KEY").unwrap_or_default();
//! let cfg = EodhdConfig::default().with_api_key(Secret::new(key));
//! let client = EodhdClient::new(&cfg, NewsMetrics::default(), CancellationToken::new())?;
//! let today = chrono::Utc::now().date_naive();
//! let query = NewsQuery::symbol("AAPL.US").with_window(Some(today), Some(today));
//! let batch = client.news_all(&query, cfg.page_cap).await?;
//! for article in &batch.articles {
//!     println!("{} {}", article.date, article.title);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! - `query`: [`NewsQuery`] and [`Subject`].
//! - `response`: reply classification and article parsing.
//! - `metrics`: [`NewsMetrics`].
//! - `redact`: masking the key in text.

pub mod metrics;
mod query;
mod redact;
mod response;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mt5_bus::Backoff;
use mt5_bus::{InvalidConfig, Secret};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::article::{Article, RejectedArticle};
use crate::circuit_breaker::{CircuitBreaker, CircuitState};
use crate::eodhd_config::EodhdConfig;
use crate::error::{Error, Result};
use crate::quota::QuotaTracker;
use crate::rate_limit::RequestRateLimiter;
pub use metrics::NewsMetrics;
pub use query::{NewsQuery, Subject};
use response::Reply;

/// Largest response body read, in bytes; a larger one is an invalid response.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// One answered page.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewsPage {
    /// The valid articles, in the order EODHD sent them (newest first, as observed).
    pub articles: Vec<Article>,
    /// The items that failed validation, each naming its field; skipped.
    pub rejected: Vec<RejectedArticle>,
    /// Items in the reply, valid or not.
    pub received: usize,
    /// The page's `offset`.
    pub offset: u32,
    /// The page's `limit`.
    pub limit: u32,
}

impl NewsPage {
    /// Whether the page held fewer items than asked for: the last page.
    pub fn is_short(&self) -> bool {
        self.received < self.limit as usize
    }
}

/// A page that answered with an invalid body and was skipped.
#[derive(Debug)]
#[non_exhaustive]
pub struct SkippedPage {
    /// Its `offset`.
    pub offset: u32,
    /// The [`Error::InvalidResponse`].
    pub error: Error,
}

/// The result of a paginated fetch.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct NewsBatch {
    /// Unique articles (first occurrence of each link), in the order received.
    pub articles: Vec<Article>,
    /// Items that failed validation, each naming its field.
    pub rejected: Vec<RejectedArticle>,
    /// Pages answered with articles (or none).
    pub pages: u32,
    /// Articles dropped because their link came earlier in the walk.
    pub duplicates: usize,
    /// Pages skipped because their body was invalid.
    pub skipped: Vec<SkippedPage>,
    /// Whether a short page ended the walk (otherwise the page cap did).
    pub reached_end: bool,
}

impl NewsBatch {
    /// Whether every page up to the end was read: a short page was reached and none was
    /// skipped. A fetcher should only advance its cursor past a complete batch.
    pub fn is_complete(&self) -> bool {
        self.reached_end && self.skipped.is_empty()
    }
}

/// A rejection of the key, remembered so later calls fail fast.
#[derive(Clone, Debug)]
struct AuthFailure {
    status: u16,
    detail: String,
}

struct Inner {
    http: reqwest::Client,
    /// `<base_url>/api/news`, without any query.
    endpoint: Url,
    key: Secret,
    cfg: EodhdConfig,
    limiter: RequestRateLimiter,
    breaker: CircuitBreaker,
    // std mutexes: every critical section is a few field updates, never held across an await.
    quota: Mutex<QuotaTracker>,
    auth_failure: Mutex<Option<AuthFailure>>,
    metrics: NewsMetrics,
    cancel: CancellationToken,
}

/// The EODHD news client. Cheap to clone: clones share the HTTP connections, the rate
/// limiter, the quota, the breaker and the remembered key rejection.
#[derive(Clone)]
pub struct EodhdClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for EodhdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EodhdClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("api_key", &self.inner.key)
            .field("circuit", &self.circuit_state())
            .field("paused_until", &self.paused_until())
            .field("auth_failed", &self.auth_failed())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::Timeout { timeout }
    } else if e.is_connect() {
        Error::Connect { source: e }
    } else {
        Error::Transport { source: e }
    }
}

impl EodhdClient {
    /// A client for `cfg`, counting into `metrics`; `cancel` ends waits and requests in flight
    /// with [`Error::Cancelled`].
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `cfg` or an empty `api_key`.
    pub fn new(cfg: &EodhdConfig, metrics: NewsMetrics, cancel: CancellationToken) -> Result<Self> {
        cfg.validate()?;
        if cfg.api_key.expose().trim().is_empty() {
            return Err(InvalidConfig::new("news.eodhd.api_key", "is empty; set EODHD_API_KEY").into());
        }
        let mut endpoint = cfg.parsed_base_url()?;
        endpoint
            .path_segments_mut()
            .map_err(|()| InvalidConfig::new("news.eodhd.base_url", "cannot be a base"))?
            .pop_if_empty()
            .extend(["api", "news"]);
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            // A redirect would re-send the key to wherever it points, and reqwest logs the
            // redirect URL (with the key) at debug level.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mt5-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                InvalidConfig::new(
                    "news.eodhd",
                    format!("cannot build the HTTP client: {}", e.without_url()),
                )
            })?;
        let breaker = CircuitBreaker::new(&cfg.circuit_breaker)?.with_gauge(metrics.circuit_state.clone());
        let quota = QuotaTracker::new(&cfg.quota, Utc::now());
        metrics.quota_remaining.set(gauge_value(quota.remaining(Utc::now())));
        Ok(EodhdClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                key: cfg.api_key.clone(),
                cfg: cfg.clone(),
                limiter: RequestRateLimiter::new(&cfg.rate_limit)?,
                breaker,
                quota: Mutex::new(quota),
                auth_failure: Mutex::new(None),
                metrics,
                cancel,
            }),
        })
    }

    /// Fetches one page.
    ///
    /// # Errors
    /// The error class of the failure (see [`crate::Error`]): after bounded retries for 429,
    /// 5xx, timeouts and connection errors; at once for the others. [`Error::InvalidQuery`]
    /// before anything is sent.
    pub async fn news(&self, query: &NewsQuery) -> Result<NewsPage> {
        query.validate()?;
        let limit = query.limit.unwrap_or(self.inner.cfg.page_limit);
        let retry = &self.inner.cfg.retry;
        let mut backoff = Backoff::new(&retry.backoff());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.attempt(query, limit).await {
                Ok(page) => return Ok(page),
                Err(e) => e,
            };
            if !err.is_retryable_now() {
                return Err(err);
            }
            if attempt >= retry.max_attempts {
                tracing::warn!(query = %query, attempts = attempt, error = %err, "EODHD request failed; giving up until the next round.");
                return Err(err);
            }
            let delay = match &err {
                Error::RateLimited {
                    retry_after: Some(after),
                } => {
                    if *after > retry.max_retry_after() {
                        tracing::warn!(query = %query, retry_after_s = after.as_secs(), "EODHD asked to retry later than news.eodhd.retry.max_retry_after_ms; giving up for now.");
                        return Err(err);
                    }
                    *after
                }
                _ => backoff.next_delay(),
            };
            tracing::info!(query = %query, attempt, delay_ms = delay.as_millis() as u64, error = %err, "EODHD request failed transiently; retrying.");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.inner.cancel.cancelled() => return Err(Error::Cancelled),
            }
        }
    }

    /// Fetches pages from `query.offset` on, `offset += limit`, until a short page or
    /// `page_cap` pages (at least one), de-duplicating articles by link within the call. A page
    /// with an invalid body is skipped (recorded in [`NewsBatch::skipped`]) and the walk goes
    /// on.
    ///
    /// # Errors
    /// The first error other than an invalid body, which ends the walk (the next round
    /// refetches); the first [`Error::InvalidResponse`] when no page could be read at all.
    pub async fn news_all(&self, query: &NewsQuery, page_cap: u32) -> Result<NewsBatch> {
        query.validate()?;
        let limit = query.limit.unwrap_or(self.inner.cfg.page_limit);
        let mut seen = HashSet::new();
        let mut batch = NewsBatch::default();
        let mut offset = query.offset;
        for _ in 0..page_cap.max(1) {
            let page_query = query.clone().with_offset(offset).with_limit(limit);
            match self.news(&page_query).await {
                Ok(page) => {
                    batch.pages += 1;
                    let short = page.is_short();
                    for article in page.articles {
                        if seen.insert(article.link.clone()) {
                            batch.articles.push(article);
                        } else {
                            batch.duplicates += 1;
                        }
                    }
                    batch.rejected.extend(page.rejected);
                    if short {
                        batch.reached_end = true;
                        break;
                    }
                }
                Err(error @ Error::InvalidResponse { .. }) => batch.skipped.push(SkippedPage { offset, error }),
                Err(e) => return Err(e),
            }
            offset = offset.saturating_add(limit);
        }
        if batch.pages == 0 && !batch.skipped.is_empty() {
            return Err(batch.skipped.swap_remove(0).error);
        }
        if !batch.reached_end && batch.skipped.is_empty() {
            tracing::info!(query = %query, pages = batch.pages, "EODHD pagination stopped at the page cap.");
        }
        Ok(batch)
    }

    /// When fetching may resume, while the daily quota is exhausted (402 or the local budget).
    /// A fetcher skips its rounds until then.
    pub fn paused_until(&self) -> Option<DateTime<Utc>> {
        lock(&self.inner.quota).paused_until(Utc::now())
    }

    /// API calls left today (the server's figure when sent, else the local count; 0 while
    /// paused).
    pub fn quota_remaining(&self) -> u64 {
        lock(&self.inner.quota).remaining(Utc::now())
    }

    /// The server's daily quota, from `X-RateLimit-Limit`, when a reply of today sent it (and
    /// `quota.use_headers` is on).
    pub fn quota_limit(&self) -> Option<u64> {
        lock(&self.inner.quota).header_limit(Utc::now())
    }

    /// The circuit breaker's state.
    pub fn circuit_state(&self) -> CircuitState {
        self.inner.breaker.state()
    }

    /// Whether EODHD rejected the key: every call fails fast until
    /// [`EodhdClient::clear_auth_failure`] or a new client (restart, config change).
    pub fn auth_failed(&self) -> bool {
        lock(&self.inner.auth_failure).is_some()
    }

    /// Forgets a key rejection, so the next call asks EODHD again.
    pub fn clear_auth_failure(&self) {
        *lock(&self.inner.auth_failure) = None;
    }

    /// The configuration it runs with (the key prints as `***`).
    pub fn config(&self) -> &EodhdConfig {
        &self.inner.cfg
    }

    /// Its metrics.
    pub fn metrics(&self) -> &NewsMetrics {
        &self.inner.metrics
    }

    fn set_quota_gauge(&self, quota: &QuotaTracker, now: DateTime<Utc>) {
        self.inner
            .metrics
            .quota_remaining
            .set(gauge_value(quota.remaining(now)));
    }

    /// The checks that need no request.
    fn fail_fast(&self) -> Result<()> {
        if let Some(f) = lock(&self.inner.auth_failure).clone() {
            return Err(Error::Unauthorized {
                status: f.status,
                detail: format!("{} (remembered from an earlier request; nothing sent)", f.detail),
            });
        }
        let now = Utc::now();
        let mut quota = lock(&self.inner.quota);
        let was_paused = quota.paused_until(now).is_some();
        let checked = quota.check(now);
        if let Err(e) = &checked {
            if !was_paused {
                tracing::error!(
                    resets_at = %e.paused_until().unwrap_or(now),
                    used_today = quota.used_today(),
                    daily_quota = self.inner.cfg.quota.daily_quota,
                    "The local EODHD daily quota budget is spent; fetching paused until the reset."
                );
            }
            self.set_quota_gauge(&quota, now);
        }
        checked
    }

    /// One request, with its gates and bookkeeping.
    async fn attempt(&self, query: &NewsQuery, limit: u32) -> Result<NewsPage> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let metrics = &self.inner.metrics;
        if let Err(e) = self.fail_fast() {
            metrics.attempt(e.outcome());
            tracing::debug!(query = %query, error = %e, "EODHD request not sent.");
            return Err(e);
        }
        let permit = match self.inner.breaker.try_acquire() {
            Ok(p) => p,
            Err(e) => {
                metrics.attempt(e.outcome());
                tracing::debug!(query = %query, error = %e, "EODHD request not sent.");
                return Err(e);
            }
        };
        self.inner.limiter.acquire(&self.inner.cancel).await?;

        let mut url = self.inner.endpoint.clone();
        query.append_to(&mut url, limit);
        url.query_pairs_mut().append_pair("api_token", self.inner.key.expose());

        let started = Instant::now();
        let sent = tokio::select! {
            r = self.send(url) => r,
            _ = self.inner.cancel.cancelled() => Err(Error::Cancelled),
        };
        let took = started.elapsed();
        let now = Utc::now();
        let result = sent.and_then(|reply| self.book(reply, now));
        permit.record(&result);
        if matches!(result, Err(Error::Cancelled)) {
            return Err(Error::Cancelled);
        }
        metrics.observe(took);
        let items = match result {
            Ok(items) => items,
            Err(e) => {
                metrics.attempt(e.outcome());
                self.on_error(&e, query);
                return Err(e);
            }
        };
        metrics.attempt(metrics::outcome::OK);
        for rejected in &items.rejected {
            tracing::warn!(query = %query, field = rejected.field, link = rejected.link.as_deref().unwrap_or(""), error = %rejected, "Skipped an invalid EODHD article.");
        }
        tracing::debug!(
            query = %query,
            received = items.received,
            articles = items.articles.len(),
            took_ms = took.as_millis() as u64,
            "EODHD news page fetched."
        );
        Ok(NewsPage {
            articles: items.articles,
            rejected: items.rejected,
            received: items.received,
            offset: query.offset,
            limit,
        })
    }

    /// Sends the request and reads the body (capped).
    async fn send(&self, url: Url) -> Result<Reply> {
        let timeout = self.inner.cfg.timeout();
        let mut resp = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transport_error(e, timeout))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(e, timeout))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Error::InvalidResponse {
                    status,
                    content_type: None,
                    detail: format!("body larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body })
    }

    /// Classifies a reply and books it against the quota.
    fn book(&self, reply: Reply, now: DateTime<Utc>) -> Result<response::PageItems> {
        let status = reply.status;
        let limit = reply.rate_limit_limit();
        let remaining = reply.rate_limit_remaining();
        let result = reply.into_page(self.inner.key.expose(), now);
        let mut quota = lock(&self.inner.quota);
        if (200..300).contains(&status) {
            quota.record_request(now, limit, remaining);
        } else if matches!(result, Err(Error::QuotaExhausted { .. })) {
            quota.exhausted(now);
        }
        self.set_quota_gauge(&quota, now);
        result
    }

    /// Logs an error class the way it deserves: a rejected key and an exhausted quota once,
    /// loudly; the rest as the caller decides.
    fn on_error(&self, e: &Error, query: &NewsQuery) {
        match e {
            Error::Unauthorized { status, detail } => {
                let mut remembered = lock(&self.inner.auth_failure);
                if remembered.is_none() {
                    tracing::error!(status, detail = %detail, "EODHD rejected the API key; no more requests until the key changes (check EODHD_API_KEY).");
                    *remembered = Some(AuthFailure {
                        status: *status,
                        detail: detail.clone(),
                    });
                }
            }
            Error::QuotaExhausted { resets_at } => {
                tracing::error!(resets_at = %resets_at, "EODHD says the daily API-call quota is exhausted (HTTP 402); fetching paused until the reset.");
            }
            Error::Forbidden { detail } => {
                tracing::warn!(query = %query, detail = %detail, "EODHD refused the query for this key's plan (HTTP 403).");
            }
            Error::InvalidResponse { .. } => {
                tracing::warn!(query = %query, error = %e, "EODHD sent an invalid response; the page is skipped.");
            }
            Error::Status { .. } => tracing::warn!(query = %query, error = %e, "EODHD refused the request."),
            _ => {}
        }
    }
}

fn gauge_value(remaining: u64) -> i64 {
    i64::try_from(remaining).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}

    /// The client and its futures can be shared and spawned (the fetcher runs tickers as tasks).
    #[tokio::test]
    async fn client_and_its_futures_are_send() {
        let cfg = EodhdConfig::default().with_api_key(Secret::new("k"));
        let client = EodhdClient::new(&cfg, NewsMetrics::unregistered(), CancellationToken::new()).unwrap();
        assert_send_sync(&client);
        let q = NewsQuery::symbol("AAPL.US");
        assert_send(&client.news(&q));
        assert_send(&client.news_all(&q, 1));
    }

    /// A client needs a key, and the endpoint keeps a base URL's path prefix.
    #[test]
    fn a_key_is_required_and_the_endpoint_keeps_the_prefix() {
        let err = EodhdClient::new(
            &EodhdConfig::default(),
            NewsMetrics::unregistered(),
            CancellationToken::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("EODHD_API_KEY"), "{err}");
        let cfg = EodhdConfig::default()
            .with_api_key(Secret::new("k"))
            .with_base_url("http://127.0.0.1:8080/proxy/");
        let client = EodhdClient::new(&cfg, NewsMetrics::unregistered(), CancellationToken::new()).unwrap();
        assert_eq!(client.inner.endpoint.as_str(), "http://127.0.0.1:8080/proxy/api/news");
        assert!(!format!("{client:?}").contains("\"k\""));
    }
}
