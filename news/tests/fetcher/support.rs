//! Helpers of the fetcher tests: a fetcher wired to a mock EODHD and a real Redis, with keys
//! of its own.

use std::collections::HashSet;

use mt5_bus::config::GroupSpec;
use mt5_bus::{BusConfig, BusMetrics, EventProducer, RedisConfig};
use mt5_fixtures::eodhd::article_date;
use mt5_fixtures::redis::aio::MultiplexedConnection;
use mt5_fixtures::{MockEodhd, RedisFixture};
use mt5_news::{Fetcher, FetcherConfig, NewsMetrics};
use tokio_util::sync::CancellationToken;

pub(crate) use mt5_fixtures::streams::read_all;

use crate::client::support::config_for;

/// The sample tickers.
pub(crate) const TICKERS: &[&str] = &["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"];

/// Stream and key names of one test run, under the fixture's prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) raw: String,
    pub(crate) filtered: String,
    pub(crate) deadletter: String,
    pub(crate) cursor_prefix: String,
    pub(crate) group: String,
}

impl Keys {
    pub(crate) fn new(fx: &RedisFixture) -> Keys {
        let p = fx.prefix();
        Keys {
            raw: format!("{p}:news_raw"),
            filtered: format!("{p}:news_filtered"),
            deadletter: format!("{p}:deadletter"),
            cursor_prefix: format!("{p}:cursor"),
            group: "news-filter-group".to_string(),
        }
    }

    /// The bus config of the run: the filter's group on the raw stream, its own dead letters.
    pub(crate) fn bus(&self) -> BusConfig {
        let mut bus = BusConfig::default();
        bus.groups = vec![GroupSpec {
            stream: self.raw.clone(),
            group: self.group.clone(),
        }];
        bus.deadletter_stream = self.deadletter.clone();
        bus.consumer.block_ms = 100;
        bus.consumer.heartbeat_ttl_ms = 1000;
        bus.consumer.heartbeat_interval_ms = 200;
        bus.consumer.shutdown_timeout_ms = 3000;
        bus.reclaim.interval_ms = 200;
        bus
    }

    /// The fetcher config of the run: every sample ticker, a window wide enough for every
    /// sample article (the oldest is about 57 h before the newest).
    pub(crate) fn fetcher(&self) -> FetcherConfig {
        FetcherConfig::default()
            .with_watchlist(TICKERS.iter().copied())
            .with_lookback_days(4)
            .with_keys(self.raw.clone(), self.cursor_prefix.clone())
    }
}

/// The Redis config of `fx`.
pub(crate) fn redis_config(fx: &RedisFixture) -> RedisConfig {
    RedisConfig::default().with_url(fx.url())
}

/// A fetcher on `fx` and `mock` (fresh client and producer: what a restarted process has).
pub(crate) async fn fetcher(fx: &RedisFixture, mock: &MockEodhd, keys: &Keys) -> Fetcher {
    fetcher_with(fx, mock, keys, keys.fetcher(), NewsMetrics::unregistered()).await
}

/// A fetcher with the given config and metrics.
pub(crate) async fn fetcher_with(
    fx: &RedisFixture,
    mock: &MockEodhd,
    keys: &Keys,
    cfg: FetcherConfig,
    metrics: NewsMetrics,
) -> Fetcher {
    fetcher_on_bus(fx, mock, &keys.bus(), cfg, metrics).await
}

/// A fetcher with the given bus config (e.g. a short idempotency TTL), fetcher config and
/// metrics.
pub(crate) async fn fetcher_on_bus(
    fx: &RedisFixture,
    mock: &MockEodhd,
    bus: &BusConfig,
    cfg: FetcherConfig,
    metrics: NewsMetrics,
) -> Fetcher {
    let cancel = CancellationToken::new();
    let client = mt5_news::EodhdClient::new(&config_for(mock), metrics, cancel.clone()).unwrap();
    let producer = EventProducer::connect(&redis_config(fx), bus, BusMetrics::unregistered(), cancel)
        .await
        .unwrap();
    Fetcher::new(cfg, client, producer).unwrap()
}

/// The valid, unique-by-link articles the mock serves for `ticker` (what one wide round
/// publishes for it).
pub(crate) fn expected_links(mock: &MockEodhd, ticker: &str) -> HashSet<String> {
    mock.articles(ticker)
        .iter()
        .filter(|a| article_date(a).is_some() && a["title"].is_string())
        .filter_map(|a| a["link"].as_str().map(String::from))
        .collect()
}

/// `(ticker, link)` of every raw event in `stream`.
pub(crate) async fn published_pairs(conn: &mut MultiplexedConnection, stream: &str) -> Vec<(String, String)> {
    read_all(conn, stream)
        .await
        .into_iter()
        .map(|(_, f)| {
            let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
            (
                data["ticker"].as_str().unwrap().to_string(),
                data["article"]["link"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
