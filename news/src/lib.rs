//! `mt5-news`: the news pipeline of mt5-hub.
//!
//! # Layout
//! - `client`: the EODHD news client ([`EodhdClient`]): one page or a paginated walk, retries,
//!   the error classes, key redaction, [`NewsMetrics`].
//! - `article`: [`Article`], the typed article (also the `article` of `news.raw.v1` events).
//! - `error`: [`Error`], the crate's one error type and its classifier.
//! - `eodhd_config`: [`EodhdConfig`] (`[news.eodhd]`).
//! - `rate_limit`: [`RequestRateLimiter`], client-side requests per minute (governor).
//! - `quota`: [`QuotaTracker`], the daily API-call budget (00:00 GMT reset).
//! - `circuit_breaker`: [`CircuitBreaker`] and [`CircuitState`].
//! - `fetcher`: [`Fetcher`], the scheduled incremental fetcher (`[news.fetcher]`).
//! - `filter`: the filter consumer's decision rules and sentiment.
//! - `sample`: the bundled sample news (`news/data/sample/`) with dates shifted to now.
//! - [`vader`]: VADER sentiment with vaderSentiment 3.3.2's exact scores (the filter's scorer).

mod article;
mod circuit_breaker;
pub mod client;
mod eodhd_config;
mod error;
pub mod fetcher;
pub mod filter;
pub mod quota;
mod rate_limit;
pub mod sample;
pub mod vader;

pub use article::{parse_article_date, Article, ArticleSentiment, RejectedArticle};
pub use circuit_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
pub use client::{EodhdClient, NewsBatch, NewsMetrics, NewsPage, NewsQuery, SkippedPage, Subject};
pub use eodhd_config::{EodhdConfig, EodhdRetryConfig, MAX_PAGE_LIMIT};
pub use error::{Error, Result};
pub use fetcher::{Fetcher, FetcherConfig, RoundReport, Schedule, TickerReport};
pub use filter::{FilterConfig, FilterMetrics, NewsFilter};
pub use quota::{QuotaConfig, QuotaTracker};
pub use rate_limit::{RateLimitConfig, RequestRateLimiter};
