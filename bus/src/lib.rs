//! `mt5-bus`: the event bus of mt5-hub on Redis Streams.
//!
//! Producers publish CloudEvents-shaped entries (idempotently when given a key, with a hard
//! backlog limit instead of silent trimming); consumer groups read in blocking batches on a
//! connection of their own, hand entries to a [`Handler`], and write outputs and acknowledgements
//! atomically through an ownership-checking Lua script; crashed or stuck consumers' entries are
//! reclaimed; entries that cannot be processed go to a dead letter stream that can be replayed.
//! The delivery semantics are those of the project's ARCHITECTURE.md.
//!
//! # Layout
//! - `config`: serde settings (`[redis]`, `[bus]`) with every default in one place.
//! - `validate`: the workspace's one set of config validators and [`InvalidConfig`], their error.
//! - `error`: the one error type and its transient/permanent classifier.
//! - `envelope`: the event envelope and entry validation.
//! - `id`: [`StreamId`], entry ids parsed once and ordered numerically.
//! - `keys`: stream, group and key names.
//! - `producer`: [`EventProducer`], publish one or a batch.
//! - `consumer`: [`Consumer`], [`Handler`] and [`Outcome`].
//! - `reclaim`: claiming from dead (no heartbeat) and stuck (idle) consumers.
//! - `dead_letter`: the dead letter stream: list, show, replay, purge.
//! - `trim`: safe trimming (`XTRIM MINID ~`) and counted `MAXLEN` trimming.
//! - `connection`: [`Redis`] and its [`Connection`]s, the one way into Redis.
//! - `query`: typed queries (ranges, tails, pending summaries, cursors) for tools and harnesses.
//! - `stats`: `XINFO`-based stream statistics.
//! - `metrics`: the contract's Prometheus metrics.
//! - `retry`: capped exponential backoff with jitter.
//! - `lua/`: the scripts of the atomic steps.
//!
//! # Example
//! ```no_run
//! use mt5_bus::{BusConfig, BusMetrics, Consumer, ConsumerOptions, Delivery, Event, EventProducer, Handler, Outcome, RedisConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Upper;
//! impl Handler for Upper {
//!     async fn handle(&self, d: &Delivery) -> Outcome {
//!         let out = Event::new("example", "upper.v1", d.event.data.clone());
//!         Outcome::emit("out", out)
//!     }
//! }
//!
//! # async fn run() -> mt5_bus::Result<()> {
//! let redis = RedisConfig::default();
//! let bus = BusConfig::default();
//! let cancel = CancellationToken::new();
//! let producer = EventProducer::connect(&redis, &bus, BusMetrics::default(), cancel.clone()).await?;
//! producer.publish("in", &Event::new("example", "text.v1", serde_json::json!("hi"))).await?;
//! let consumer = Consumer::new(&redis, &bus, ConsumerOptions::new("in", "g"), Upper, BusMetrics::default())?;
//! consumer.run(cancel).await?;
//! # Ok(()) }
//! ```

pub mod config;
mod connection;
pub mod consumer;
pub mod dead_letter;
mod durability;
pub mod envelope;
mod error;
pub mod group;
pub mod id;
mod keys;
pub mod metrics;
pub mod query;
pub mod reclaim;
mod reply;
mod retry;
mod script;
pub mod stats;
pub mod trim;
pub mod validate;

pub use config::{
    BusConfig, ConsumerConfig, Durability, ReclaimConfig, RedisConfig, RedisMode, RetryConfig, Secret, TrimConfig,
    TrimMode,
};
pub use connection::{Connection, Redis};
pub use consumer::{
    BatchReport, Consumer, ConsumerOptions, DeadLetterReason, Delivery, Emission, Handler, Outcome, ReadEntry,
};
pub use envelope::{check_extension_name, Data, Event, EventInput, InvalidEvent, MalformedError};
pub use error::{redis_is_transient, Error, Result, TRANSIENT_CODES};
pub use id::StreamId;
pub use keys::{
    default_consumer_name, heartbeat_key, idempotency_key, DEADLETTER_STREAM, NEWS_FILTERED_STREAM, NEWS_FILTER_GROUP,
    NEWS_RAW_STREAM,
};
pub use metrics::BusMetrics;
pub use producer::{EventProducer, PublishOptions, Published};
pub use query::StreamEntry;
pub use reclaim::{ReclaimReport, Reclaimer};
pub use retry::{retry_transient, sleep_or_cancel, Backoff};
pub use validate::InvalidConfig;

mod producer;
