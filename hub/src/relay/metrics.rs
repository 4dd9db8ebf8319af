//! `mt5_alerts_relayed_total{outcome}`.

use prometheus::{IntCounterVec, Opts, Registry};

/// A notification delivered in a message of its own.
pub(crate) const SENT: &str = "sent";
/// A notification delivered merged with others (the rate limit was reached).
pub(crate) const MERGED: &str = "merged";
/// A notification whose delivery failed (retries exhausted, or DingTalk refused it).
pub(crate) const FAILED: &str = "failed";
/// A request to DingTalk repeated after a transient failure.
pub(crate) const RETRIED: &str = "retried";
/// A notification given up before it was sent: its webhook call timed out or went away, the
/// queue was full, or the relay was shutting down. Alertmanager retries it.
pub(crate) const EXPIRED: &str = "expired";
/// A webhook body that could not be parsed (answered 400).
pub(crate) const INVALID: &str = "invalid";

const OUTCOMES: [&str; 6] = [SENT, MERGED, FAILED, RETRIED, EXPIRED, INVALID];

/// The relay's metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct RelayMetrics {
    /// `mt5_alerts_relayed_total{outcome}`.
    relayed: IntCounterVec,
}

impl RelayMetrics {
    /// Creates the metrics, every outcome at 0, and registers them in `registry`.
    ///
    /// # Errors
    /// [`prometheus::Error::AlreadyReg`] when registered twice.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.relayed.clone()))?;
        Ok(m)
    }

    /// Metrics registered nowhere (tests).
    ///
    /// # Errors
    /// Never for this static definition.
    pub(crate) fn unregistered() -> prometheus::Result<Self> {
        let relayed = IntCounterVec::new(
            Opts::new(
                "mt5_alerts_relayed_total",
                "Alertmanager notifications relayed to DingTalk, by outcome: sent, merged, failed, \
                 expired, invalid; retried counts repeated requests.",
            ),
            &["outcome"],
        )?;
        for o in OUTCOMES {
            relayed.with_label_values(&[o]);
        }
        Ok(RelayMetrics { relayed })
    }

    /// Adds `n` to `outcome`.
    pub(crate) fn add(&self, outcome: &str, n: usize) {
        self.relayed.with_label_values(&[outcome]).inc_by(n as u64);
    }

    /// The count of `outcome` (tests).
    #[cfg(test)]
    pub(crate) fn count(&self, outcome: &str) -> u64 {
        self.relayed.with_label_values(&[outcome]).get()
    }
}
