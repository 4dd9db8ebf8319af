//! `[news.fetcher]`: the watchlist and the schedule of the fetcher, every default in one place.

use std::time::Duration;

use mt5_bus::validate::{at_most, ensure, non_empty, within};
use mt5_bus::InvalidConfig;
use mt5_bus::NEWS_RAW_STREAM;
use serde::{Deserialize, Serialize};

/// The shortest allowed round interval, in seconds (5 min).
pub const MIN_INTERVAL_SECS: u64 = 300;
/// The longest allowed round interval, in seconds (15 min).
pub const MAX_INTERVAL_SECS: u64 = 900;

/// `[news.fetcher]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FetcherConfig {
    /// Tickers to fetch news for, EODHD style (`AAPL.US`). Default `["AAPL.US", "MSFT.US",
    /// "NVDA.US", "TSLA.US"]`.
    pub watchlist: Vec<String>,
    /// Seconds between the starts of two rounds, 300..=900. Default 600 (10 min).
    pub interval_secs: u64,
    /// Each wait is `interval_secs` plus or minus a uniform random jitter of at most this many
    /// seconds (so several fetchers do not hit EODHD in lockstep); less than `interval_secs`,
    /// and the jittered interval is kept within 300..=900 s. Default 60.
    pub jitter_secs: u64,
    /// Tickers fetched at the same time, 1..=64. Default 4.
    pub concurrency: usize,
    /// Whole UTC days before today fetched for a ticker that has no cursor yet (first start).
    /// Default 1 (yesterday and today).
    pub lookback_days: u32,
    /// The stream raw news are published to. Default `mt5:events:news_raw`.
    pub stream: String,
    /// The events' CloudEvents `source`. Default `eodhd`.
    pub source: String,
    /// Prefix of the per-ticker cursor keys (`<prefix>:<ticker>`, the newest article time
    /// published, in Unix ms) and records of published articles (`<prefix>:<ticker>:seen`).
    /// Default `mt5:news:cursor`.
    pub cursor_prefix: String,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            watchlist: ["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"]
                .into_iter()
                .map(String::from)
                .collect(),
            interval_secs: 600,
            jitter_secs: 60,
            concurrency: 4,
            lookback_days: 1,
            stream: NEWS_RAW_STREAM.to_string(),
            source: "eodhd".to_string(),
            cursor_prefix: "mt5:news:cursor".to_string(),
        }
    }
}

impl FetcherConfig {
    /// Checks every value, naming the first bad key.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        ensure(
            !self.watchlist.is_empty(),
            "news.fetcher.watchlist",
            "is empty; list at least one ticker",
        )?;
        if let Some(t) = self
            .watchlist
            .iter()
            .find(|t| t.trim().is_empty() || t.contains(',') || t.chars().any(char::is_whitespace))
        {
            return Err(InvalidConfig::new(
                "news.fetcher.watchlist",
                format!("{t:?} is not a ticker (no spaces or commas; e.g. \"AAPL.US\")"),
            ));
        }
        within(
            "news.fetcher.interval_secs",
            self.interval_secs,
            MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS,
        )?;
        ensure(
            self.jitter_secs < self.interval_secs,
            "news.fetcher.jitter_secs",
            "must be less than interval_secs",
        )?;
        within("news.fetcher.concurrency", self.concurrency, 1..=64)?;
        at_most("news.fetcher.lookback_days", self.lookback_days, 30)?;
        non_empty("news.fetcher.stream", &self.stream)?;
        non_empty("news.fetcher.source", &self.source)?;
        non_empty("news.fetcher.cursor_prefix", &self.cursor_prefix)
    }

    /// The round schedule: `interval_secs` ± `jitter_secs`, the jittered interval kept within
    /// the allowed 5 to 15 minutes.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: Duration::from_secs(self.interval_secs),
            jitter: Duration::from_secs(self.jitter_secs),
            min: Duration::from_secs(MIN_INTERVAL_SECS),
            max: Duration::from_secs(MAX_INTERVAL_SECS),
        }
    }

    /// Sets the watchlist.
    #[must_use]
    pub fn with_watchlist<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tickers: I) -> Self {
        self.watchlist = tickers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `lookback_days`.
    #[must_use]
    pub fn with_lookback_days(mut self, days: u32) -> Self {
        self.lookback_days = days;
        self
    }

    /// Sets `concurrency`.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets the output stream and the cursor key prefix (tests give each run its own).
    #[must_use]
    pub fn with_keys(mut self, stream: impl Into<String>, cursor_prefix: impl Into<String>) -> Self {
        self.stream = stream.into();
        self.cursor_prefix = cursor_prefix.into();
        self
    }
}

/// When rounds start: every `interval` plus or minus up to `jitter`, kept within `min..=max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The mean time between round starts.
    pub interval: Duration,
    /// The largest random deviation from `interval`.
    pub jitter: Duration,
    /// The shortest wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Schedule {
    /// A schedule without the 5 to 15 minute bounds of the config: for tests and tools that
    /// need short rounds.
    pub fn unchecked(interval: Duration, jitter: Duration) -> Self {
        Schedule {
            interval,
            jitter,
            min: Duration::ZERO,
            max: Duration::MAX,
        }
    }

    /// The next wait, for a uniform sample `u` in `-1.0..=1.0`.
    pub fn wait_for(&self, u: f64) -> Duration {
        let u = u.clamp(-1.0, 1.0);
        let base = self.interval.as_secs_f64() + u * self.jitter.as_secs_f64();
        Duration::from_secs_f64(base.max(0.0)).clamp(self.min, self.max)
    }

    /// The next wait, with a fresh random jitter.
    pub fn next_wait(&self) -> Duration {
        self.wait_for(rand::Rng::random_range(&mut rand::rng(), -1.0..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_ten_minutes_apart() {
        let c = FetcherConfig::default();
        c.validate().unwrap();
        assert_eq!(c.schedule().interval, Duration::from_secs(600));
        assert_eq!(c.stream, "mt5:events:news_raw");
    }

    #[test]
    fn intervals_outside_five_to_fifteen_minutes_are_refused() {
        for bad in [0, 60, 299, 901, 3600] {
            let c = FetcherConfig {
                interval_secs: bad,
                jitter_secs: 0,
                ..FetcherConfig::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("interval_secs"), "{err}");
        }
        for good in [300, 600, 900] {
            let c = FetcherConfig {
                interval_secs: good,
                jitter_secs: 0,
                ..FetcherConfig::default()
            };
            c.validate().unwrap();
        }
    }

    #[test]
    fn bad_watchlists_and_jitter_are_named() {
        let c = FetcherConfig::default().with_watchlist(Vec::<String>::new());
        assert!(c.validate().unwrap_err().to_string().contains("watchlist"));
        let c = FetcherConfig::default().with_watchlist(["AAPL.US,MSFT.US"]);
        assert!(c.validate().unwrap_err().to_string().contains("watchlist"));
        let c = FetcherConfig {
            jitter_secs: 600,
            ..FetcherConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("jitter_secs"));
    }

    #[test]
    fn jittered_waits_stay_within_the_jitter_and_the_bounds() {
        let s = FetcherConfig::default().schedule();
        assert_eq!(s.wait_for(0.0), Duration::from_secs(600));
        assert_eq!(s.wait_for(-1.0), Duration::from_secs(540));
        assert_eq!(s.wait_for(1.0), Duration::from_secs(660));
        let waits: Vec<Duration> = (0..1000).map(|_| s.next_wait()).collect();
        for w in &waits {
            assert!(
                *w >= Duration::from_secs(540) && *w <= Duration::from_secs(660),
                "{w:?}"
            );
        }
        // Spread to both sides of the interval (each side missing from 1000 draws: p = 2^-1000).
        assert!(waits.iter().any(|w| *w < Duration::from_secs(600)), "none early");
        assert!(waits.iter().any(|w| *w > Duration::from_secs(600)), "none late");
        let edge = FetcherConfig {
            interval_secs: 300,
            jitter_secs: 120,
            ..FetcherConfig::default()
        }
        .schedule();
        assert_eq!(edge.wait_for(-1.0), Duration::from_secs(300), "never under 5 min");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = serde_json::from_str::<FetcherConfig>(r#"{"watchlsit":["A.US"]}"#).unwrap_err();
        assert!(err.to_string().contains("watchlsit"), "{err}");
    }
}
