//! Serde-loaded settings of the bus. Every default lives in one `impl Default` per struct, and
//! every field's doc names its unit and default: these comments are the operator documentation.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::validate::{ensure, non_empty, positive, within, InvalidConfig};

/// A secret string: never printed by `Debug` or `Display`, serialized as `"***"`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// How the bus finds its Redis master.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server at `redis.url`.
    #[default]
    Standalone,
    /// The master named `redis.sentinel_master`, as `redis.sentinels` report it: every connection
    /// asks them for the current master (and checks its `ROLE`), so the services follow a
    /// failover without a restart. `redis.url` then gives only the scheme (TLS), the user, the
    /// password and the database; its host and port are ignored.
    Sentinel,
}

/// `[redis]`: where the bus's Redis is.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Redis URL: `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS; Redis 7.0+. In
    /// sentinel mode only its scheme, user, password and database count. Default
    /// `redis://127.0.0.1:6379` (env `MT5_REDIS_URL`).
    pub url: String,
    /// Password, when not in the URL (env `MT5_REDIS_PASSWORD`). Default none.
    pub password: Option<Secret>,
    /// Time to establish a connection, in ms. Default 2000.
    pub connect_timeout_ms: u64,
    /// Time to wait for a reply to an ordinary command, in ms. Default 5000. Blocking reads use
    /// their own connection with `block_ms` plus this margin.
    pub response_timeout_ms: u64,
    /// `standalone` (default) or `sentinel`.
    pub mode: RedisMode,
    /// The master's name in the sentinels' configuration (`sentinel monitor <name> ...`), in
    /// sentinel mode. Default `mymaster`.
    pub sentinel_master: String,
    /// The sentinels, `host:port` each, asked in order, in sentinel mode. Default none.
    pub sentinels: Vec<String>,
    /// The sentinels' password (`requirepass` of the sentinels), only from the env
    /// `MT5_REDIS_SENTINEL_PASSWORD`. Default none.
    pub sentinel_password: Secret,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            password: None,
            connect_timeout_ms: 2000,
            response_timeout_ms: 5000,
            mode: RedisMode::Standalone,
            sentinel_master: "mymaster".into(),
            sentinels: Vec::new(),
            sentinel_password: Secret::default(),
        }
    }
}

impl RedisConfig {
    /// A config for the given URL with every other default.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Sentinel mode for `master` as `sentinels` (`host:port` each) report it; the URL keeps
    /// giving the scheme, credentials and database.
    #[must_use]
    pub fn with_sentinels(
        mut self,
        master: impl Into<String>,
        sentinels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.mode = RedisMode::Sentinel;
        self.sentinel_master = master.into();
        self.sentinels = sentinels.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the URL: a scheme we support, not a cluster or sentinel URL (sentinel mode is
    /// `mode = "sentinel"`); in sentinel mode, the master's name and the sentinels' addresses.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming `redis.url` or a timeout.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let url = self.url.trim();
        let scheme = url.split("://").next().unwrap_or_default();
        let reason = match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" if url.contains("://") => None,
            "redis-sentinel" | "sentinel" => Some(
                "a Sentinel URL is not read: set redis.mode = \"sentinel\", redis.sentinel_master and redis.sentinels, and keep redis.url for the scheme, user, password and database"
                    .to_string(),
            ),
            "redis-cluster" | "cluster" => Some(
                "Redis Cluster is not supported yet (wave 1 targets standalone Redis 7.0+)".to_string(),
            ),
            _ => Some(format!(
                "expected redis://host:port or rediss://host:port, got {}",
                redact_url(url)
            )),
        };
        if let Some(reason) = reason {
            return Err(InvalidConfig::new("redis.url", reason));
        }
        ensure(
            !url.contains(','),
            "redis.url",
            "several hosts look like a cluster or sentinel seed list: for Sentinel set redis.mode = \"sentinel\" and list them in redis.sentinels; Redis Cluster is not supported yet",
        )?;
        positive("redis.connect_timeout_ms", self.connect_timeout_ms)?;
        positive("redis.response_timeout_ms", self.response_timeout_ms)?;
        if self.mode == RedisMode::Sentinel {
            non_empty("redis.sentinel_master", &self.sentinel_master)?;
            ensure(
                !self.sentinels.is_empty(),
                "redis.sentinels",
                "sentinel mode needs at least one sentinel, as \"host:port\" (three, on separate hosts, for a quorum of two)",
            )?;
            for s in &self.sentinels {
                sentinel_addr(s)?;
            }
        }
        Ok(())
    }
}

/// A sentinel's `host:port`.
///
/// # Errors
/// [`InvalidConfig`] naming `redis.sentinels`.
pub(crate) fn sentinel_addr(s: &str) -> Result<(String, u16), InvalidConfig> {
    let bad = || {
        InvalidConfig::new(
            "redis.sentinels",
            format!("{s:?} is not host:port (e.g. 10.0.0.5:26379)"),
        )
    };
    let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Replaces the password part of a Redis URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_string(),
    }
}

/// Capped exponential backoff with jitter for transient errors.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// First delay, in ms. Default 50.
    pub initial_ms: u64,
    /// Cap on any delay, in ms. Default 5000.
    pub max_ms: u64,
    /// Growth factor per attempt. Default 2.0.
    pub multiplier: f64,
    /// Random share of each delay, 0.0 to 1.0: a delay `d` becomes uniform in `[d*(1-jitter), d]`.
    /// Default 0.5.
    pub jitter: f64,
    /// Attempts before a one-shot operation gives up (long-running services retry forever).
    /// Default 8.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_ms: 50,
            max_ms: 5000,
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: 8,
        }
    }
}

impl RetryConfig {
    /// Validates the ranges of `[bus.retry]`.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.validate_as("bus.retry")
    }

    /// Validates the ranges, naming the keys under `section` (the EODHD client's
    /// `news.eodhd.retry` is this backoff with other defaults).
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field, e.g. `<section>.jitter`.
    pub fn validate_as(&self, section: &str) -> Result<(), InvalidConfig> {
        let key = |name: &str| format!("{section}.{name}");
        positive(key("initial_ms"), self.initial_ms)?;
        ensure(
            self.max_ms >= self.initial_ms,
            key("max_ms"),
            "must be at least initial_ms",
        )?;
        ensure(
            self.multiplier >= 1.0 && self.multiplier.is_finite(),
            key("multiplier"),
            "must be a finite number of at least 1.0",
        )?;
        within(key("jitter"), self.jitter, 0.0..=1.0)?;
        positive(key("max_attempts"), self.max_attempts)
    }
}

/// How a stream is kept near its cap.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrimMode {
    /// `XTRIM MINID ~ floor`, never past what a group has not acknowledged. This is the default.
    #[default]
    Safe,
    /// Plain `MAXLEN`-style trimming to the cap: may delete entries a lagging group has not read;
    /// every such entry is counted in `mt5_stream_trimmed_unacked_total` and logged.
    Maxlen,
    /// Never trimmed (the dead letter stream always is).
    Never,
}

/// `[bus.trim]`: keeping streams near their cap.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TrimConfig {
    /// Target length of each stream, in entries. Default 30000.
    pub max_len: u64,
    /// The default mode for every stream. Default `safe`.
    pub mode: TrimMode,
    /// Streams trimmed with plain `maxlen` instead (an explicit per-stream opt-in). Default none.
    pub maxlen_streams: Vec<String>,
    /// How often the trimmer runs, in ms. Default 5000.
    pub interval_ms: u64,
    /// Hard backlog limit, in entries: `publish` fails with a backpressure error when the stream
    /// is this long. 0 disables it. Default 1000000.
    pub backlog_limit: u64,
}

impl Default for TrimConfig {
    fn default() -> Self {
        TrimConfig {
            max_len: 30_000,
            mode: TrimMode::Safe,
            maxlen_streams: Vec::new(),
            interval_ms: 5000,
            backlog_limit: 1_000_000,
        }
    }
}

impl TrimConfig {
    /// The mode for a stream; the dead letter stream is never trimmed.
    pub fn mode_for(&self, stream: &str, deadletter_stream: &str) -> TrimMode {
        if stream == deadletter_stream {
            TrimMode::Never
        } else if self.maxlen_streams.iter().any(|s| s == stream) {
            TrimMode::Maxlen
        } else {
            self.mode
        }
    }
}

/// `[bus.consumer]`: how a consumer of a group reads and handles entries.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// `BLOCK` of each read, in ms. Kept short because a read in flight is never cancelled:
    /// shutdown is checked between reads. Default 2000.
    pub block_ms: u64,
    /// `COUNT` of each read, in entries. Default 250: Redis's CPU per entry of the read and the
    /// settle falls with the batch (~10 % from 100 to 250-500 in the drain benchmark,
    /// docs/benchmarks.md), a batch only fills under a backlog, and a consumer holds at most two
    /// (the next is read while the last one's settle is in flight), which keeps a filter under
    /// 30 MB.
    pub count: usize,
    /// Deliveries after which a transiently failing entry is dead-lettered (`max_deliveries`).
    /// Default 3.
    pub max_deliveries: u64,
    /// Time a handler call may take, in ms; past it the call counts as a transient failure.
    /// Default 30000.
    pub handler_timeout_ms: u64,
    /// Delay before re-reading an entry whose handler timed out, in ms. Default 1000.
    pub timeout_retry_ms: u64,
    /// Handler calls run concurrently inside one batch. Default 1 (stream order).
    pub concurrency: usize,
    /// Time allowed to finish held entries after shutdown is requested, in ms. Default 8000
    /// (under Docker's 10 s grace).
    pub shutdown_timeout_ms: u64,
    /// TTL of the heartbeat key, in ms. Default 15000.
    pub heartbeat_ttl_ms: u64,
    /// How often the heartbeat (and the idle time of in-flight entries) is refreshed, in ms.
    /// Must be well within the TTL. Default 3000.
    pub heartbeat_interval_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            block_ms: 2000,
            count: 250,
            max_deliveries: 3,
            handler_timeout_ms: 30_000,
            timeout_retry_ms: 1000,
            concurrency: 1,
            shutdown_timeout_ms: 8000,
            heartbeat_ttl_ms: 15_000,
            heartbeat_interval_ms: 3000,
        }
    }
}

impl ConsumerConfig {
    /// Validates the ranges.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        positive("bus.consumer.block_ms", self.block_ms)?;
        positive("bus.consumer.count", self.count)?;
        positive("bus.consumer.max_deliveries", self.max_deliveries)?;
        positive("bus.consumer.handler_timeout_ms", self.handler_timeout_ms)?;
        positive("bus.consumer.concurrency", self.concurrency)?;
        positive("bus.consumer.shutdown_timeout_ms", self.shutdown_timeout_ms)?;
        positive("bus.consumer.heartbeat_ttl_ms", self.heartbeat_ttl_ms)?;
        positive("bus.consumer.heartbeat_interval_ms", self.heartbeat_interval_ms)?;
        ensure(
            self.heartbeat_interval_ms.saturating_mul(2) <= self.heartbeat_ttl_ms,
            "bus.consumer.heartbeat_interval_ms",
            "must be at most half of heartbeat_ttl_ms so a live consumer never looks dead",
        )
    }

    /// The BLOCK duration.
    pub fn block(&self) -> Duration {
        Duration::from_millis(self.block_ms)
    }
}

/// `[bus.reclaim]`: taking over entries of crashed or stuck consumers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ReclaimConfig {
    /// Whether consumers run reclaim ticks. Default true.
    pub enabled: bool,
    /// How often a reclaim tick runs, in ms. Default 2000.
    pub interval_ms: u64,
    /// Idle time after which an entry of a live but stuck consumer is taken (`XAUTOCLAIM`), in ms.
    /// Default 300000.
    pub min_idle_ms: u64,
    /// Entries claimed per call. Default 100.
    pub count: usize,
}

impl Default for ReclaimConfig {
    fn default() -> Self {
        ReclaimConfig {
            enabled: true,
            interval_ms: 2000,
            min_idle_ms: 300_000,
            count: 100,
        }
    }
}

/// A consumer group that must exist before the first publish. The bus creates it (at `0`, with
/// `MKSTREAM`) only when its stream is absent or empty; missing on a stream with entries, it is
/// [`crate::Error::GroupMissing`] (see [`crate::group::ensure_group`]).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The stream.
    pub stream: String,
    /// The group.
    pub group: String,
}

/// What an acknowledged publish has survived when `publish` returns.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// What Redis gives: the master applied it (and fsynced it with `appendfsync always`);
    /// replicas get it asynchronously, so a failover can lose it.
    #[default]
    Async,
    /// Also on `bus.durability_replicas` replicas: `WAIT` after each publish batch, on the same
    /// connection, in the same round trip. Every publish is keyed (the event id when no key is
    /// given), so a batch whose `WAIT` came back short is sent again without duplicates. Each
    /// settle is followed by a `WAIT` too, repeated until it is answered in full.
    Replicated,
    /// Fsynced to the master's AOF and to `bus.durability_replicas` replicas' AOFs: `WAITAOF 1 n`
    /// where `replicated` sends `WAIT n`, with the same re-sends. Needs `appendonly yes` on the
    /// master and on the replicas that count, and a server with `WAITAOF` (Redis 7.2 or later,
    /// Valkey): refused at start otherwise.
    Fsync,
}

/// `[bus]`: the whole bus.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BusConfig {
    /// The dead letter stream. Never trimmed. Default `mt5:events:deadletter`.
    pub deadletter_stream: String,
    /// Maximum size of one entry (field names plus values), in bytes. Default 1048576 (1 MiB).
    pub max_entry_bytes: usize,
    /// TTL of idempotency keys, in ms. Must outlive any refetch window. Default 259200000 (72 h).
    pub idempotency_ttl_ms: u64,
    /// Groups that must exist before the first publish (created at `0` on an absent or empty
    /// stream). Default `news-filter-group` on `mt5:events:news_raw`.
    pub groups: Vec<GroupSpec>,
    /// Trimming.
    pub trim: TrimConfig,
    /// Consumers.
    pub consumer: ConsumerConfig,
    /// Reclaiming.
    pub reclaim: ReclaimConfig,
    /// Backoff for transient errors.
    pub retry: RetryConfig,
    /// `async` (default), `replicated` or `fsync` ([`Durability`]).
    pub durability: Durability,
    /// Replicas that must have a write (`replicated`), or have fsynced it (`fsync`), before a
    /// publish is acknowledged or a settle done. Default 1.
    pub durability_replicas: u32,
    /// How long one `WAIT`/`WAITAOF` waits for them, in ms; a short one sends a publish batch
    /// again (keyed) and repeats a settle's wait. Default 1000.
    pub durability_timeout_ms: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            deadletter_stream: keys::DEADLETTER_STREAM.into(),
            max_entry_bytes: 1024 * 1024,
            idempotency_ttl_ms: 72 * 3600 * 1000,
            groups: vec![GroupSpec {
                stream: keys::NEWS_RAW_STREAM.into(),
                group: keys::NEWS_FILTER_GROUP.into(),
            }],
            trim: TrimConfig::default(),
            consumer: ConsumerConfig::default(),
            reclaim: ReclaimConfig::default(),
            retry: RetryConfig::default(),
            durability: Durability::Async,
            durability_replicas: 1,
            durability_timeout_ms: 1000,
        }
    }
}

impl BusConfig {
    /// Validates every section.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        non_empty("bus.deadletter_stream", &self.deadletter_stream)?;
        positive("bus.durability_replicas", self.durability_replicas)?;
        positive("bus.durability_timeout_ms", self.durability_timeout_ms)?;
        positive("bus.max_entry_bytes", self.max_entry_bytes)?;
        positive("bus.idempotency_ttl_ms", self.idempotency_ttl_ms)?;
        for g in &self.groups {
            non_empty("bus.groups.stream", &g.stream)?;
            non_empty("bus.groups.group", &g.group)?;
            ensure(
                g.stream != self.deadletter_stream,
                "bus.groups.stream",
                "the dead letter stream is not consumed by a group; use `deadletter replay`",
            )?;
        }
        positive("bus.trim.max_len", self.trim.max_len)?;
        positive("bus.trim.interval_ms", self.trim.interval_ms)?;
        ensure(
            self.trim.backlog_limit == 0 || self.trim.backlog_limit >= self.trim.max_len,
            "bus.trim.backlog_limit",
            "must be 0 (off) or at least max_len",
        )?;
        self.consumer.validate()?;
        positive("bus.reclaim.interval_ms", self.reclaim.interval_ms)?;
        positive("bus.reclaim.count", self.reclaim.count)?;
        self.retry.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_the_contract() {
        let c = BusConfig::default();
        c.validate().unwrap();
        assert_eq!(c.deadletter_stream, "mt5:events:deadletter");
        assert_eq!(c.consumer.block_ms, 2000);
        assert_eq!(c.consumer.max_deliveries, 3);
        assert_eq!(c.reclaim.min_idle_ms, 300_000);
        assert_eq!(c.consumer.heartbeat_ttl_ms, 15_000);
        assert_eq!(c.idempotency_ttl_ms, 259_200_000);
        assert_eq!(c.trim.max_len, 30_000);
        RedisConfig::default().validate().unwrap();
    }

    #[test]
    fn cluster_and_sentinel_urls_are_rejected_with_a_reason() {
        for (url, reason) in [
            ("redis-sentinel://h:26379/mymaster", "redis.mode = \"sentinel\""),
            ("redis-cluster://h:7000", "Cluster is not supported"),
            ("redis://a:1,b:2", "redis.sentinels"),
        ] {
            let err = RedisConfig::default().with_url(url).validate().unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
        }
        assert!(RedisConfig::default().with_url("http://x").validate().is_err());
        RedisConfig::default()
            .with_url("rediss://user:pw@h:6380/0")
            .validate()
            .unwrap();
    }

    /// Sentinel mode needs a master name and at least one `host:port` sentinel; each address is
    /// checked, IPv6 in brackets included, and the error names `redis.sentinels`.
    #[test]
    fn sentinel_mode_needs_a_master_and_valid_sentinels() {
        let ok = RedisConfig::default().with_sentinels("mymaster", ["10.0.0.1:26379", "[::1]:26380", "s3:1"]);
        ok.validate().unwrap();
        assert_eq!(ok.mode, RedisMode::Sentinel);
        assert_eq!(sentinel_addr("[::1]:26380").unwrap(), ("::1".to_string(), 26380));
        assert_eq!(sentinel_addr(" h:26379 ").unwrap(), ("h".to_string(), 26379));
        let none = RedisConfig::default().with_sentinels("mymaster", Vec::<String>::new());
        assert!(none.validate().unwrap_err().to_string().contains("redis.sentinels"));
        let unnamed = RedisConfig::default().with_sentinels(" ", ["h:26379"]);
        assert!(unnamed
            .validate()
            .unwrap_err()
            .to_string()
            .contains("redis.sentinel_master"));
        for bad in ["h", "h:", ":26379", "h:0", "h:70000", "h:port"] {
            let err = RedisConfig::default()
                .with_sentinels("m", [bad])
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("redis.sentinels") && err.contains("host:port"),
                "{bad}: {err}"
            );
        }
        // Standalone mode ignores the sentinel settings.
        let standalone = RedisConfig {
            sentinels: vec!["nonsense".into()],
            ..RedisConfig::default()
        };
        standalone.validate().unwrap();
    }

    /// Durability is read in lowercase; `replicated` needs at least one replica and a timeout.
    #[test]
    fn durability_needs_replicas_and_a_timeout() {
        let c: BusConfig = toml::from_str("durability = \"replicated\"\ndurability_replicas = 2\n").unwrap();
        assert_eq!(
            (c.durability, c.durability_replicas, c.durability_timeout_ms),
            (Durability::Replicated, 2, 1000)
        );
        c.validate().unwrap();
        assert_eq!(BusConfig::default().durability, Durability::Async);
        let c: BusConfig = toml::from_str("durability = \"fsync\"\n").unwrap();
        assert_eq!(c.durability, Durability::Fsync);
        assert!(toml::from_str::<BusConfig>("durability = \"sync\"\n").is_err());
        for (field, text) in [
            ("durability_replicas", "durability_replicas = 0"),
            ("durability_timeout_ms", "durability_timeout_ms = 0"),
        ] {
            let c: BusConfig = toml::from_str(text).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("bus.{field}")), "{err}");
        }
    }

    /// The mode is read from TOML in lowercase; unknown modes are refused.
    #[test]
    fn the_mode_is_read_in_lowercase() {
        let c: RedisConfig = toml::from_str("mode = \"sentinel\"\nsentinels = [\"h:1\"]\n").unwrap();
        assert_eq!(c.mode, RedisMode::Sentinel);
        assert_eq!(c.sentinel_master, "mymaster");
        assert!(toml::from_str::<RedisConfig>("mode = \"cluster\"\n").is_err());
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("redis://user:s3cret@h:6379/0"), "redis://user:***@h:6379/0");
        assert_eq!(redact_url("redis://:s3cret@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        let c = RedisConfig {
            password: Some(Secret::new("pw")),
            ..RedisConfig::default()
        };
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<BusConfig>("nope = 1").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn heartbeat_interval_must_be_well_within_ttl() {
        let mut c = BusConfig::default();
        c.consumer.heartbeat_interval_ms = c.consumer.heartbeat_ttl_ms;
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_deadletter_stream_is_never_trimmed() {
        let t = TrimConfig {
            maxlen_streams: vec!["a".into()],
            ..TrimConfig::default()
        };
        assert_eq!(t.mode_for("dlq", "dlq"), TrimMode::Never);
        assert_eq!(t.mode_for("a", "dlq"), TrimMode::Maxlen);
        assert_eq!(t.mode_for("b", "dlq"), TrimMode::Safe);
    }

    /// Asserts that `result` is a rejection naming the dotted config key `key`. Only the message
    /// is checked, not the error's shape: the key is what an operator acts on.
    #[track_caller]
    fn assert_rejects<E: std::fmt::Display>(result: std::result::Result<(), E>, key: &str) {
        match result {
            Ok(()) => panic!("accepted, but {key} should have been rejected"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(key), "the error should name {key}: {msg}");
            }
        }
    }

    #[test]
    fn a_secret_exposes_exactly_what_it_wraps() {
        assert_eq!(Secret::new("s3cret").expose(), "s3cret");
        assert!(!Secret::new("s3cret").is_empty());
        assert!(Secret::new("").is_empty());
        assert!(Secret::default().is_empty());
    }

    /// `Debug` and serialization never show a secret, but an empty one stays visibly empty.
    #[test]
    fn a_secret_is_hidden_from_debug_and_serialization() {
        let s = Secret::new("s3cret");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
    }

    /// Redaction hides the password of the URL but keeps everything an operator needs to find the
    /// server: scheme, user, host, port and database.
    #[test]
    fn the_redacted_url_hides_the_password_and_keeps_host_and_port() {
        let c = RedisConfig::default().with_url("rediss://alice:s3cret@redis.example:6380/2");
        let shown = c.redacted_url();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(shown, "rediss://alice:***@redis.example:6380/2");
        assert_eq!(
            RedisConfig::default().with_url("redis://h:6379").redacted_url(),
            "redis://h:6379"
        );
        assert_eq!(redact_url("redis://s3cret@h:6379"), "redis://***@h:6379");
        assert_eq!(redact_url("no scheme"), "no scheme");
    }

    #[test]
    fn with_url_sets_only_the_url() {
        let c = RedisConfig::default().with_url("redis://other:7000");
        assert_eq!(c.url, "redis://other:7000");
        assert_eq!(
            RedisConfig {
                url: RedisConfig::default().url,
                ..c
            },
            RedisConfig::default()
        );
    }

    /// Every supported scheme passes; a URL without `://` or with another scheme is rejected as
    /// `redis.url`, and the rejection never echoes a password.
    #[test]
    fn only_the_supported_url_schemes_are_accepted() {
        for url in [
            "redis://h:6379",
            "rediss://h:6380",
            "redis+unix:///run/redis.sock",
            "unix:///run/redis.sock",
            "  redis://h:6379  ",
        ] {
            RedisConfig::default().with_url(url).validate().unwrap();
        }
        for url in [
            "redis",
            "rediss",
            "unix",
            "http://u:s3cret@h:6379",
            "",
            "sentinel://h:26379",
            "cluster://h:7000",
        ] {
            let result = RedisConfig::default().with_url(url).validate();
            let msg = result.as_ref().map_err(ToString::to_string).unwrap_err();
            assert!(msg.contains("redis.url"), "{url}: {msg}");
            assert!(!msg.contains("s3cret"), "{url}: {msg}");
        }
    }

    #[test]
    fn zero_redis_timeouts_are_rejected() {
        let c = RedisConfig {
            connect_timeout_ms: 0,
            ..RedisConfig::default()
        };
        assert_rejects(c.validate(), "redis.connect_timeout_ms");
        let c = RedisConfig {
            response_timeout_ms: 0,
            ..RedisConfig::default()
        };
        assert_rejects(c.validate(), "redis.response_timeout_ms");
        let c = RedisConfig {
            connect_timeout_ms: 1,
            response_timeout_ms: 1,
            ..RedisConfig::default()
        };
        c.validate().unwrap();
    }

    /// The retry validator keeps out a zero first delay, a cap below it, a shrinking or infinite
    /// multiplier, jitter outside 0..=1 and zero attempts; each edge value itself is accepted.
    #[test]
    fn retry_bounds_are_checked_and_their_edges_accepted() {
        let ok = RetryConfig::default();
        ok.validate().unwrap();
        let with = |f: &dyn Fn(&mut RetryConfig)| {
            let mut c = RetryConfig::default();
            f(&mut c);
            c
        };
        assert_rejects(with(&|c| c.initial_ms = 0).validate(), "bus.retry.initial_ms");
        // Inverted bounds are rejected; equal bounds are the edge that is accepted.
        assert_rejects(
            with(&|c| {
                c.initial_ms = 100;
                c.max_ms = 99;
            })
            .validate(),
            "bus.retry.max_ms",
        );
        with(&|c| {
            c.initial_ms = 100;
            c.max_ms = 100;
        })
        .validate()
        .unwrap();
        with(&|c| c.initial_ms = 1).validate().unwrap();
        for m in [0.0, 0.999, -1.0, f64::INFINITY, f64::NAN] {
            assert_rejects(with(&|c| c.multiplier = m).validate(), "bus.retry.multiplier");
        }
        with(&|c| c.multiplier = 1.0).validate().unwrap();
        for j in [-0.01, 1.01, f64::NAN] {
            assert_rejects(with(&|c| c.jitter = j).validate(), "bus.retry.jitter");
        }
        with(&|c| c.jitter = 0.0).validate().unwrap();
        with(&|c| c.jitter = 1.0).validate().unwrap();
        assert_rejects(with(&|c| c.max_attempts = 0).validate(), "bus.retry.max_attempts");
        with(&|c| c.max_attempts = 1).validate().unwrap();
    }

    /// A zero block, count, delivery limit, timeout, concurrency or heartbeat setting is rejected,
    /// naming its key; 1 is accepted.
    #[test]
    fn zero_consumer_settings_are_rejected() {
        type Set = fn(&mut ConsumerConfig, u64);
        let fields: [(&str, Set); 8] = [
            ("bus.consumer.block_ms", |c, v| c.block_ms = v),
            ("bus.consumer.count", |c, v| c.count = v as usize),
            ("bus.consumer.max_deliveries", |c, v| c.max_deliveries = v),
            ("bus.consumer.handler_timeout_ms", |c, v| c.handler_timeout_ms = v),
            ("bus.consumer.concurrency", |c, v| c.concurrency = v as usize),
            ("bus.consumer.shutdown_timeout_ms", |c, v| c.shutdown_timeout_ms = v),
            ("bus.consumer.heartbeat_ttl_ms", |c, v| c.heartbeat_ttl_ms = v),
            ("bus.consumer.heartbeat_interval_ms", |c, v| c.heartbeat_interval_ms = v),
        ];
        for (key, set) in fields {
            let mut c = ConsumerConfig::default();
            set(&mut c, 0);
            assert_rejects(c.validate(), key);
            // The whole bus config rejects it too, under the same key.
            let bus = BusConfig {
                consumer: c.clone(),
                ..BusConfig::default()
            };
            assert_rejects(bus.validate(), key);
            set(&mut c, 1);
            if key == "bus.consumer.heartbeat_ttl_ms" {
                // A TTL of 1 ms cannot hold any interval: it is rejected by the ratio rule.
                continue;
            }
            c.heartbeat_ttl_ms = c.heartbeat_ttl_ms.max(2 * c.heartbeat_interval_ms);
            c.validate().unwrap_or_else(|e| panic!("{key} = 1: {e}"));
        }
    }

    /// The heartbeat interval may be at most half the TTL: exactly half is accepted, one more
    /// millisecond is rejected (a live consumer would risk looking dead).
    #[test]
    fn the_heartbeat_interval_edge_is_half_the_ttl() {
        let c = ConsumerConfig {
            heartbeat_ttl_ms: 1000,
            heartbeat_interval_ms: 500,
            ..ConsumerConfig::default()
        };
        c.validate().unwrap();
        let c = ConsumerConfig {
            heartbeat_interval_ms: 501,
            ..c
        };
        assert_rejects(c.validate(), "bus.consumer.heartbeat_interval_ms");
        let c = ConsumerConfig {
            heartbeat_ttl_ms: 3,
            heartbeat_interval_ms: 1,
            ..c
        };
        c.validate().unwrap();
        let c = ConsumerConfig {
            heartbeat_ttl_ms: 3,
            heartbeat_interval_ms: 2,
            ..c
        };
        assert_rejects(c.validate(), "bus.consumer.heartbeat_interval_ms");
    }

    #[test]
    fn block_is_the_configured_block_ms() {
        assert_eq!(ConsumerConfig::default().block(), Duration::from_millis(2000));
        let c = ConsumerConfig {
            block_ms: 137,
            ..ConsumerConfig::default()
        };
        assert_eq!(c.block(), Duration::from_millis(137));
    }

    /// Empty or blank names, zero sizes and intervals, and a group on the dead letter stream are
    /// rejected by `BusConfig::validate`, each naming its key.
    #[test]
    fn bus_settings_that_would_lose_or_stall_events_are_rejected() {
        let with = |f: &dyn Fn(&mut BusConfig)| {
            let mut c = BusConfig::default();
            f(&mut c);
            c.validate()
        };
        assert_rejects(with(&|c| c.deadletter_stream = String::new()), "bus.deadletter_stream");
        assert_rejects(with(&|c| c.deadletter_stream = " \t".into()), "bus.deadletter_stream");
        assert_rejects(with(&|c| c.max_entry_bytes = 0), "bus.max_entry_bytes");
        assert_rejects(with(&|c| c.idempotency_ttl_ms = 0), "bus.idempotency_ttl_ms");
        assert_rejects(with(&|c| c.groups[0].stream = " ".into()), "bus.groups.stream");
        assert_rejects(with(&|c| c.groups[0].group = String::new()), "bus.groups.group");
        assert_rejects(
            with(&|c| c.groups[0].stream = c.deadletter_stream.clone()),
            "bus.groups.stream",
        );
        assert_rejects(with(&|c| c.trim.max_len = 0), "bus.trim.max_len");
        assert_rejects(with(&|c| c.trim.interval_ms = 0), "bus.trim.interval_ms");
        assert_rejects(with(&|c| c.reclaim.interval_ms = 0), "bus.reclaim.interval_ms");
        assert_rejects(with(&|c| c.reclaim.count = 0), "bus.reclaim.count");
        assert_rejects(with(&|c| c.retry.initial_ms = 0), "bus.retry.initial_ms");
        // A second, bad group is found too, not only the first.
        assert_rejects(
            with(&|c| {
                c.groups.push(GroupSpec {
                    stream: "s".into(),
                    group: " ".into(),
                })
            }),
            "bus.groups.group",
        );
        // Edges that are accepted: no groups at all, and the smallest positive values.
        with(&|c| c.groups.clear()).unwrap();
        with(&|c| {
            c.max_entry_bytes = 1;
            c.idempotency_ttl_ms = 1;
            c.trim.max_len = 1;
            c.trim.interval_ms = 1;
            c.reclaim.interval_ms = 1;
            c.reclaim.count = 1;
        })
        .unwrap();
    }

    /// The backlog limit is off at 0, otherwise at least the trim cap: one below is rejected, equal
    /// is accepted.
    #[test]
    fn the_backlog_limit_is_off_or_at_least_the_cap() {
        let with = |max_len: u64, backlog_limit: u64| {
            let mut c = BusConfig::default();
            c.trim.max_len = max_len;
            c.trim.backlog_limit = backlog_limit;
            c.validate()
        };
        with(100, 0).unwrap();
        with(100, 100).unwrap();
        with(100, 101).unwrap();
        assert_rejects(with(100, 99), "bus.trim.backlog_limit");
        assert_rejects(with(100, 1), "bus.trim.backlog_limit");
    }
}
