//! Daily API-call quota accounting.
//!
//! EODHD bills "API calls", not requests, and a news request costs several: the public limits
//! page says 5 per request, the vendor's own reference docs say `5 + 5 × tickers` (10 for one
//! ticker). The default budgets for the higher figure; `calls_per_request` sets it.
//!
//! The quota resets at 00:00 GMT. The tracker counts the calls spent since then (successful
//! replies only: failed requests reportedly cost nothing), and reads `X-RateLimit-Limit` /
//! `X-RateLimit-Remaining` when the server sends them; those only feed the remaining-quota
//! estimate (`mt5_eodhd_quota_remaining`), never a pause, because whether they count the day
//! or the minute is not documented. Fetching pauses until the next 00:00 GMT when the server
//! answers 402, or when the local count would pass `daily_quota`.
//!
//! The tracker is pure: every method takes the wall-clock time, so tests need no clock.

use chrono::{DateTime, Days, NaiveDate, Utc};
use mt5_bus::validate::{ensure, positive};
use mt5_bus::InvalidConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[news.eodhd.quota]`: the daily API-call budget.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// API calls allowed per day (GMT), across every process using the key. Default 100000
    /// (EODHD's paid plans); the free plan has 20.
    pub daily_quota: u64,
    /// API calls one news request (one page) costs. Default 10: the vendor reference docs'
    /// `5 + 5 × tickers` for one ticker; the public limits page says 5.
    pub calls_per_request: u64,
    /// Whether `X-RateLimit-Limit` / `X-RateLimit-Remaining` replace the local estimate of the
    /// remaining quota when present. Default true.
    pub use_headers: bool,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            daily_quota: 100_000,
            calls_per_request: 10,
            use_headers: true,
        }
    }
}

impl QuotaConfig {
    /// Sets `daily_quota`.
    #[must_use]
    pub fn with_daily_quota(mut self, daily_quota: u64) -> Self {
        self.daily_quota = daily_quota;
        self
    }

    /// Sets `calls_per_request`.
    #[must_use]
    pub fn with_calls_per_request(mut self, calls_per_request: u64) -> Self {
        self.calls_per_request = calls_per_request;
        self
    }

    /// Validates the ranges.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        positive("news.eodhd.quota.calls_per_request", self.calls_per_request)?;
        ensure(
            self.daily_quota >= self.calls_per_request,
            "news.eodhd.quota.daily_quota",
            format!("must be at least calls_per_request ({})", self.calls_per_request),
        )
    }
}

/// The next 00:00 GMT strictly after `now`.
pub fn next_reset(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now
        .date_naive()
        .checked_add_days(Days::new(1))
        .unwrap_or(NaiveDate::MAX);
    tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The day's quota state.
#[derive(Clone, Debug)]
pub struct QuotaTracker {
    cfg: QuotaConfig,
    day: NaiveDate,
    used: u64,
    header_remaining: Option<u64>,
    header_limit: Option<u64>,
    paused_until: Option<DateTime<Utc>>,
}

impl QuotaTracker {
    /// A fresh day's budget.
    pub fn new(cfg: &QuotaConfig, now: DateTime<Utc>) -> Self {
        QuotaTracker {
            cfg: cfg.clone(),
            day: now.date_naive(),
            used: 0,
            header_remaining: None,
            header_limit: None,
            paused_until: None,
        }
    }

    /// Starts a new day's budget after 00:00 GMT.
    fn roll_over(&mut self, now: DateTime<Utc>) {
        if now.date_naive() != self.day {
            self.day = now.date_naive();
            self.used = 0;
            self.header_remaining = None;
            self.header_limit = None;
        }
        if self.paused_until.is_some_and(|until| now >= until) {
            self.paused_until = None;
        }
    }

    /// Whether a request may be sent now. Pauses (until the next reset) when the local count
    /// would pass the budget.
    ///
    /// # Errors
    /// [`Error::QuotaExhausted`] while paused or when the request would pass the budget.
    pub fn check(&mut self, now: DateTime<Utc>) -> Result<()> {
        self.roll_over(now);
        if let Some(resets_at) = self.paused_until {
            return Err(Error::QuotaExhausted { resets_at });
        }
        if self.used + self.cfg.calls_per_request > self.cfg.daily_quota {
            let resets_at = next_reset(now);
            self.paused_until = Some(resets_at);
            return Err(Error::QuotaExhausted { resets_at });
        }
        Ok(())
    }

    /// Books one answered request, and the rate-limit headers when present.
    pub fn record_request(&mut self, now: DateTime<Utc>, limit: Option<u64>, remaining: Option<u64>) {
        self.roll_over(now);
        self.used = self.used.saturating_add(self.cfg.calls_per_request);
        if self.cfg.use_headers {
            if remaining.is_some() {
                self.header_remaining = remaining;
            }
            if limit.is_some() {
                self.header_limit = limit;
            }
        }
    }

    /// The server said the quota is exhausted (402): pause until the next reset, which is
    /// returned.
    pub fn exhausted(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.roll_over(now);
        let resets_at = next_reset(now);
        self.paused_until = Some(resets_at);
        resets_at
    }

    /// When fetching may resume, while paused.
    pub fn paused_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.paused_until.filter(|until| now < *until)
    }

    /// The best estimate of the calls left today: 0 while paused, else the server's
    /// `X-RateLimit-Remaining` when seen today (and `use_headers`), else the budget minus the
    /// calls counted.
    pub fn remaining(&self, now: DateTime<Utc>) -> u64 {
        if self.paused_until(now).is_some() {
            return 0;
        }
        if now.date_naive() != self.day {
            return self.cfg.daily_quota;
        }
        self.header_remaining
            .unwrap_or_else(|| self.cfg.daily_quota.saturating_sub(self.used))
    }

    /// Calls counted today.
    pub fn used_today(&self) -> u64 {
        self.used
    }

    /// The server's `X-RateLimit-Limit`, when a reply of `now`'s day (GMT) sent it.
    pub fn header_limit(&self, now: DateTime<Utc>) -> Option<u64> {
        if now.date_naive() != self.day {
            return None;
        }
        self.header_limit
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &QuotaConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, d, h, m, 0).unwrap()
    }

    /// The reset is the next midnight GMT, also at exactly midnight.
    #[test]
    fn reset_is_the_next_midnight_gmt() {
        assert_eq!(next_reset(at(4, 13, 7)), at(5, 0, 0));
        assert_eq!(next_reset(at(4, 0, 0)), at(5, 0, 0));
        assert_eq!(next_reset(at(4, 23, 59)), at(5, 0, 0));
    }

    /// Each request costs `calls_per_request`; the request that would pass the budget is
    /// refused and pauses fetching until midnight.
    #[test]
    fn budget_counts_calls_per_request_and_pauses_until_midnight() {
        let cfg = QuotaConfig::default().with_daily_quota(20).with_calls_per_request(5);
        let mut q = QuotaTracker::new(&cfg, at(4, 10, 0));
        assert_eq!(q.config(), &cfg, "it runs with the config it was given");
        for _ in 0..4 {
            q.check(at(4, 10, 0)).unwrap();
            q.record_request(at(4, 10, 0), None, None);
        }
        assert_eq!(q.used_today(), 20);
        assert_eq!(q.remaining(at(4, 10, 0)), 0);
        let err = q.check(at(4, 10, 1)).unwrap_err();
        assert_eq!(err.paused_until(), Some(at(5, 0, 0)));
        assert_eq!(q.paused_until(at(4, 23, 59)), Some(at(5, 0, 0)));
        assert_eq!(q.paused_until(at(5, 0, 0)), None);
        q.check(at(5, 0, 0)).unwrap();
        assert_eq!(q.used_today(), 0);
        assert_eq!(q.remaining(at(5, 0, 0)), 20);
    }

    /// A 402 pauses until the next reset regardless of the local count.
    #[test]
    fn server_exhaustion_pauses_until_the_next_reset() {
        let mut q = QuotaTracker::new(&QuotaConfig::default(), at(4, 22, 30));
        assert_eq!(q.exhausted(at(4, 22, 30)), at(5, 0, 0));
        assert!(matches!(q.check(at(4, 23, 0)), Err(Error::QuotaExhausted { resets_at }) if resets_at == at(5, 0, 0)));
        assert_eq!(q.remaining(at(4, 23, 0)), 0);
        q.check(at(5, 0, 1)).unwrap();
    }

    /// `X-RateLimit-Remaining` replaces the local estimate for the day, and is dropped at the
    /// reset; with `use_headers = false` it is ignored.
    #[test]
    fn headers_replace_the_estimate_for_the_day() {
        let mut q = QuotaTracker::new(&QuotaConfig::default(), at(4, 9, 0));
        q.record_request(at(4, 9, 0), Some(100_000), Some(42_000));
        assert_eq!(q.remaining(at(4, 9, 0)), 42_000);
        assert_eq!(q.header_limit(at(4, 9, 0)), Some(100_000));
        q.record_request(at(4, 9, 1), None, None);
        assert_eq!(q.remaining(at(4, 9, 1)), 42_000);
        assert_eq!(q.header_limit(at(4, 23, 59)), Some(100_000));
        assert_eq!(q.remaining(at(5, 0, 0)), 100_000);
        assert_eq!(q.header_limit(at(5, 0, 0)), None, "yesterday's limit");
        q.record_request(at(5, 0, 1), None, None);
        assert_eq!(q.remaining(at(5, 0, 1)), 100_000 - 10);
        assert_eq!(q.header_limit(at(5, 0, 1)), None);

        let cfg = QuotaConfig {
            use_headers: false,
            ..QuotaConfig::default()
        };
        let mut q = QuotaTracker::new(&cfg, at(4, 9, 0));
        q.record_request(at(4, 9, 0), Some(360), Some(359));
        assert_eq!(q.remaining(at(4, 9, 0)), 100_000 - 10);
        assert_eq!(q.header_limit(at(4, 9, 0)), None);
    }

    /// A zero cost and a budget below one request are configuration errors.
    #[test]
    fn invalid_budgets_are_rejected() {
        assert!(QuotaConfig::default().with_calls_per_request(0).validate().is_err());
        let err = QuotaConfig::default().with_daily_quota(5).validate().unwrap_err();
        assert!(err.to_string().contains("daily_quota"), "{err}");
    }
}
