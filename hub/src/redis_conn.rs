//! Connections for one-shot commands: connect and run each operation with the bounded retries of
//! `bus.retry`, so an unreachable Redis ends in `RetriesExhausted` (exit code 3).

use std::future::Future;

use mt5_bus::{retry_transient, Connection, Redis};
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;

/// A self-reconnecting connection plus the retry settings of one-shot use.
#[derive(Clone)]
pub(crate) struct OneShot {
    conn: Connection,
    cfg: HubConfig,
    cancel: CancellationToken,
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot")
            .field("redis", &self.cfg.redis.redacted_url())
            .finish_non_exhaustive()
    }
}

impl OneShot {
    /// Connects with bounded retries.
    ///
    /// # Errors
    /// [`HubError::Bus`] with `RetriesExhausted` when Redis stays unreachable, or a config error.
    pub(crate) async fn connect(cfg: &HubConfig, cancel: &CancellationToken) -> Result<Self, HubError> {
        let redis = Redis::new(&cfg.redis)?;
        let retry = &cfg.bus.retry;
        let conn = retry_transient(retry, Some(retry.max_attempts), cancel, "connecting to Redis", || {
            redis.managed()
        })
        .await
        .map_err(|e| classify(cfg, e))?;
        Ok(OneShot {
            conn,
            cfg: cfg.clone(),
            cancel: cancel.clone(),
        })
    }

    /// Runs `op` on a clone of the connection, retrying transient errors `bus.retry.max_attempts`
    /// times. Only for operations that are safe to repeat.
    ///
    /// # Errors
    /// The operation's permanent error, or `RetriesExhausted`.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, HubError>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = mt5_bus::Result<T>>,
    {
        let retry = &self.cfg.bus.retry;
        retry_transient(retry, Some(retry.max_attempts), &self.cancel, what, || {
            op(self.conn.clone())
        })
        .await
        .map_err(|e| classify(&self.cfg, e))
    }
}

/// Turns a bus error into the hub's, adding the (redacted) Redis URL to an error that means
/// "Redis unreachable" (exit code 3).
pub(crate) fn classify(cfg: &HubConfig, e: mt5_bus::Error) -> HubError {
    if crate::error::bus_exit_code(&e) == crate::error::EXIT_UNREACHABLE {
        HubError::Unreachable {
            url: cfg.redis.redacted_url(),
            source: e,
        }
    } else {
        HubError::Bus(e)
    }
}
