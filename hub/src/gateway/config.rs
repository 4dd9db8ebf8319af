//! `[http.gateway]`: what the HTTP gateway serves and its limits.

use mt5_bus::validate::{at_most, positive, within};
use mt5_bus::{InvalidConfig, Secret};
use serde::{Deserialize, Serialize};

/// Largest body limit a config may set (16 MiB): a stream entry is far smaller.
const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Most entries a shared tail may hold per stream (~1.5 GB of 1.5 KB events).
const MAX_TAIL_ENTRIES: usize = 1_000_000;
/// Longest long-poll a config may allow (5 minutes).
const MAX_BLOCK_LIMIT_MS: u64 = 300_000;
/// Longest linger a config may set (1 s: the end-to-end latency budget).
const MAX_LINGER_MS: u64 = 1000;

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
    /// Newest entries of each readable stream held in memory, already encoded, for long-polls
    /// near the stream's end (one `XREAD` per stream serves every terminal); 0 turns the shared
    /// tail off (every read then goes to Redis). Default 10000.
    pub(crate) tail_entries: usize,
    /// How long a long-poll short of `count` waits after its first entry for more before it
    /// answers, in milliseconds (never past its `block_ms`, and not once it has `count`). Under
    /// a stream of single events each terminal then gets fewer, fuller answers, at up to this
    /// much more delivery latency. Served from the shared tail only. 0 answers with the first
    /// entries. Default 5 (at most 1000), as Kafka 4.0's producer `linger.ms`.
    pub(crate) linger_ms: u64,
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
            tail_entries: 10_000,
            linger_ms: 5,
        }
    }
}

impl GatewayConfig {
    /// Checks ranges and stream names.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first bad field.
    pub(crate) fn validate(&self) -> Result<(), InvalidConfig> {
        for (field, streams) in [
            ("http.gateway.read_streams", &self.read_streams),
            ("http.gateway.write_streams", &self.write_streams),
        ] {
            if let Some(s) = streams.iter().find(|s| s.trim().is_empty() || s.trim() != s.as_str()) {
                return Err(InvalidConfig::new(
                    field,
                    format!("{s:?} is not a stream name (empty or padded with spaces)"),
                ));
            }
        }
        within(
            "http.gateway.max_body_bytes",
            self.max_body_bytes,
            1024..=MAX_BODY_LIMIT,
        )?;
        within("http.gateway.max_count", self.max_count, 1..=10_000)?;
        within("http.gateway.default_count", self.default_count, 1..=self.max_count)?;
        at_most("http.gateway.max_block_ms", self.max_block_ms, MAX_BLOCK_LIMIT_MS)?;
        positive("http.gateway.max_concurrent_reads", self.max_concurrent_reads)?;
        at_most("http.gateway.tail_entries", self.tail_entries, MAX_TAIL_ENTRIES)?;
        at_most("http.gateway.linger_ms", self.linger_ms, MAX_LINGER_MS)
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
            (
                GatewayConfig {
                    tail_entries: 2_000_000,
                    ..GatewayConfig::default()
                },
                "http.gateway.tail_entries",
            ),
            (
                GatewayConfig {
                    linger_ms: 1001,
                    ..GatewayConfig::default()
                },
                "http.gateway.linger_ms",
            ),
        ];
        for (c, field) in cases {
            let err = c.validate().expect_err(field);
            assert_eq!(err.key(), field, "{err}");
        }
    }
}
