//! The news fetcher: every round, for each ticker of the watchlist (in parallel, bounded),
//! fetches the UTC days from its cursor's day to today from EODHD, publishes every article to
//! `mt5:events:news_raw` with an idempotency key per (article link, ticker), and only then
//! advances the ticker's cursor in Redis.
//!
//! EODHD's `from`/`to` take dates only, so a round refetches whole days, at least the cursor's
//! day, however long ago that was (a quiet ticker's cursor stays put). Two things keep a
//! refetched article from being written twice:
//! - the ticker's record of published articles ([`Fetcher::seen_key`], a sorted set of links
//!   scored by article time, with no TTL): an article found in it is not offered to the bus
//!   again. Links dated before the window's first day are dropped, since no later window
//!   reaches back there; so the record holds about a day of links per ticker. It is written
//!   after the publish, so nothing recorded can be unpublished.
//! - the idempotency key per (article link, ticker) (TTL `bus.idempotency_ttl_ms`, default
//!   72 h), for what the record has not caught yet: a retry, or a crash between the publish and
//!   the record.
//!
//! The idempotency keys alone were not enough: a ticker quiet for longer than their TTL
//! refetched its cursor's day after they expired and republished it. The window itself is not
//! narrowed, so an article EODHD delivers late for a day still in the window is published.
//! The cursor (newest article time published, Unix ms, `<cursor_prefix>:<ticker>`) only moves
//! forward, and only after a walk in which no page was skipped and every publish succeeded,
//! so a failed round is simply redone by the next one.
//!
//! While the daily quota is exhausted ([`EodhdClient::paused_until`]) rounds make no request.
//!
//! # Layout
//! - `config`: [`FetcherConfig`] (`[news.fetcher]`) and [`Schedule`].

mod config;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, TimeDelta, Utc};
use futures_util::stream::{self, StreamExt};
use mt5_bus::{query, Connection, Event, EventProducer, PublishOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use config::{FetcherConfig, Schedule, MAX_INTERVAL_SECS, MIN_INTERVAL_SECS};

use crate::filter::NEWS_RAW_TYPE;
use crate::{Article, EodhdClient, NewsQuery, Result};

/// Events per publish call (one script call each).
const PUBLISH_CHUNK: usize = 100;

/// What one ticker's part of a round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickerReport {
    /// The ticker.
    pub ticker: String,
    /// The query sent (without the key), e.g. `s=AAPL.US&from=2026-11-27&to=2026-11-28`.
    pub query: String,
    /// Articles received (unique by link).
    pub fetched: usize,
    /// Events written to the stream.
    pub published: usize,
    /// Articles published by an earlier round: found in the ticker's record of published
    /// articles ([`Fetcher::seen_key`]) or by their idempotency key.
    pub duplicates: usize,
    /// Items that failed validation (logged, not published).
    pub rejected: usize,
    /// Whether the walk read every page (no page skipped) and every publish succeeded: only
    /// then does the cursor move.
    pub complete: bool,
    /// The cursor after the round.
    pub cursor: Option<DateTime<Utc>>,
    /// Why the ticker's part failed, when it did.
    pub error: Option<String>,
}

/// What a round did.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RoundReport {
    /// One report per ticker of the watchlist, in watchlist order (tickers skipped because the
    /// quota ran out carry that as their error).
    pub tickers: Vec<TickerReport>,
    /// Set when the daily quota is exhausted: no request is made before this time.
    pub paused_until: Option<DateTime<Utc>>,
    /// Wall time of the round.
    pub duration: Duration,
}

impl RoundReport {
    /// Articles received.
    pub fn fetched(&self) -> usize {
        self.tickers.iter().map(|t| t.fetched).sum()
    }
    /// Events written.
    pub fn published(&self) -> usize {
        self.tickers.iter().map(|t| t.published).sum()
    }
    /// Articles already published by an earlier round.
    pub fn duplicates(&self) -> usize {
        self.tickers.iter().map(|t| t.duplicates).sum()
    }
    /// Tickers whose part failed.
    pub fn failed(&self) -> usize {
        self.tickers.iter().filter(|t| t.error.is_some()).count()
    }
}

/// The news fetcher. See the module docs.
#[derive(Debug)]
pub struct Fetcher {
    cfg: FetcherConfig,
    client: EodhdClient,
    producer: EventProducer,
    conn: Connection,
}

impl Fetcher {
    /// A fetcher publishing through `producer` (whose bus config should create the filter's
    /// group on `cfg.stream`, so no event is published before the group exists).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for an invalid `cfg`.
    pub fn new(cfg: FetcherConfig, client: EodhdClient, producer: EventProducer) -> Result<Fetcher> {
        cfg.validate()?;
        let conn = producer.connection();
        Ok(Fetcher {
            cfg,
            client,
            producer,
            conn,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.cfg
    }

    /// The EODHD client.
    pub fn client(&self) -> &EodhdClient {
        &self.client
    }

    /// The Redis key of `ticker`'s cursor.
    pub fn cursor_key(&self, ticker: &str) -> String {
        format!("{}:{ticker}", self.cfg.cursor_prefix)
    }

    /// The Redis key of `ticker`'s record of published articles
    /// (`<cursor_prefix>:<ticker>:seen`): a sorted set of article links scored by article time
    /// (Unix ms), holding the links published whose date is on or after the window's first
    /// day. It has no TTL: it is what keeps a refetch from republishing once the idempotency
    /// keys have expired.
    pub fn seen_key(&self, ticker: &str) -> String {
        format!("{}:{ticker}:seen", self.cfg.cursor_prefix)
    }

    /// The links of `ticker`'s record of published articles dated on or after `from` (UTC
    /// midnight), after dropping the older ones: no window from now on starts before `from`
    /// (the cursor never moves back, and the window starts at the cursor's day, or today), so
    /// those can never be refetched.
    async fn seen_since(&self, ticker: &str, from: NaiveDate) -> Result<HashSet<String>> {
        let floor_ms = from.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
        let key = self.seen_key(ticker);
        let mut conn = self.conn.clone();
        Ok(query::seen_since(&mut conn, &key, floor_ms)
            .await?
            .into_iter()
            .collect())
    }

    /// Adds `articles` (published now or by an earlier round) to `ticker`'s record.
    async fn record_seen(&self, ticker: &str, articles: &[&Article]) -> Result<()> {
        let names: Vec<(i64, &str)> = articles
            .iter()
            .map(|a| (a.date.timestamp_millis(), a.link.as_str()))
            .collect();
        let mut conn = self.conn.clone();
        query::record_seen(&mut conn, &self.seen_key(ticker), &names).await?;
        Ok(())
    }

    /// `ticker`'s cursor: the newest article time published, if any.
    ///
    /// # Errors
    /// [`Error::Bus`](crate::Error::Bus) when Redis fails.
    pub async fn cursor(&self, ticker: &str) -> Result<Option<DateTime<Utc>>> {
        let mut conn = self.conn.clone();
        let ms = query::cursor(&mut conn, &self.cursor_key(ticker)).await?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Moves `ticker`'s cursor to `to`, never backwards. Returns the cursor after the call.
    async fn advance_cursor(&self, ticker: &str, to: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let mut conn = self.conn.clone();
        let ms = query::advance_cursor(&mut conn, &self.cursor_key(ticker), to.timestamp_millis()).await?;
        Ok(DateTime::from_timestamp_millis(ms))
    }

    /// One round over the watchlist, at most `concurrency` tickers at a time. Per-ticker
    /// failures are in the report (the next round redoes those tickers); while the quota is
    /// exhausted no request is made and [`RoundReport::paused_until`] says until when.
    ///
    /// # Errors
    /// None today: every failure is reported per ticker. The `Result` leaves room for
    /// round-level failures.
    pub async fn round(&self) -> Result<RoundReport> {
        let started = Instant::now();
        let today = Utc::now().date_naive();
        // Futures built in a loop (not by a closure returning an async block), so the round's
        // future stays `Send` for any caller's lifetime.
        let mut pending = Vec::with_capacity(self.cfg.watchlist.len());
        for ticker in &self.cfg.watchlist {
            pending.push(self.fetch_ticker(ticker, today));
        }
        let mut results: Vec<TickerReport> = stream::iter(pending)
            .buffer_unordered(self.cfg.concurrency)
            .collect()
            .await;
        let order: HashMap<&str, usize> = self
            .cfg
            .watchlist
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        results.sort_by_key(|r| order.get(r.ticker.as_str()).copied().unwrap_or(usize::MAX));
        let tickers = results;
        let report = RoundReport {
            tickers,
            paused_until: self.client.paused_until(),
            duration: started.elapsed(),
        };
        tracing::info!(
            fetched = report.fetched(),
            published = report.published(),
            duplicates = report.duplicates(),
            failed = report.failed(),
            paused_until = report.paused_until.map(|t| t.to_rfc3339()),
            took_ms = report.duration.as_millis() as u64,
            "News round done."
        );
        Ok(report)
    }

    /// Runs rounds until `cancel` fires: the first at once, then every
    /// [`Schedule::next_wait`]; while the quota is exhausted it waits for the reset instead.
    ///
    /// # Errors
    /// None today (failures are logged per round); the `Result` leaves room for fatal ones.
    pub async fn run(&self, schedule: Schedule, cancel: CancellationToken) -> Result<()> {
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let mut wait = schedule.next_wait();
            if let Some(until) = self.client.paused_until() {
                let left = (until - Utc::now()).to_std().unwrap_or_default();
                tracing::warn!(until = %until.to_rfc3339(), "EODHD daily quota exhausted; no rounds until it resets.");
                wait = left.max(Duration::from_secs(1));
            } else if self.client.auth_failed() {
                tracing::error!("EODHD rejected the API key; rounds are skipped until the key is fixed (restart with a valid EODHD_API_KEY).");
            } else {
                let round = self.round();
                tokio::select! {
                    report = round => {
                        if let Ok(r) = report {
                            if r.paused_until.is_some() {
                                continue;
                            }
                        }
                    }
                    () = cancel.cancelled() => return Ok(()),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return Ok(()),
            }
        }
    }

    async fn fetch_ticker(&self, ticker: &str, today: NaiveDate) -> TickerReport {
        let mut report = TickerReport {
            ticker: ticker.to_string(),
            ..TickerReport::default()
        };
        if let Some(until) = self.client.paused_until() {
            report.error = Some(format!(
                "skipped: EODHD daily quota exhausted until {}",
                until.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
            return report;
        }
        match self.fetch_ticker_inner(ticker, today, &mut report).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(ticker, error = %e, "Fetching news failed; the next round retries.");
                report.error = Some(e.to_string());
            }
        }
        report
    }

    async fn fetch_ticker_inner(&self, ticker: &str, today: NaiveDate, report: &mut TickerReport) -> Result<()> {
        let cursor = self.cursor(ticker).await?;
        report.cursor = cursor;
        let from = match cursor {
            Some(c) => c.date_naive().min(today),
            None => today - TimeDelta::days(i64::from(self.cfg.lookback_days)),
        };
        let seen = self.seen_since(ticker, from).await?;
        let query = NewsQuery::symbol(ticker).with_window(Some(from), Some(today));
        report.query = format!("s={ticker}&from={from}&to={today}");
        let batch = self.client.news_all(&query, self.client.config().page_cap).await?;
        report.fetched = batch.articles.len();
        report.rejected = batch.rejected.len();
        for r in &batch.rejected {
            tracing::warn!(ticker, error = %r, "EODHD sent an invalid article; skipped.");
        }
        let mut articles = batch.articles;
        articles.sort_by_key(|a| a.date);
        let newest = articles.last().map(|a| a.date);
        // Articles in the record were published by an earlier round: they are not offered to
        // the bus again, whether or not their idempotency keys are still alive.
        let unseen: Vec<&Article> = articles.iter().filter(|a| !seen.contains(&a.link)).collect();
        report.duplicates = articles.len() - unseen.len();
        let fetch_time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut all_published = true;
        for chunk in unseen.chunks(PUBLISH_CHUNK) {
            let events: Vec<(Event, PublishOptions)> = chunk
                .iter()
                .map(|a| self.event(ticker, a, &fetch_time, &report.query))
                .collect();
            let refs: Vec<(&Event, &PublishOptions)> = events.iter().map(|(e, o)| (e, o)).collect();
            let results = self.producer.publish_each(&self.cfg.stream, &refs).await?;
            let mut written = Vec::with_capacity(chunk.len());
            for (article, result) in chunk.iter().zip(results) {
                match result {
                    Ok(p) => {
                        if p.duplicate {
                            report.duplicates += 1;
                        } else {
                            report.published += 1;
                        }
                        written.push(*article);
                    }
                    Err(e) => {
                        all_published = false;
                        tracing::warn!(ticker, error = %e, "An article was not published; the next round retries.");
                    }
                }
            }
            // After the publish, never before: an article recorded but not written would be
            // lost. A crash in between leaves the idempotency keys to catch the next round.
            self.record_seen(ticker, &written).await?;
        }
        if !batch.skipped.is_empty() {
            tracing::warn!(
                ticker,
                skipped = batch.skipped.len(),
                "EODHD pages with an invalid body were skipped; the cursor stays and the next round refetches."
            );
        }
        if !batch.reached_end && batch.skipped.is_empty() {
            tracing::warn!(ticker, pages = batch.pages, "The page cap ended the walk: older articles of the window were not fetched (raise news.eodhd.page_cap).");
        }
        report.complete = batch.skipped.is_empty() && all_published;
        if report.complete {
            if let Some(newest) = newest {
                report.cursor = self.advance_cursor(ticker, newest).await?;
            }
        } else if !all_published {
            report.error = Some("some articles were not published (backlog limit); retried next round".into());
        }
        Ok(())
    }

    /// The `news.raw.v1` event of `article` for `ticker`, with its idempotency key.
    fn event(&self, ticker: &str, article: &Article, fetch_time: &str, query: &str) -> (Event, PublishOptions) {
        let key = format!("{ticker}|{}", article.link);
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes());
        let data = json!({
            "ticker": ticker,
            "fetch_time": fetch_time,
            "source_query": query,
            "article": article,
        });
        let event = Event::new(self.cfg.source.clone(), NEWS_RAW_TYPE, data)
            .with_id(id.to_string())
            .with_extension("ticker", ticker)
            .expect("`ticker` is a valid extension name");
        (event, PublishOptions::idempotent(key))
    }
}
