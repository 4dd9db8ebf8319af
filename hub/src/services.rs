//! Building the long-running parts from a [`HubConfig`], shared by `fetch`, `filter`, `run` and
//! `demo`: the metrics registry, the EODHD client, the producer, the fetcher, the filter
//! consumer, the trimmer, and [`Tasks`], which runs components under one cancellation token and
//! joins them all on shutdown.

use std::future::Future;
use std::time::Duration;

use mt5_bus::{retry_transient, sleep_or_cancel, Backoff};
use mt5_bus::{BusMetrics, Consumer, ConsumerOptions, EventProducer};
use mt5_news::{EodhdClient, Fetcher, FilterMetrics, NewsFilter, NewsMetrics};
use prometheus::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, EODHD_API_KEY_ENV};
use crate::error::HubError;
use crate::redis_conn::classify;

/// Extra time, beyond `bus.consumer.shutdown_timeout_ms`, that [`Tasks::join`] gives components
/// to return after cancellation before it aborts them: a consumer's bounded drain ends right at
/// the timeout and then deletes its heartbeat.
const JOIN_GRACE: Duration = Duration::from_millis(500);

/// The process's metrics: one registry holding the bus, news client and filter metrics, served
/// at `/metrics`. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Telemetry {
    /// The registry `/metrics` serves.
    pub(crate) registry: Registry,
    /// `mt5_stream_*`, `mt5_events_*`, `mt5_deadletter_total`, ...
    pub(crate) bus: BusMetrics,
    /// `mt5_news_fetch_*`, `mt5_eodhd_*`.
    pub(crate) news: NewsMetrics,
    /// `mt5_news_filter_total`.
    pub(crate) filter: FilterMetrics,
}

impl Telemetry {
    /// A fresh registry with every metric registered.
    ///
    /// # Errors
    /// [`HubError::Failed`] when two metrics share a name (a programming error).
    pub(crate) fn new() -> Result<Self, HubError> {
        let registry = Registry::new();
        let bus = BusMetrics::register(&registry)?;
        let news = NewsMetrics::register(&registry)
            .map_err(|e| HubError::Failed(format!("cannot register the news metrics: {e}")))?;
        let filter = FilterMetrics::register(&registry)
            .map_err(|e| HubError::Failed(format!("cannot register the filter metrics: {e}")))?;
        Ok(Telemetry {
            registry,
            bus,
            news,
            filter,
        })
    }
}

/// How a producer retries transient Redis errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retries {
    /// `bus.retry.max_attempts`, then exit code 3: one-shot commands.
    Bounded,
    /// Until cancelled, connecting included: long-running services (they report through
    /// `/readyz` meanwhile).
    Unbounded,
    /// Connecting until cancelled, then `bus.retry.max_attempts` per publish: a service that
    /// publishes on behalf of a caller waiting for the answer (the gateway).
    ConnectUnbounded,
}

/// The filter consumer's handler: the news filter, behind the fault injection hooks of
/// `crate::faults` in a `--features chaos` build only.
#[cfg(feature = "chaos")]
pub(crate) type FilterHandler = crate::faults::Hooked<NewsFilter>;
/// The filter consumer's handler: the news filter (a build without the `chaos` feature has no
/// fault injection hooks).
#[cfg(not(feature = "chaos"))]
pub(crate) type FilterHandler = NewsFilter;

/// The EODHD client of `[news.eodhd]`.
///
/// # Errors
/// [`HubError::Usage`] (exit 2) when `EODHD_API_KEY` is not set or a setting is invalid.
pub(crate) fn eodhd_client(
    cfg: &HubConfig,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
) -> Result<EodhdClient, HubError> {
    if cfg.news.eodhd.api_key.expose().trim().is_empty() {
        return Err(HubError::Usage(format!(
            "the EODHD API key is missing: set the environment variable {EODHD_API_KEY_ENV}"
        )));
    }
    EodhdClient::new(&cfg.news.eodhd, telemetry.news.clone(), cancel.clone())
        .map_err(|e| HubError::Usage(format!("cannot build the EODHD client: {e}")))
}

/// A producer on `[redis]`/`[bus]` that has created the configured groups.
///
/// With [`Retries::Unbounded`] or [`Retries::ConnectUnbounded`] it keeps trying to connect until
/// `cancel` fires.
///
/// # Errors
/// Config errors (exit 2); with [`Retries::Bounded`], [`HubError::Unreachable`] (exit 3) when
/// Redis stays unreachable; [`HubError::Bus`] with `Cancelled` when cancelled first.
pub(crate) async fn producer(
    cfg: &HubConfig,
    telemetry: &Telemetry,
    cancel: &CancellationToken,
    retries: Retries,
) -> Result<EventProducer, HubError> {
    connect_producer(cfg, telemetry.bus.clone(), cancel, retries).await
}

/// [`producer`] with the bus metrics of the caller's choosing: the one connect-with-retries of
/// every command and service.
///
/// # Errors
/// As [`producer`].
pub(crate) async fn connect_producer(
    cfg: &HubConfig,
    metrics: BusMetrics,
    cancel: &CancellationToken,
    retries: Retries,
) -> Result<EventProducer, HubError> {
    let mut backoff = Backoff::new(&cfg.bus.retry);
    loop {
        match EventProducer::connect(&cfg.redis, &cfg.bus, metrics.clone(), cancel.clone()).await {
            Ok(p) => {
                return Ok(match retries {
                    Retries::Bounded | Retries::ConnectUnbounded => p,
                    Retries::Unbounded => p.with_unbounded_retries(),
                })
            }
            Err(e) if retries != Retries::Bounded && retryable(&e) && !cancel.is_cancelled() => {
                let delay = backoff.next_delay();
                tracing::warn!(redis = %cfg.redis.redacted_url(), error = %e, delay_ms = delay.as_millis() as u64, "Cannot connect to Redis yet; retrying.");
                sleep_or_cancel(delay, cancel).await?;
            }
            Err(e) => return Err(classify(cfg, e)),
        }
    }
}

/// Whether a service should keep trying after this error.
fn retryable(e: &mt5_bus::Error) -> bool {
    e.is_unavailable()
}

/// The fetcher of `[news.fetcher]`.
///
/// # Errors
/// [`HubError::Config`] for an invalid `[news.fetcher]`.
pub(crate) fn fetcher(cfg: &HubConfig, client: EodhdClient, producer: EventProducer) -> Result<Fetcher, HubError> {
    Fetcher::new(cfg.news.fetcher.clone(), client, producer).map_err(news_error)
}

/// A news error at the binary's edge: config errors are exit 2, bus errors go through
/// [`crate::error::bus_exit_code`] (Redis unavailable: exit 3), the rest exit 1.
pub(crate) fn news_error(e: mt5_news::Error) -> HubError {
    match e {
        mt5_news::Error::Config(c) => HubError::Config(c.into()),
        mt5_news::Error::Bus(b) => HubError::Bus(b),
        other => HubError::Failed(other.to_string()),
    }
}

/// One consumer of the filter's group (`news.filter.group` on `news.filter.input_stream`), named
/// `name` or `<host>-<pid>-<random>`. It runs its own reclaim ticks (`[bus.reclaim]`): crashed
/// consumers' entries are claimed into it.
///
/// # Errors
/// [`HubError::Config`] for an invalid `[news.filter]`, [`HubError::Bus`] for invalid consumer
/// settings.
pub(crate) fn filter_consumer(
    cfg: &HubConfig,
    telemetry: &Telemetry,
    name: Option<String>,
) -> Result<Consumer<FilterHandler>, HubError> {
    let f = &cfg.news.filter;
    let handler = NewsFilter::new(f.clone(), telemetry.filter.clone()).map_err(news_error)?;
    let mut opts = ConsumerOptions::new(f.input_stream.clone(), f.group.clone());
    if let Some(name) = name {
        opts = opts.with_name(name);
    }
    #[cfg(feature = "chaos")]
    let handler = crate::faults::Hooked(handler);
    Ok(Consumer::new(
        &cfg.redis,
        &cfg.bus,
        opts,
        handler,
        telemetry.bus.clone(),
    )?)
}

/// Runs a filter consumer (of `news.filter.group` on `news.filter.input_stream`) until `cancel`
/// fires (it drains within `shutdown_timeout_ms` and deletes its heartbeat). First makes sure its
/// group exists: created at `0` on an absent or empty stream, else it must exist already.
///
/// # Errors
/// [`mt5_bus::Error::GroupMissing`] (exit 2) when the group is missing on a stream with entries;
/// the final cleanup's error.
pub(crate) async fn run_consumer(
    cfg: HubConfig,
    consumer: Consumer<FilterHandler>,
    cancel: CancellationToken,
) -> Result<(), HubError> {
    let f = &cfg.news.filter;
    ensure_group(&cfg, &f.input_stream, &f.group, &cancel).await?;
    tracing::info!(consumer = %consumer.name(), "Filter consumer starting.");
    consumer.run(cancel).await.map_err(HubError::Bus)
}

/// Creates `group` on `stream` at `0` when the stream is absent or empty, and checks that it
/// exists otherwise ([`mt5_bus::group::ensure_group`]), retrying transient errors until `cancel`
/// fires: the start-up check of a consumer, so a service whose group is missing on a stream with
/// entries refuses to start instead of retrying in the background.
///
/// # Errors
/// [`mt5_bus::Error::GroupMissing`] (exit 2), another permanent Redis error, or `Cancelled`.
pub(crate) async fn ensure_group(
    cfg: &HubConfig,
    stream: &str,
    group: &str,
    cancel: &CancellationToken,
) -> Result<(), HubError> {
    let redis = mt5_bus::Redis::new(&cfg.redis)?;
    retry_transient(&cfg.bus.retry, None, cancel, "checking the consumer group", || async {
        let mut conn = redis.connect().await?;
        mt5_bus::group::ensure_group(&mut conn, stream, group).await
    })
    .await
    .map_err(|e| classify(cfg, e))?;
    Ok(())
}

/// The trimmer: every `bus.trim.interval_ms`, trims every known stream by its mode (the dead
/// letter stream never). Runs on `producer`'s self-reconnecting connection until `cancel`.
pub(crate) async fn run_trimmer(
    cfg: &HubConfig,
    producer: &EventProducer,
    telemetry: &Telemetry,
    cancel: CancellationToken,
) {
    let streams: Vec<String> = cfg
        .known_streams()
        .into_iter()
        .filter(|s| *s != cfg.bus.deadletter_stream)
        .collect();
    mt5_bus::trim::run_trimmer(
        producer.connection(),
        streams,
        cfg.bus.clone(),
        telemetry.bus.clone(),
        cancel,
    )
    .await;
}

/// Components of one process running under one cancellation token (a child of the signal
/// token). When one ends (error or not) the others are cancelled; [`Tasks::join`] waits for all
/// of them, bounded by the shutdown timeout. Nothing outlives it.
#[derive(Debug)]
pub(crate) struct Tasks {
    set: JoinSet<(&'static str, Result<(), HubError>)>,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
}

impl Tasks {
    /// Tasks cancelled with `parent` (or when one of them ends); joined within
    /// `bus.consumer.shutdown_timeout_ms`.
    pub(crate) fn new(cfg: &HubConfig, parent: &CancellationToken) -> Self {
        Tasks {
            set: JoinSet::new(),
            cancel: parent.child_token(),
            shutdown_timeout: Duration::from_millis(cfg.bus.consumer.shutdown_timeout_ms) + JOIN_GRACE,
        }
    }

    /// The token the components must stop on.
    pub(crate) fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Starts a component. A `Cancelled` bus error counts as a clean stop.
    pub(crate) fn spawn<F>(&mut self, name: &'static str, component: F)
    where
        F: Future<Output = Result<(), HubError>> + Send + 'static,
    {
        self.set.spawn(async move { (name, component.await) });
    }

    /// Waits until the token fires or a component ends, cancels the rest and joins them all
    /// (aborting whatever is still running after the shutdown timeout).
    ///
    /// # Errors
    /// The first component's error.
    pub(crate) async fn join(mut self) -> Result<(), HubError> {
        let mut first_err: Option<HubError> = None;
        tokio::select! {
            () = self.cancel.cancelled() => {}
            Some(done) = self.set.join_next() => {
                record(done, &mut first_err);
                if !self.cancel.is_cancelled() {
                    tracing::info!("A component stopped; stopping the others.");
                }
                self.cancel.cancel();
            }
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next()).await {
                Ok(None) => break,
                Ok(Some(done)) => record(done, &mut first_err),
                Err(_) => {
                    tracing::warn!(
                        left = self.set.len(),
                        timeout_ms = self.shutdown_timeout.as_millis() as u64,
                        "Shutdown timeout reached; aborting the components still running (their unfinished entries stay pending)."
                    );
                    self.set.abort_all();
                    while self.set.join_next().await.is_some() {}
                    break;
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn record(
    done: Result<(&'static str, Result<(), HubError>), tokio::task::JoinError>,
    first_err: &mut Option<HubError>,
) {
    match done {
        Ok((name, Ok(()))) => tracing::debug!(component = name, "Component stopped."),
        Ok((_, Err(HubError::Bus(mt5_bus::Error::Cancelled)))) => {}
        Ok((name, Err(e))) => {
            tracing::error!(component = name, error = %e, "Component failed.");
            first_err.get_or_insert(e);
        }
        Err(e) => {
            tracing::error!(error = %e, "A component panicked.");
            first_err.get_or_insert(HubError::Failed(format!("a component panicked: {e}")));
        }
    }
}
