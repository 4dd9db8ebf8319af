//! The filter's notion of "now", injectable so freshness can be tested.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock. This is what [`super::NewsFilter`] uses unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests, replays of recorded data).
#[derive(Debug)]
pub struct ManualClock {
    // A std mutex: it is held for a copy, never across an await.
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(now) }
    }

    /// Sets the time.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Moves the time forward by `by` (backwards when negative); saturates at chrono's limits.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(if by < TimeDelta::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("in range")
    }

    /// A manual clock stands still, and moves to what it is set to or by what it is advanced.
    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(at(1_000));
        assert_eq!(clock.now(), at(1_000));
        assert_eq!(clock.now(), at(1_000), "still");
        clock.set(at(5_000));
        assert_eq!(clock.now(), at(5_000));
        clock.advance(TimeDelta::seconds(30));
        assert_eq!(clock.now(), at(5_030));
        clock.advance(TimeDelta::seconds(-1_030));
        assert_eq!(clock.now(), at(4_000));
        assert_eq!(std::sync::Arc::new(clock).now(), at(4_000), "through an Arc");
    }

    /// Advancing past chrono's range saturates at its end in the direction of travel.
    #[test]
    fn advancing_past_the_range_saturates() {
        let clock = ManualClock::new(at(0));
        clock.advance(TimeDelta::MIN);
        assert_eq!(clock.now(), DateTime::<Utc>::MIN_UTC);
        clock.set(at(0));
        clock.advance(TimeDelta::MAX);
        assert_eq!(clock.now(), DateTime::<Utc>::MAX_UTC);
    }
}
