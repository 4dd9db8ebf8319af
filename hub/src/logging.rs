//! Logging setup: tracing to stderr, filtered by `MT5_LOG` (as `RUST_LOG`, default `info`), as
//! human-readable lines or JSON (`MT5_LOG_FORMAT=pretty|json`, default `pretty`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Env var holding the log filter.
pub(crate) const LOG_ENV: &str = "MT5_LOG";
/// Env var choosing the log format.
pub(crate) const LOG_FORMAT_ENV: &str = "MT5_LOG_FORMAT";
/// The filter when `MT5_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LogFormat {
    /// One readable line per event. This is the default.
    #[default]
    Pretty,
    /// One JSON object per event.
    Json,
}

impl LogFormat {
    /// Parses `MT5_LOG_FORMAT`; unset or empty is the default.
    ///
    /// # Errors
    /// A message naming the variable and the accepted values.
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim).unwrap_or_default() {
            "" | "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{LOG_FORMAT_ENV}={other:?} is not valid: expected pretty or json"
            )),
        }
    }
}

/// Parses the filter; unset or empty is `info`.
///
/// # Errors
/// A message naming the variable and the parse error.
pub(crate) fn filter(value: Option<&str>) -> Result<EnvFilter, String> {
    let spec = value.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_FILTER);
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| format!("{LOG_ENV}={spec:?} is not a valid filter: {e}"))
}

/// Installs the global subscriber from `MT5_LOG` and `MT5_LOG_FORMAT`.
///
/// # Errors
/// A message for an invalid filter or format (exit code 2).
pub(crate) fn init() -> Result<(), String> {
    let format = LogFormat::parse(std::env::var(LOG_FORMAT_ENV).ok().as_deref())?;
    let filter = filter(std::env::var(LOG_ENV).ok().as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats and filters parse as documented, and bad values name their variable.
    #[test]
    fn formats_and_filters_parse_as_documented() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Pretty));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        assert!(LogFormat::parse(Some("xml")).unwrap_err().contains(LOG_FORMAT_ENV));
        assert_eq!(filter(None).unwrap().to_string(), "info");
        assert!(filter(Some("mt5_bus=debug,warn")).is_ok());
        assert!(filter(Some("[[[")).unwrap_err().contains(LOG_ENV));
    }
}
