//! Client-side requests-per-minute limiting with `governor`.
//!
//! EODHD rejects requests over its per-minute limit at once (429) rather than queueing them,
//! so the client paces itself below it. The limiter's clock is tokio's, so tests drive it with
//! `tokio::time::pause()` and `advance()`; waits are cancellable.
//!
//! - `config`: [`RateLimitConfig`] (`[news.eodhd.rate_limit]`).
//! - `clock`: the tokio-backed `governor` clock.

mod clock;
mod config;

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use clock::TokioClock;
pub use config::RateLimitConfig;

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Paces requests to at most `requests_per_minute` (plus a `burst`). Shared by every task of a
/// client; cheap to check.
pub struct RequestRateLimiter {
    limiter: Gcra,
    clock: TokioClock,
    cfg: RateLimitConfig,
}

impl fmt::Debug for RequestRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRateLimiter")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RequestRateLimiter {
    /// A limiter for `cfg`. Its clock starts now, on tokio's time.
    ///
    /// # Errors
    /// [`Error::Config`] when `cfg` is out of range.
    pub fn new(cfg: &RateLimitConfig) -> Result<Self> {
        cfg.validate()?;
        // `validate` refused a zero in either.
        let rpm = NonZeroU32::new(cfg.requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(cfg.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rpm).allow_burst(burst);
        let clock = TokioClock::new();
        Ok(RequestRateLimiter {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock),
            clock,
            cfg: cfg.clone(),
        })
    }

    /// Takes a slot if one is free now; otherwise says how long until the next one.
    ///
    /// # Errors
    /// The wait until a slot frees up.
    pub fn try_acquire(&self) -> std::result::Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Waits for a slot, then takes it.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when `cancel` fires while waiting.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits takes no slot.
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<()> {
        loop {
            match self.try_acquire() {
                Ok(()) => return Ok(()),
                Err(wait) => {
                    tracing::trace!(wait_ms = wait.as_millis() as u64, "Waiting for a request slot.");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return Err(Error::Cancelled),
                    }
                }
            }
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    fn limiter(rpm: u32, burst: u32) -> RequestRateLimiter {
        RequestRateLimiter::new(
            &RateLimitConfig::default()
                .with_requests_per_minute(rpm)
                .with_burst(burst),
        )
        .unwrap()
    }

    /// The burst goes at once; the next request waits one emission interval (60 s / rpm).
    #[tokio::test(start_paused = true)]
    async fn burst_passes_then_requests_are_spaced_by_the_rate() {
        let l = limiter(60, 3);
        assert_eq!(
            l.config(),
            &RateLimitConfig::default().with_requests_per_minute(60).with_burst(3),
            "it runs with the config it was given"
        );
        for _ in 0..3 {
            assert!(l.try_acquire().is_ok());
        }
        let wait = l.try_acquire().unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.try_acquire().is_ok());
        assert!(l.try_acquire().is_err());
    }

    /// Waiting acquisitions sleep on tokio's clock: 12 requests at 60/min with burst 2 take 10 s.
    #[tokio::test(start_paused = true)]
    async fn acquire_sleeps_until_the_rate_allows() {
        let l = limiter(60, 2);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..12 {
            l.acquire(&cancel).await.unwrap();
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_millis(10_100),
            "{took:?}"
        );
    }

    /// A wait for a slot ends with `Cancelled` when shutdown fires.
    #[tokio::test(start_paused = true)]
    async fn cancellation_interrupts_the_wait() {
        let l = limiter(1, 1);
        let cancel = CancellationToken::new();
        l.acquire(&cancel).await.unwrap();
        let waiter = l.acquire(&cancel);
        let canceller = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cancel.cancel();
        };
        let (res, ()) = tokio::join!(waiter, canceller);
        assert!(matches!(res, Err(Error::Cancelled)));
    }

    /// Zero rates and a burst above the rate are configuration errors naming the field.
    #[test]
    fn invalid_rates_are_rejected() {
        let err = RequestRateLimiter::new(&RateLimitConfig::default().with_requests_per_minute(0)).unwrap_err();
        assert!(err.to_string().contains("requests_per_minute"), "{err}");
        let err = RateLimitConfig::default()
            .with_requests_per_minute(5)
            .with_burst(6)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("burst"), "{err}");
    }
}
