//! `[http.gateway]`: what the HTTP gateway serves and its limits.

use mt5_bus::Secret;
use serde::{Deserialize, Serialize};

use crate::config::InvalidSetting;

/// Largest body limit a config may set (16 MiB): a stream entry is far smaller.
const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Longest long-poll a config may allow (5 minutes).
const MAX_BLOCK_LIMIT_MS: u64 = 300_000;

/// `[http.gateway]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub(crate) struct GatewayConfig {
    /// The bearer token every `/v1` request must carry (`Authorization: Bearer <token>`). Only
    /// from the env `MT5_GATEWAY_TOKEN`; `mt5-hub gateway` refuses to start without it.
    pub(crate) token: Secret,
    /// Streams `GET /v1/streams/{stream}/events` may read. Default: the filtered news stream.
    pub(crate) read_streams: Vec<String>,
    /// Streams `POST /v1/streams/{stream}/events` may write. Default: none.
    pub(crate) write_streams: Vec<String>,
    /// Largest request body, in bytes (413 beyond). Default 65536.
    pub(crate) max_body_bytes: usize,
    /// Entries a read returns when it does not say (`count`). Default 100.
    pub(crate) default_count: usize,
    /// Largest `count` of a read, and most events in one `POST` array. Default 1000.
    pub(crate) max_count: usize,
    /// Longest `block_ms` of a read (a long-poll). Default 30000.
    pub(crate) max_block_ms: u64,
    /// Reads served at once, each on its own Redis connection (a blocked `XREAD` holds its
    /// connection); more get 503 with `Retry-After`. Default 256.
    pub(crate) max_concurrent_reads: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            token: Secret::default(),
            read_streams: vec!["mt5:events:news_filtered".to_string()],
            write_streams: Vec::new(),
            max_body_bytes: 65_536,
            default_count: 100,
            max_count: 1000,
            max_block_ms: 30_000,
            max_concurrent_reads: 256,
        }
    }
}

impl GatewayConfig {
    /// Checks ranges and stream names.
    ///
    /// # Errors
    /// [`InvalidSetting`] naming the first bad field.
    pub(crate) fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |field, reason: String| Err(InvalidSetting { field, reason });
        for (field, streams) in [
            ("http.gateway.read_streams", &self.read_streams),
            ("http.gateway.write_streams", &self.write_streams),
        ] {
            if let Some(s) = streams.iter().find(|s| s.trim().is_empty() || s.trim() != s.as_str()) {
                return bad(
                    field,
                    format!("{s:?} is not a stream name (empty or padded with spaces)"),
                );
            }
        }
        if !(1024..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            return bad(
                "http.gateway.max_body_bytes",
                format!("must be between 1024 and {MAX_BODY_LIMIT}"),
            );
        }
        if self.max_count == 0 || self.max_count > 10_000 {
            return bad("http.gateway.max_count", "must be between 1 and 10000".into());
        }
        if self.default_count == 0 || self.default_count > self.max_count {
            return bad(
                "http.gateway.default_count",
                format!("must be between 1 and max_count ({})", self.max_count),
            );
        }
        if self.max_block_ms > MAX_BLOCK_LIMIT_MS {
            return bad(
                "http.gateway.max_block_ms",
                format!("must be at most {MAX_BLOCK_LIMIT_MS}"),
            );
        }
        if self.max_concurrent_reads == 0 {
            return bad("http.gateway.max_concurrent_reads", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid: the filtered stream readable, nothing writable.
    #[test]
    fn defaults_are_valid_and_read_only() {
        let c = GatewayConfig::default();
        c.validate().unwrap();
        assert_eq!(c.read_streams, ["mt5:events:news_filtered"]);
        assert!(c.write_streams.is_empty());
    }

    /// Each out-of-range setting is refused, naming its key.
    #[test]
    fn bad_settings_name_their_key() {
        let cases: Vec<(GatewayConfig, &str)> = vec![
            (
                GatewayConfig {
                    read_streams: vec![" s".into()],
                    ..GatewayConfig::default()
                },
                "http.gateway.read_streams",
            ),
            (
                GatewayConfig {
                    write_streams: vec![String::new()],
                    ..GatewayConfig::default()
                },
                "http.gateway.write_streams",
            ),
            (
                GatewayConfig {
                    max_body_bytes: 10,
                    ..GatewayConfig::default()
                },
                "http.gateway.max_body_bytes",
            ),
            (
                GatewayConfig {
                    max_count: 0,
                    ..GatewayConfig::default()
                },
                "http.gateway.max_count",
            ),
            (
                GatewayConfig {
                    default_count: 2000,
                    ..GatewayConfig::default()
                },
                "http.gateway.default_count",
            ),
            (
                GatewayConfig {
                    max_block_ms: 600_000,
                    ..GatewayConfig::default()
                },
                "http.gateway.max_block_ms",
            ),
            (
                GatewayConfig {
                    max_concurrent_reads: 0,
                    ..GatewayConfig::default()
                },
                "http.gateway.max_concurrent_reads",
            ),
        ];
        for (c, field) in cases {
            let err = c.validate().expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
    }
}
