//! A token bucket for the paced load: tokens refill at `rate` per second up to `capacity`, and a
//! batch of `n` events waits for `n` tokens. The capacity is small (about one batch), so after a
//! stall (Redis restarting) the load resumes at its rate instead of bursting to catch up.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The bucket. Uses tokio's clock, so tests can pause time.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens per second, holding at most `capacity`.
    pub(crate) fn new(rate: f64, capacity: usize) -> Self {
        let capacity = capacity.max(1) as f64;
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Waits until `n` tokens (at most the capacity) are there and takes them. Returns `false`
    /// when cancelled first.
    pub(crate) async fn acquire(&mut self, n: usize, cancel: &CancellationToken) -> bool {
        let n = (n as f64).min(self.capacity);
        loop {
            self.refill();
            if self.tokens >= n {
                self.tokens -= n;
                return true;
            }
            let wait = Duration::from_secs_f64((n - self.tokens) / self.rate);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 events at 200/s in batches of 2 take about half a second, never less.
    #[tokio::test(start_paused = true)]
    async fn the_bucket_paces_to_its_rate() {
        let cancel = CancellationToken::new();
        let mut b = TokenBucket::new(200.0, 2);
        let start = Instant::now();
        for _ in 0..50 {
            assert!(b.acquire(2, &cancel).await);
        }
        let took = start.elapsed();
        // The first batch is free (the bucket starts full): 49 batches * 10 ms.
        assert!(
            took >= Duration::from_millis(489) && took <= Duration::from_millis(500),
            "{took:?}"
        );
    }

    /// After a stall the bucket holds at most one batch: no catch-up burst.
    #[tokio::test(start_paused = true)]
    async fn a_stall_does_not_cause_a_burst() {
        let cancel = CancellationToken::new();
        let mut b = TokenBucket::new(100.0, 1);
        assert!(b.acquire(1, &cancel).await);
        tokio::time::advance(Duration::from_secs(10)).await;
        let start = Instant::now();
        for _ in 0..11 {
            assert!(b.acquire(1, &cancel).await);
        }
        assert!(start.elapsed() >= Duration::from_millis(99), "{:?}", start.elapsed());
    }

    /// A cancelled wait returns `false` at once.
    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        let mut b = TokenBucket::new(0.001, 1);
        assert!(b.acquire(1, &cancel).await);
        cancel.cancel();
        assert!(!b.acquire(1, &cancel).await);
    }
}
