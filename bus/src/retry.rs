//! Capped exponential backoff with jitter, and the retry loop used for transient errors.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::config::RetryConfig;
use crate::error::{Error, Result};

/// The delays of one retry sequence: `initial * multiplier^n`, capped, with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: RetryConfig,
    attempt: u32,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            cfg: cfg.clone(),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, without jitter (for tests and logs).
    pub fn base_delay(&self) -> Duration {
        let exp = self.cfg.multiplier.powi(self.attempt.min(63) as i32);
        let ms = (self.cfg.initial_ms as f64 * exp).min(self.cfg.max_ms as f64);
        Duration::from_millis(ms as u64)
    }

    /// The next delay, jittered down by up to `jitter` of it, and advances the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base_delay();
        self.attempt = self.attempt.saturating_add(1);
        if self.cfg.jitter <= 0.0 {
            return base;
        }
        let factor = 1.0 - rand::rng().random_range(0.0..=self.cfg.jitter);
        base.mul_f64(factor)
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Sleeps for `delay` unless `cancel` fires first.
///
/// # Errors
/// [`Error::Cancelled`] when cancelled.
pub async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(delay) => Ok(()),
        _ = cancel.cancelled() => Err(Error::Cancelled),
    }
}

/// Runs `op` until it succeeds, retrying transient errors with backoff, at most
/// `cfg.max_attempts` times (`None` = forever, for long-running services). Permanent errors
/// return at once.
///
/// # Errors
/// The permanent error, [`Error::RetriesExhausted`] or [`Error::Cancelled`].
pub async fn retry_transient<T, F, Fut>(
    cfg: &RetryConfig,
    max_attempts: Option<u32>,
    cancel: &CancellationToken,
    what: &str,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(cfg);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => {
                let attempts = backoff.attempts() + 1;
                if max_attempts.is_some_and(|max| attempts >= max) {
                    return Err(Error::RetriesExhausted {
                        attempts,
                        elapsed: started.elapsed(),
                        last: Box::new(e),
                    });
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, attempt = attempts, delay_ms = delay.as_millis() as u64, "{what} failed transiently; retrying.");
                sleep_or_cancel(delay, cancel).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> RetryConfig {
        RetryConfig {
            initial_ms: 100,
            max_ms: 1000,
            multiplier: 2.0,
            jitter,
            max_attempts: 4,
        }
    }

    #[test]
    fn delays_grow_exponentially_and_are_capped() {
        let mut b = Backoff::new(&cfg(0.0));
        let got: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6, "each delay counts an attempt");
        b.reset();
        assert_eq!((b.attempts(), b.next_delay()), (0, Duration::from_millis(100)));
    }

    /// Jitter spreads the delays over `[base * (1 - jitter), base]`, so clients that failed
    /// together do not retry together: 200 draws with a jitter of 0.5 reach both ends' quarters.
    #[test]
    fn jitter_spreads_the_delays() {
        let mut b = Backoff::new(&RetryConfig {
            multiplier: 1.0,
            ..cfg(0.5)
        });
        let got: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        let (min, max) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        assert!(*min < Duration::from_millis(63), "no delay near the low end: {min:?}");
        assert!(*max > Duration::from_millis(87), "no delay near the base: {max:?}");
    }

    #[test]
    fn jitter_stays_within_its_share() {
        let mut b = Backoff::new(&cfg(0.5));
        for _ in 0..200 {
            let base = b.base_delay();
            let d = b.next_delay();
            assert!(d <= base && d >= base.mul_f64(0.5), "{d:?} vs {base:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_bound() {
        let mut calls = 0;
        let (cfg, cancel) = (cfg(0.0), CancellationToken::new());
        let retries = retry_transient(&cfg, Some(4), &cancel, "op", || {
            calls += 1;
            async { Err::<(), _>(Error::Redis(redis::make_extension_error("LOADING".into(), None))) }
        });
        // Four attempts sleep 0.7 s of the paused clock; a bound that is never reached fails
        // here instead of retrying forever.
        let err = tokio::time::timeout(Duration::from_secs(60), retries)
            .await
            .expect("the retries ended")
            .unwrap_err();
        assert_eq!(calls, 4);
        assert!(matches!(err, Error::RetriesExhausted { attempts: 4, .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let err = retry_transient(&cfg(0.0), None, &CancellationToken::new(), "op", || {
            calls += 1;
            async { Err::<(), _>(Error::EntryTooLarge { size: 2, max: 1 }) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(err, Error::EntryTooLarge { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_backoff_sleep() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let err = retry_transient(&cfg(0.0), None, &cancel, "op", || async {
            Err::<(), _>(Error::Redis(redis::make_extension_error("BUSY".into(), None)))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled));
    }
}
