//! The hub's error type and how each error maps to the contract's exit codes.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code: runtime failure.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code: usage or configuration error.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code: Redis unreachable after bounded retries (one-shot commands only).
pub(crate) const EXIT_UNREACHABLE: u8 = 3;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HubError {
    /// The configuration could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command line or its input is unusable (beyond what clap checks).
    #[error("{0}")]
    Usage(String),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] mt5_bus::Error),
    /// Redis stayed unreachable through the bounded retries.
    #[error("Redis at {url} is unreachable: {source}")]
    Unreachable {
        /// The redacted URL.
        url: String,
        /// The last error.
        source: mt5_bus::Error,
    },
    /// Reading input or writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command ran but did not fully succeed (the details were already reported).
    #[error("{0}")]
    Failed(String),
}

impl HubError {
    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HubError::Io {
            context: context.into(),
            source,
        }
    }

    /// The contract's exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            HubError::Config(_) | HubError::Usage(_) => EXIT_USAGE,
            HubError::Bus(e) => bus_exit_code(e),
            HubError::Unreachable { .. } => EXIT_UNREACHABLE,
            HubError::Io { .. } | HubError::Failed(_) => EXIT_FAILURE,
        }
    }

    /// The exit code as the process's.
    pub(crate) fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}

/// A bus error's exit code: configuration errors, a setting the server cannot honour (`fsync`
/// durability without `WAITAOF`) and a group missing on a stream with entries are 2; Redis staying unreachable (bounded
/// retries exhausted, or a transient or connection error that survived them) is 3; the rest 1.
pub(crate) fn bus_exit_code(e: &mt5_bus::Error) -> u8 {
    match e {
        // A configured group missing on a stream with entries: the operator must choose where
        // it starts (`groups create`), so it is a configuration error, not a runtime failure.
        mt5_bus::Error::Config(_) | mt5_bus::Error::Unsupported { .. } | mt5_bus::Error::GroupMissing { .. } => {
            EXIT_USAGE
        }
        e if e.is_unavailable() => EXIT_UNREACHABLE,
        _ => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use mt5_fixtures::redis;

    use super::*;

    /// The classification the exit code contract relies on.
    #[test]
    fn exit_codes_follow_the_contract() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let redis_down = mt5_bus::Error::Redis(redis::RedisError::from(refused));
        assert_eq!(HubError::from(redis_down).exit_code(), EXIT_UNREACHABLE);
        let exhausted = mt5_bus::Error::RetriesExhausted {
            attempts: 2,
            elapsed: std::time::Duration::from_millis(5),
            last: Box::new(mt5_bus::Error::Cancelled),
        };
        assert_eq!(HubError::from(exhausted).exit_code(), EXIT_UNREACHABLE);
        let config = mt5_bus::Error::Config(mt5_bus::InvalidConfig::new("bus.x", "bad"));
        assert_eq!(HubError::from(config).exit_code(), EXIT_USAGE);
        let missing = mt5_bus::Error::GroupMissing {
            stream: "s".into(),
            group: "g".into(),
        };
        assert_eq!(HubError::from(missing).exit_code(), EXIT_USAGE);
        let unsupported = mt5_bus::Error::Unsupported {
            what: "bus.durability = \"fsync\"",
            detail: "no WAITAOF".into(),
        };
        assert_eq!(HubError::from(unsupported).exit_code(), EXIT_USAGE);
        let wrongtype = redis::make_extension_error("WRONGTYPE".into(), None);
        assert_eq!(
            HubError::from(mt5_bus::Error::Redis(wrongtype)).exit_code(),
            EXIT_FAILURE
        );
        assert_eq!(HubError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(HubError::Failed("x".into()).exit_code(), EXIT_FAILURE);
    }
}
