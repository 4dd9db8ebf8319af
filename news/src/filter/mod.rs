//! The news filter: decides per `news.raw.v1` event whether it goes on to
//! `mt5:events:news_filtered`.
//!
//! Rules, cheapest first; the first that fails is the event's reject reason:
//! 1. ticker whitelist (`tickers`, empty = every ticker),
//! 2. freshness (`max_age_hours` against an injectable [`Clock`]),
//! 3. keywords (`keywords`, case-insensitive whole words, empty = no rule),
//! 4. sentiment (`min_sentiment`, mode `positive` or `abs`, source `vader` or `eodhd`).
//!
//! # Layout
//! - `config`: [`FilterConfig`] (`[news.filter]`) and its enums.
//! - `news`: [`RawNews`], the fields of a raw payload the rules read.
//! - `rules`: [`FilterRules::decide`], the pure decision, and [`Decision`].
//! - `keywords`: whole-word, case-insensitive matching.
//! - `sentiment`: [`SentimentScorer`], VADER with a bounded cache keyed by title.
//! - `clock`: [`Clock`], [`SystemClock`], [`ManualClock`].
//! - `handler`: [`NewsFilter`], the consumer group's [`mt5_bus::Handler`].
//! - `metrics`: [`FilterMetrics`] (`mt5_news_filter_total`, `mt5_news_sentiment_scored_total`,
//!   `mt5_news_sentiment_cache_hits_total`).
//!
//! A bad `[news.filter]` setting is [`crate::Error::Config`]; a payload the filter cannot read
//! is [`crate::Error::InvalidData`].

mod clock;
mod config;
mod handler;
mod json;
mod keywords;
pub mod metrics;
mod news;
mod rules;
mod sentiment;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{FilterConfig, SentimentMode, SentimentSource, EVENT_KEYWORDS};
pub use handler::{NewsFilter, FILTER_SOURCE, NEWS_FILTERED_TYPE, NEWS_RAW_TYPE};
pub use metrics::FilterMetrics;
pub use news::RawNews;
pub use rules::{Decision, FilterRules, Matched, RejectReason, Sentiment};
pub use sentiment::{SentimentModel, SentimentScorer};
