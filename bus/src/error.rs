//! The bus's one error type and its classifier.

use std::time::Duration;

use crate::validate::InvalidConfig;

/// Result alias for the bus.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis driver failed (connection, protocol or a server error reply).
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A configuration value is invalid; the [`InvalidConfig`] names its dotted key.
    #[error(transparent)]
    Config(#[from] InvalidConfig),
    /// An event is larger than the maximum entry size; `publish` refuses it.
    #[error("entry of {size} bytes exceeds the maximum entry size of {max} bytes")]
    EntryTooLarge {
        /// The encoded size of the entry.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream's backlog reached the hard limit: publish fails loudly instead of trimming unread
    /// entries away (backpressure).
    #[error("backlog limit reached on stream {stream}: {length} entries >= limit {limit}; consumers are behind")]
    Backpressure {
        /// The stream.
        stream: String,
        /// Its length when the publish was refused.
        length: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A Redis reply did not have the expected shape.
    #[error("unexpected reply to {command}: {detail}")]
    UnexpectedReply {
        /// The command whose reply was odd.
        command: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The consumer group does not exist on a stream that has entries (or it disappeared while
    /// consumers ran). It is never recreated silently: at `0` it would process the whole retained
    /// stream again. The message names the explicit fix.
    #[error(
        "consumer group {group} does not exist on stream {stream}, and it is not created automatically on a stream with entries (at 0 it would process every retained entry again): create it with `mt5-hub groups create --stream {stream} --group {group} --at 0|$|ID` (ID = the last entry id the group processed; 0 = everything again; $ = only new entries)"
    )]
    GroupMissing {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
    },
    /// A dead letter entry id was not found.
    #[error("no dead letter entry with id {0}")]
    DeadLetterNotFound(String),
    /// A dead letter entry lacks the `dlq_stream` field, so it cannot be replayed.
    #[error("dead letter entry {0} has no dlq_stream field; it cannot be replayed")]
    NotReplayable(String),
    /// Gave up after bounded retries of a transient error.
    #[error("gave up after {attempts} attempts over {elapsed:?}: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last error.
        last: Box<Error>,
    },
    /// In `replicated` or `fsync` durability, the write got fewer acknowledgements than asked
    /// within `bus.durability_timeout_ms` (`WAIT`: replicas; `WAITAOF`: the master's own AOF
    /// fsync plus the replicas'). Transient: a publish is sent again under its idempotency key,
    /// a settle's wait is repeated.
    #[error("{command} after the {op}: only {acked} of {wanted} acknowledgements within the timeout")]
    DurabilityShort {
        /// What was written (`publish` or `settle`).
        op: &'static str,
        /// The wait: `WAIT` or `WAITAOF`.
        command: &'static str,
        /// Acknowledgements received.
        acked: u32,
        /// Acknowledgements asked for.
        wanted: u32,
    },
    /// The server cannot do what the configuration asks (for example `fsync` durability on a
    /// Redis without `WAITAOF`). Permanent: refused at start.
    #[error("{what} is not supported here: {detail}")]
    Unsupported {
        /// The setting.
        what: &'static str,
        /// Why, and what to do instead.
        detail: String,
    },
    /// The operation was cancelled by shutdown.
    #[error("cancelled by shutdown")]
    Cancelled,
    /// Registering a metric failed (for example a duplicate registration).
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
}

/// Server error codes that are transient everywhere on the bus (ARCHITECTURE.md, "Errors"): the
/// command may succeed if retried later, possibly elsewhere (later topologies only add
/// re-routing). `NOGROUP` is not among them: a missing group is never taken for a passing fault.
pub const TRANSIENT_CODES: &[&str] = &[
    "OOM",
    "BUSY",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "UNBLOCKED",
    "MOVED",
    "ASK",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOSCRIPT",
    "NOREPLICAS",
];

impl Error {
    /// Whether retrying later may succeed: connection loss, timeouts, and the replies of
    /// [`TRANSIENT_CODES`]. Everything else (bad arguments, wrong types, validation, a missing
    /// group) is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => redis_is_transient(e),
            Error::DurabilityShort { .. } => true,
            Error::RetriesExhausted { .. } => false,
            _ => false,
        }
    }

    /// Whether this error means "Redis is unavailable": a transient reply (the list in
    /// [`TRANSIENT_CODES`]), a lost or refused connection, a timeout, or bounded retries of those
    /// exhausted. The one classifier behind exit code 3, the services' retries, the gateway's
    /// 503 and the load publisher's waits.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::RetriesExhausted { .. }) || self.is_transient() || self.is_connection_dropped()
    }

    /// Whether the connection this error came from should be dropped and re-established: it is
    /// lost, or its server is no longer a master that can serve us (`READONLY`, `MASTERDOWN`,
    /// `UNBLOCKED`: a demoted master; `LOADING`: a restart; `NOREPLICAS`: a master fenced by
    /// `min-replicas-to-write`, such as an old master back after a failover). In sentinel mode the new connection
    /// goes to the master the sentinels name then.
    pub fn is_connection_dropped(&self) -> bool {
        match self {
            Error::Redis(e) => needs_new_connection(e),
            _ => false,
        }
    }

    /// Whether this is Redis's `NOSCRIPT` reply (the script cache was flushed, e.g. by a restart).
    pub fn is_noscript(&self) -> bool {
        matches!(self, Error::Redis(e) if e.code() == Some("NOSCRIPT"))
    }

    /// Whether this is Redis's `NOGROUP` reply (the stream or group is missing).
    pub fn is_nogroup(&self) -> bool {
        matches!(self, Error::Redis(e) if e.code() == Some("NOGROUP"))
    }

    /// Whether the consumer group is gone: Redis's `NOGROUP` reply, or
    /// [`Error::GroupMissing`] (found on a reconnect, on a stream with entries).
    pub fn is_group_missing(&self) -> bool {
        self.is_nogroup() || matches!(self, Error::GroupMissing { .. })
    }

    /// Whether a server reply with this error code was returned.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Error::Redis(e) if e.code() == Some(code))
    }
}

/// Whether a driver error is Redis's `ERR no such key` (an `XINFO` of a missing stream).
pub(crate) fn is_no_such_key(e: &redis::RedisError) -> bool {
    e.detail().is_some_and(|d| d.contains("no such key"))
}

/// Replies after which a connection is replaced (see [`Error::is_connection_dropped`]).
const NEW_CONNECTION_CODES: &[&str] = &["READONLY", "MASTERDOWN", "UNBLOCKED", "LOADING", "NOREPLICAS"];

/// Whether a driver error means the connection must be replaced: any I/O failure (in the
/// driver, a dropped or refused connection and a timeout are I/O errors too, which
/// `io_failures_of_every_kind_are_io_errors_to_the_driver` pins), or a reply that says the
/// server is no longer the master or not ready.
pub(crate) fn needs_new_connection(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.code().is_some_and(|c| NEW_CONNECTION_CODES.contains(&c))
}

/// The classifier for raw driver errors, shared with code that holds a `RedisError`.
pub fn redis_is_transient(e: &redis::RedisError) -> bool {
    // Dropped, refused and timed-out connections included (see `needs_new_connection`).
    if e.is_io_error() {
        return true;
    }
    // A pipeline or an aborted transaction carries the server errors of its commands (its own
    // code is e.g. `EXECABORT`): it is transient when every one of them is, as when Redis at
    // `maxmemory` refuses each `XADD` of a batch with `OOM`.
    match e.clone().into_server_errors() {
        Some(errors) if !errors.is_empty() => errors.iter().all(|(_, s)| TRANSIENT_CODES.contains(&s.code())),
        _ => e.code().is_some_and(|code| TRANSIENT_CODES.contains(&code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &'static str) -> Error {
        let e: redis::RedisError = redis::make_extension_error(code.to_string(), Some("detail".into()));
        Error::Redis(e)
    }

    #[test]
    fn the_contracts_transient_replies_are_transient() {
        for code in [
            "OOM",
            "BUSY",
            "LOADING",
            "READONLY",
            "MASTERDOWN",
            "UNBLOCKED",
            "MOVED",
            "ASK",
            "TRYAGAIN",
            "CLUSTERDOWN",
            "NOSCRIPT",
        ] {
            assert!(server_error(code).is_transient(), "{code}");
            assert!(!server_error(code).is_nogroup(), "{code} taken for a missing group");
        }
    }

    /// A master fenced by `min-replicas-to-write` (an old master back after a failover, or one
    /// whose replicas are gone) answers `NOREPLICAS`: transient, and the connection is replaced
    /// (in sentinel mode the new one goes to the master the sentinels name).
    #[test]
    fn a_fenced_master_is_transient_and_its_connection_replaced() {
        let e = server_error("NOREPLICAS");
        assert!(e.is_transient() && e.is_unavailable());
        assert!(e.is_connection_dropped());
        assert!(!server_error("WRONGTYPE").is_connection_dropped());
        assert!(!server_error("OOM").is_connection_dropped());
    }

    #[test]
    fn a_missing_group_is_not_transient() {
        let e = server_error("NOGROUP");
        assert!(e.is_nogroup());
        assert!(!e.is_transient());
    }

    #[test]
    fn wrongtype_and_validation_are_permanent() {
        assert!(!server_error("WRONGTYPE").is_transient());
        assert!(!Error::EntryTooLarge { size: 2, max: 1 }.is_transient());
    }

    /// The classifiers ask only `is_io_error()` for I/O failures: that rests on the driver
    /// (redis 1.8, vendored) building every error that is a dropped or refused connection or a
    /// timeout from an `io::Error`, as an I/O error.
    #[test]
    fn io_failures_of_every_kind_are_io_errors_to_the_driver() {
        use std::io::ErrorKind as K;
        for kind in [
            K::BrokenPipe,
            K::ConnectionReset,
            K::ConnectionRefused,
            K::ConnectionAborted,
            K::UnexpectedEof,
            K::NotConnected,
            K::NotFound,
            K::TimedOut,
            K::WouldBlock,
        ] {
            let e = redis::RedisError::from(std::io::Error::new(kind, "x"));
            assert!(
                e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout(),
                "{kind:?}"
            );
            assert!(e.is_io_error(), "{kind:?}");
            assert!(needs_new_connection(&e) && redis_is_transient(&e), "{kind:?}");
        }
        let dropped = redis::RedisError::from((redis::ErrorKind::Io, "connection dropped"));
        assert!(dropped.is_connection_dropped() && dropped.is_io_error());
    }

    #[test]
    fn io_errors_are_transient_and_drop_the_connection() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = Error::Redis(redis::RedisError::from(io));
        assert!(e.is_transient());
        assert!(e.is_connection_dropped());
    }

    /// One classifier says "Redis is unavailable": transient replies, lost connections and
    /// exhausted retries are; a script error, a config error or a missing group are not.
    #[test]
    fn unavailable_means_transient_dropped_or_retries_exhausted() {
        assert!(server_error("OOM").is_unavailable());
        assert!(server_error("LOADING").is_unavailable());
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(Error::Redis(redis::RedisError::from(refused)).is_unavailable());
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            elapsed: std::time::Duration::from_millis(5),
            last: Box::new(server_error("OOM")),
        };
        assert!(exhausted.is_unavailable());
        assert!(!server_error("ERR").is_unavailable());
        assert!(!server_error("NOGROUP").is_unavailable());
        assert!(!server_error("WRONGTYPE").is_unavailable());
        assert!(!Error::Cancelled.is_unavailable());
    }
}
