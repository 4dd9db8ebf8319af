//! `[news.eodhd.circuit_breaker]`: when to stop calling a failing upstream.

use serde::{Deserialize, Serialize};

use mt5_bus::validate::positive;
use mt5_bus::InvalidConfig;

/// Circuit breaker thresholds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// Consecutive upstream failures (5xx, timeouts, connection errors, invalid responses) that
    /// open the circuit. Default 5.
    pub failure_threshold: u32,
    /// How long the circuit stays open before probes are let through, in ms. Default 30000.
    pub cooldown_ms: u64,
    /// Probes let through while half-open, and successes needed to close again; one failed
    /// probe opens the circuit for another cool-down. Default 1.
    pub half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 5,
            cooldown_ms: 30_000,
            half_open_probes: 1,
        }
    }
}

impl CircuitBreakerConfig {
    /// Sets `failure_threshold`.
    #[must_use]
    pub fn with_failure_threshold(mut self, failure_threshold: u32) -> Self {
        self.failure_threshold = failure_threshold;
        self
    }

    /// Sets `cooldown_ms`.
    #[must_use]
    pub fn with_cooldown_ms(mut self, cooldown_ms: u64) -> Self {
        self.cooldown_ms = cooldown_ms;
        self
    }

    /// Sets `half_open_probes`.
    #[must_use]
    pub fn with_half_open_probes(mut self, half_open_probes: u32) -> Self {
        self.half_open_probes = half_open_probes;
        self
    }

    /// Validates the ranges.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        positive("news.eodhd.circuit_breaker.failure_threshold", self.failure_threshold)?;
        positive("news.eodhd.circuit_breaker.cooldown_ms", self.cooldown_ms)?;
        positive("news.eodhd.circuit_breaker.half_open_probes", self.half_open_probes)
    }
}
