//! A `governor` clock on tokio's time, so a paused test clock drives the limiter too.

use std::time::Duration;

use governor::clock::Clock;

/// Time since the clock was made, read from `tokio::time::Instant` (which
/// `tokio::time::pause()` and `advance()` control).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().saturating_duration_since(self.origin)
    }
}
