//! `[news.eodhd.rate_limit]`: the client-side request rate.

use serde::{Deserialize, Serialize};

use mt5_bus::validate::{positive, within};
use mt5_bus::InvalidConfig;

/// Client-side limit on HTTP requests per minute (EODHD counts requests here, not API calls).
///
/// The limiter is a GCRA (`governor`): `burst` requests may go at once, then one every
/// `60 s / requests_per_minute`. Any 60-second window therefore admits at most
/// `requests_per_minute + burst` requests; lower `requests_per_minute` if the upstream counts a
/// strict window.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Sustained requests per minute. Default 1000 (EODHD's documented per-minute limit).
    pub requests_per_minute: u32,
    /// Requests that may go back to back before the sustained rate applies. Default 10; at most
    /// `requests_per_minute`.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_minute: 1000,
            burst: 10,
        }
    }
}

impl RateLimitConfig {
    /// Sets `requests_per_minute`.
    #[must_use]
    pub fn with_requests_per_minute(mut self, requests_per_minute: u32) -> Self {
        self.requests_per_minute = requests_per_minute;
        self
    }

    /// Sets `burst`.
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Validates the ranges.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        positive("news.eodhd.rate_limit.requests_per_minute", self.requests_per_minute)?;
        within("news.eodhd.rate_limit.burst", self.burst, 1..=self.requests_per_minute)
    }
}
