//! Load tests of mt5-hub.
//!
//! - [`gateway`]: a goose load test against the HTTP gateway (`mt5-hub gateway`): publishing
//!   terminals `POST` events, reading terminals long-poll `GET` from the first entry on, each
//!   following its own `last_id`. Besides goose's request figures it measures the delivery
//!   latency (an entry's id time to the moment a reader got it) and checks that every reader
//!   saw every acknowledged publish exactly once, in order.
//! - [`e2e`]: the end-to-end latency harness of the news pipeline: `mt5-hub publish --rate`
//!   into the raw stream, `filter` consumer processes into the filtered stream, the chaos
//!   history checker for loss, duplicates and e2e latency by entry ids (1 ms), and a tail
//!   reader of the filtered stream for the e2e latency from the publisher's µs stamp; at a
//!   fixed rate, or in rate steps up to the highest rate sustained.
//! - [`drain`]: the same-run comparison with the original Python design: one preloaded backlog
//!   drained by the reference's `filter_consumer.py` processes and by `mt5-hub filter`
//!   processes, on a private `redis-server`, both timed until the group has lag 0 and nothing
//!   pending; events/s, Redis CPU per event, pass rates, peak RSS, and where the passed sets
//!   differ.
//!
//! Each prints its figures and writes a row into `target/loadtest/report.md`.
//!
//! ```sh
//! cargo build --release -p mt5-hub
//! cargo run --release -p mt5-loadtest -- gateway --users 16 --run-time 20
//! cargo run --release -p mt5-loadtest -- e2e --rate 2000 --count 40000 --filters 2
//! ci/pyref-venv && cargo run --release -p mt5-loadtest -- drain --rounds 3
//! ```

pub mod drain;
pub mod e2e;
pub mod gateway;
pub mod report;

pub use mt5_fixtures::Percentiles;

/// The loadtest's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Starting Redis or an `mt5-hub` process failed.
    #[error("setting up: {0}")]
    Setup(String),
    /// The load run itself failed.
    #[error("load run: {0}")]
    Run(String),
    /// A run finished but its result is wrong: events lost, duplicated, dead-lettered, or not
    /// drained.
    #[error("check failed: {0}")]
    Check(String),
    /// A Redis operation of the harness through the bus (`mt5_bus`: stream reads and writes,
    /// groups, publishes) failed.
    #[error(transparent)]
    Bus(#[from] mt5_bus::Error),
    /// A server administration or measurement command of the harness (`mt5_fixtures::admin`:
    /// `INFO`, `CLIENT`, `FLUSHALL`, AOF rewrites, the start handshake) failed.
    #[error(transparent)]
    Admin(#[from] mt5_fixtures::FixtureError),
    /// Writing the report failed.
    #[error("writing {path}: {source}")]
    Report {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The loadtest's result.
pub type Result<T> = std::result::Result<T, LoadError>;
