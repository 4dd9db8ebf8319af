//! A circuit breaker in front of EODHD, so a dead upstream is not hammered.
//!
//! - **Closed**: requests flow; `failure_threshold` consecutive upstream failures open it.
//! - **Open**: requests fail at once with [`Error::CircuitOpen`] for `cooldown_ms`.
//! - **HalfOpen**: after the cool-down, up to `half_open_probes` requests go through; that many
//!   successes close it, one failure opens it again for another cool-down.
//!
//! Only upstream failures count ([`Error::is_upstream_failure`]: 5xx, timeouts, connection
//! errors, invalid responses). Any reply that proves the upstream alive, including 4xx and 429,
//! counts as a success. Outcomes of requests that started in an earlier state (a slow request
//! finishing after the circuit opened) are ignored.
//!
//! The state is exported as `mt5_eodhd_circuit_state` (0 closed, 1 half-open, 2 open). Time
//! is tokio's, so tests use `tokio::time::pause()`.
//!
//! - `config`: [`CircuitBreakerConfig`] (`[news.eodhd.circuit_breaker]`).

mod config;

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::time::Instant;

use crate::error::{Error, Result};
pub use config::CircuitBreakerConfig;

/// The breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow.
    Closed,
    /// Probing whether the upstream recovered.
    HalfOpen,
    /// Requests fail fast.
    Open,
}

impl CircuitState {
    /// The value of the `mt5_eodhd_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    /// A lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Shared {
    inner: Inner,
    /// Bumped on every transition; a permit from an older generation records nothing.
    generation: u64,
}

/// The breaker. Shared by every task of a client.
pub struct CircuitBreaker {
    cfg: CircuitBreakerConfig,
    // A std mutex: every critical section is a few comparisons, never held across an await.
    state: Mutex<Shared>,
    gauge: Option<IntGauge>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("cfg", &self.cfg)
            .field("state", &self.state())
            .finish()
    }
}

/// Permission to send one request. Report its outcome with [`CircuitPermit::success`] or
/// [`CircuitPermit::failure`]; dropping it unreported (a cancelled request) counts as neither.
#[derive(Debug)]
#[must_use = "report the request's outcome on the permit"]
pub struct CircuitPermit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    probe: bool,
    reported: bool,
}

impl CircuitPermit<'_> {
    /// The request reached a live upstream.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.on_success(self.generation, self.probe);
    }

    /// The request failed in a way that counts against the upstream.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.generation, self.probe);
    }

    /// Reports a result: upstream failures count as failures, cancellation as nothing, any
    /// other outcome as a success.
    pub fn record<T>(self, result: &Result<T>) {
        match result {
            Err(e) if e.is_upstream_failure() => self.failure(),
            Err(Error::Cancelled) => drop(self),
            _ => self.success(),
        }
    }
}

impl Drop for CircuitPermit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.release_probe(self.generation);
        }
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// # Errors
    /// [`Error::Config`] when `cfg` is out of range.
    pub fn new(cfg: &CircuitBreakerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(CircuitBreaker {
            cfg: cfg.clone(),
            state: Mutex::new(Shared {
                inner: Inner::Closed { failures: 0 },
                generation: 0,
            }),
            gauge: None,
        })
    }

    /// Exports the state in `gauge` (`mt5_eodhd_circuit_state`) from now on.
    #[must_use]
    pub fn with_gauge(mut self, gauge: IntGauge) -> Self {
        gauge.set(self.state().gauge_value());
        self.gauge = Some(gauge);
        self
    }

    /// The current state. An open circuit whose cool-down is over reads as half-open.
    pub fn state(&self) -> CircuitState {
        let mut s = self.lock();
        self.refresh(&mut s);
        Self::public_state(&s.inner)
    }

    /// Asks to send one request.
    ///
    /// # Errors
    /// [`Error::CircuitOpen`] with the time left in the cool-down (zero while half-open probes
    /// are all in flight).
    pub fn try_acquire(&self) -> Result<CircuitPermit<'_>> {
        let mut s = self.lock();
        self.refresh(&mut s);
        let generation = s.generation;
        let probe = match &mut s.inner {
            Inner::Closed { .. } => false,
            Inner::Open { until } => {
                return Err(Error::CircuitOpen {
                    retry_in: until.saturating_duration_since(Instant::now()),
                })
            }
            Inner::HalfOpen { in_flight, successes } => {
                if *in_flight + *successes >= self.cfg.half_open_probes {
                    return Err(Error::CircuitOpen {
                        retry_in: Duration::ZERO,
                    });
                }
                *in_flight += 1;
                true
            }
        };
        Ok(CircuitPermit {
            breaker: self,
            generation,
            probe,
            reported: false,
        })
    }

    /// Runs `op` through the breaker: fails fast when open, records the outcome otherwise.
    ///
    /// # Errors
    /// [`Error::CircuitOpen`], or `op`'s error.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let permit = self.try_acquire()?;
        let result = op().await;
        permit.record(&result);
        result
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding this lock cannot leave the state half-updated in a harmful way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn public_state(inner: &Inner) -> CircuitState {
        match inner {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Moves an open circuit whose cool-down is over to half-open.
    fn refresh(&self, s: &mut Shared) {
        if let Inner::Open { until } = s.inner {
            if Instant::now() >= until {
                self.transition(
                    s,
                    Inner::HalfOpen {
                        in_flight: 0,
                        successes: 0,
                    },
                );
            }
        }
    }

    fn transition(&self, s: &mut Shared, to: Inner) {
        let from = Self::public_state(&s.inner);
        s.inner = to;
        s.generation += 1;
        let now = Self::public_state(&s.inner);
        if let Some(g) = &self.gauge {
            g.set(now.gauge_value());
        }
        match now {
            CircuitState::Open => tracing::warn!(
                from = %from,
                cooldown_ms = self.cfg.cooldown_ms,
                "The EODHD circuit breaker opened; requests fail fast until the cool-down ends."
            ),
            CircuitState::HalfOpen => tracing::info!(from = %from, "The EODHD circuit breaker is half-open; probing."),
            CircuitState::Closed => {
                tracing::info!(from = %from, "The EODHD circuit breaker closed; requests flow again.")
            }
        }
    }

    fn open(&self, s: &mut Shared) {
        let until = Instant::now() + Duration::from_millis(self.cfg.cooldown_ms);
        self.transition(s, Inner::Open { until });
    }

    fn on_success(&self, generation: u64, probe: bool) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        match &mut s.inner {
            Inner::Closed { failures } => *failures = 0,
            Inner::HalfOpen { in_flight, successes } if probe => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                if *successes >= self.cfg.half_open_probes {
                    self.transition(&mut s, Inner::Closed { failures: 0 });
                }
            }
            _ => {}
        }
    }

    fn on_failure(&self, generation: u64, probe: bool) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        match &mut s.inner {
            Inner::Closed { failures } => {
                *failures += 1;
                if *failures >= self.cfg.failure_threshold {
                    self.open(&mut s);
                }
            }
            Inner::HalfOpen { .. } if probe => self.open(&mut s),
            _ => {}
        }
    }

    fn release_probe(&self, generation: u64) {
        let mut s = self.lock();
        if s.generation != generation {
            return;
        }
        if let Inner::HalfOpen { in_flight, .. } = &mut s.inner {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_ms: u64, probes: u32) -> CircuitBreaker {
        let cfg = CircuitBreakerConfig::default()
            .with_failure_threshold(threshold)
            .with_cooldown_ms(cooldown_ms)
            .with_half_open_probes(probes);
        CircuitBreaker::new(&cfg).unwrap()
    }

    /// Each state has one lower-case name, the same in `as_str` and `Display` (logs), and one
    /// gauge value.
    #[test]
    fn states_have_their_log_names_and_gauge_values() {
        let states = [
            (CircuitState::Closed, "closed", 0),
            (CircuitState::HalfOpen, "half_open", 1),
            (CircuitState::Open, "open", 2),
        ];
        for (state, name, gauge) in states {
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(state.gauge_value(), gauge);
        }
    }

    fn fail(b: &CircuitBreaker, n: u32) {
        for _ in 0..n {
            b.try_acquire().unwrap().failure();
        }
    }

    /// A breaker that opened on one failure and whose 10 ms cool-down is over: half-open,
    /// with `probes` probe slots.
    async fn half_open(probes: u32) -> CircuitBreaker {
        let b = breaker(1, 10, probes);
        fail(&b, 1);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        b
    }

    /// The threshold of consecutive failures opens the circuit; a success in between resets
    /// the count.
    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_the_circuit() {
        let b = breaker(3, 1000, 1);
        fail(&b, 2);
        b.try_acquire().unwrap().success();
        fail(&b, 2);
        assert_eq!(b.state(), CircuitState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), CircuitState::Open);
        let err = b.try_acquire().unwrap_err();
        assert!(
            matches!(err, Error::CircuitOpen { retry_in } if retry_in == Duration::from_secs(1)),
            "{err}"
        );
    }

    /// The circuit stays open for exactly the cool-down, then lets one probe through; a
    /// successful probe closes it.
    #[tokio::test(start_paused = true)]
    async fn cooldown_then_successful_probe_closes() {
        let b = breaker(1, 30_000, 1);
        fail(&b, 1);
        tokio::time::advance(Duration::from_millis(29_999)).await;
        assert_eq!(b.state(), CircuitState::Open);
        match b.try_acquire() {
            Err(Error::CircuitOpen { retry_in }) => assert_eq!(retry_in, Duration::from_millis(1)),
            other => panic!("expected CircuitOpen, got {other:?}"),
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert!(
            matches!(b.try_acquire(), Err(Error::CircuitOpen { retry_in }) if retry_in.is_zero()),
            "only one probe at a time"
        );
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// A failed probe re-opens the circuit for another full cool-down.
    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_another_cooldown() {
        let b = breaker(2, 1000, 1);
        fail(&b, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(b.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }

    /// With several probes configured, all must succeed before the circuit closes.
    #[tokio::test(start_paused = true)]
    async fn every_half_open_probe_must_succeed() {
        let b = half_open(3).await;
        let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_err());
        let mut probes = probes.into_iter();
        probes.next().unwrap().success();
        probes.next().unwrap().success();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        probes.next().unwrap().success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// A probe dropped without an outcome (cancelled) frees its slot for another probe.
    #[tokio::test(start_paused = true)]
    async fn dropped_probe_frees_its_slot() {
        let b = half_open(1).await;
        drop(b.try_acquire().unwrap());
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// Half-open, a probe that succeeded still counts against `half_open_probes` (successes
    /// plus probes in flight), and reporting it frees nothing more when it is dropped: with 2
    /// probes, one succeeded and one in flight, no third is let through.
    #[tokio::test(start_paused = true)]
    async fn half_open_probes_count_successes_and_those_in_flight() {
        let b = half_open(2).await;
        let first = b.try_acquire().unwrap();
        let second = b.try_acquire().unwrap();
        first.success();
        assert!(
            matches!(b.try_acquire(), Err(Error::CircuitOpen { retry_in }) if retry_in.is_zero()),
            "one success and one probe in flight fill the two slots"
        );
        second.success();
        assert_eq!(b.state(), CircuitState::Closed);

        let b = half_open(3).await;
        b.try_acquire().unwrap().success();
        b.try_acquire().unwrap().success();
        let third = b.try_acquire().unwrap();
        assert!(
            b.try_acquire().is_err(),
            "two successes and one in flight fill three slots"
        );
        third.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// A cancelled request is neither a failure nor a success: it does not reset the count of
    /// consecutive failures.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_counts_as_nothing() {
        let b = breaker(2, 1000, 1);
        fail(&b, 1);
        b.try_acquire().unwrap().record::<()>(&Err(Error::Cancelled));
        fail(&b, 1);
        assert_eq!(b.state(), CircuitState::Open);
    }

    /// The breaker runs with, and shows, the configuration it was made with.
    #[test]
    fn the_breaker_shows_its_configuration() {
        let cfg = CircuitBreakerConfig::default()
            .with_failure_threshold(7)
            .with_cooldown_ms(1234)
            .with_half_open_probes(2);
        assert_eq!(*CircuitBreaker::new(&cfg).unwrap().config(), cfg);
    }

    /// Outcomes of requests that began before the circuit opened change nothing.
    #[tokio::test(start_paused = true)]
    async fn late_outcomes_from_an_older_state_are_ignored() {
        let b = breaker(1, 1000, 1);
        let slow = b.try_acquire().unwrap();
        fail(&b, 1);
        slow.success();
        assert_eq!(b.state(), CircuitState::Open);

        // A failure reported after the circuit opened and closed again is not counted in the
        // new closed state.
        let b = breaker(2, 10, 1);
        let slow = b.try_acquire().unwrap();
        fail(&b, 2);
        tokio::time::advance(Duration::from_millis(10)).await;
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), CircuitState::Closed);
        slow.failure();
        fail(&b, 1);
        assert_eq!(b.state(), CircuitState::Closed, "only one failure since it closed");
    }

    /// `call` counts upstream failures but treats 4xx replies as a live upstream; the gauge
    /// follows every transition (0 closed, 1 half-open, 2 open).
    #[tokio::test(start_paused = true)]
    async fn call_classifies_outcomes_and_the_gauge_follows() {
        let gauge = IntGauge::new("mt5_eodhd_circuit_state", "test").unwrap();
        let b = breaker(2, 100, 1).with_gauge(gauge.clone());
        let server_error = || async {
            Err::<(), _>(Error::Server {
                status: 503,
                detail: String::new(),
            })
        };
        let forbidden = || async { Err::<(), _>(Error::Forbidden { detail: String::new() }) };
        b.call(server_error).await.unwrap_err();
        b.call(forbidden).await.unwrap_err();
        b.call(server_error).await.unwrap_err();
        assert_eq!(gauge.get(), 0, "a 403 in between resets the count");
        b.call(server_error).await.unwrap_err();
        assert_eq!(gauge.get(), 2);
        assert!(matches!(
            b.call(|| async { Ok(()) }).await,
            Err(Error::CircuitOpen { .. })
        ));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(gauge.get(), 1);
        b.call(|| async { Ok(()) }).await.unwrap();
        assert_eq!(gauge.get(), 0);
    }
}
