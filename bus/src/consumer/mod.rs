//! A consumer of a group: blocking batch reads on a connection of its own, handler outcomes,
//! one ownership-checked settle per batch, retries from the own PEL, heartbeats and reclaim
//! ticks.
//!
//! Pieces: `plan` (what to read next, pure), `settle` (the batch script and its reply),
//! `heartbeat` (liveness and the idle time of held entries), `handler` (the user's side), and
//! the loop here.
//!
//! A batch's decisions, once made, are kept until they are written: a settle that failed (an
//! error reply such as `OOM` or `BUSY`, a dropped connection) is retried with the same decisions
//! before anything else is read, so a handler never runs again because a write failed and
//! nothing waits for the idle reclaim.

mod handler;
mod heartbeat;
mod plan;
mod settle;

pub use handler::{DeadLetterReason, Delivery, Emission, Handler, Outcome};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio_util::sync::CancellationToken;

use self::heartbeat::{Beat, Flight, InFlight};
use self::plan::{Read, ReadPlan};
use self::settle::{Decided, Kind};
use crate::config::{BusConfig, RedisConfig};
use crate::connection::Redis;
use crate::dead_letter;
use crate::durability::Wait;
use crate::envelope::Event;
use crate::error::{Error, Result};
use crate::group;
use crate::id::StreamId;
use crate::keys;
use crate::metrics::{outcome, BusMetrics};
use crate::reclaim::{ReclaimReport, Reclaimer};
use crate::reply::{self, int, StreamEntry};
use crate::retry::{sleep_or_cancel, Backoff};
use crate::script::Scripts;
use crate::validate;

/// Extra time a read's reply may take beyond its BLOCK before the read counts as failed.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Who consumes what.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// The input stream.
    pub stream: String,
    /// The group.
    pub group: String,
    /// This consumer's name; default `<host>-<pid>-<random>`.
    pub name: String,
}

impl ConsumerOptions {
    /// Options with the default consumer name.
    pub fn new(stream: impl Into<String>, group: impl Into<String>) -> Self {
        ConsumerOptions {
            stream: stream.into(),
            group: group.into(),
            name: keys::default_consumer_name(),
        }
    }

    /// Sets the consumer name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// An entry read by this consumer with its delivery count.
#[derive(Debug, Clone)]
pub struct ReadEntry {
    /// The entry.
    pub entry: StreamEntry,
    /// Times it has been delivered by reads, this read included (from `XPENDING`).
    pub deliveries: u64,
}

/// What one processed batch came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries read.
    pub read: usize,
    /// Acknowledged without output.
    pub acked: usize,
    /// Outputs written and acknowledged.
    pub emitted: usize,
    /// Left pending for a re-read.
    pub retried: usize,
    /// Dead-lettered, by reason.
    pub dead_lettered: BTreeMap<&'static str, usize>,
    /// Claimed away before we could write: nothing written.
    pub not_owner: usize,
    /// Deleted (trimmed) while pending: acknowledged and counted.
    pub trimmed: usize,
    /// Entries whose handler had not finished when the shutdown deadline came: left pending,
    /// nothing written.
    pub unfinished: usize,
}

impl BatchReport {
    /// Adds a settle's outcomes. `read`, `retried` and `unfinished` are not a settle's: the
    /// batch counts them itself.
    fn absorb(&mut self, o: BatchReport) {
        self.acked += o.acked;
        self.emitted += o.emitted;
        self.not_owner += o.not_owner;
        self.trimmed += o.trimmed;
        for (reason, n) in o.dead_lettered {
            *self.dead_lettered.entry(reason).or_default() += n;
        }
    }
}

enum Decision {
    Ack,
    Trimmed,
    Emit(Vec<Emission>),
    Retry(Duration),
    DeadLetter(DeadLetterReason, String),
}

/// Connections of a consumer: reads on one of their own, everything else on the other.
struct Conns {
    read: MultiplexedConnection,
    cmd: MultiplexedConnection,
}

/// One consumer of a group.
pub struct Consumer<H: Handler> {
    client: Redis,
    redis: RedisConfig,
    cfg: BusConfig,
    opts: ConsumerOptions,
    handler: Arc<H>,
    metrics: BusMetrics,
    conns: Option<Conns>,
    plan: ReadPlan,
    /// Decisions made and not yet written, in batch order: settled before anything else is read.
    unsettled: Vec<Decided>,
    /// A batch read while the previous batch's settle was in flight (`run` overlaps the two):
    /// handled next.
    prefetched: Option<Vec<ReadEntry>>,
    /// Counts not reported yet (a batch whose settle failed, a settle retried by a fetch), added
    /// to the next batch's report.
    carried: BatchReport,
    in_flight: InFlight,
    /// The durability wait after each settle (`replicated`, `fsync`), on the settle's connection.
    wait: Option<Wait>,
    reclaimer: Reclaimer,
    last_reclaim: Option<Instant>,
    /// `mt5_event_processing_duration_seconds` and `mt5_event_e2e_latency_seconds` of this
    /// consumer's labels, resolved once (observed per entry).
    processing_duration: prometheus::Histogram,
    e2e_latency: prometheus::Histogram,
}

impl<H: Handler> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("opts", &self.opts)
            .field("connected", &self.conns.is_some())
            .field("unsettled", &self.unsettled.len())
            .finish()
    }
}

impl<H: Handler> Consumer<H> {
    /// A consumer; it connects on first use.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings, or an empty stream, group or consumer name.
    pub fn new(
        redis: &RedisConfig,
        cfg: &BusConfig,
        opts: ConsumerOptions,
        handler: H,
        metrics: BusMetrics,
    ) -> Result<Self> {
        cfg.validate()?;
        validate::non_empty("consumer.stream", &opts.stream)?;
        validate::non_empty("consumer.group", &opts.group)?;
        validate::non_empty("consumer.name", &opts.name)?;
        let client = Redis::new(redis)?.with_metrics(metrics.clone());
        metrics.init_consumer_series(&opts.stream, &opts.group);
        let reclaimer = Reclaimer::new(&opts.stream, &opts.group, &opts.name, cfg, metrics.clone());
        let processing_duration = metrics
            .processing_duration
            .with_label_values(&[&opts.stream, &opts.group]);
        let e2e_latency = metrics.e2e_latency.with_label_values(&[&opts.stream]);
        Ok(Consumer {
            client,
            redis: redis.clone(),
            cfg: cfg.clone(),
            opts,
            handler: Arc::new(handler),
            metrics,
            conns: None,
            plan: ReadPlan::default(),
            unsettled: Vec::new(),
            prefetched: None,
            carried: BatchReport::default(),
            in_flight: InFlight::default(),
            wait: Wait::of(cfg),
            reclaimer,
            last_reclaim: None,
            processing_duration,
            e2e_latency,
        })
    }

    /// This consumer's name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// The reclaimer of this consumer (claims into this consumer's PEL).
    pub fn reclaimer_mut(&mut self) -> &mut Reclaimer {
        &mut self.reclaimer
    }

    fn beat(&self) -> Beat {
        Beat {
            stream: self.opts.stream.clone(),
            group: self.opts.group.clone(),
            consumer: self.opts.name.clone(),
            key: keys::heartbeat_key(&self.opts.stream, &self.opts.group, &self.opts.name),
            ttl_ms: self.cfg.consumer.heartbeat_ttl_ms,
            handler_timeout: Duration::from_millis(self.cfg.consumer.handler_timeout_ms),
            in_flight: self.in_flight.clone(),
        }
    }

    /// Connects (if not connected): both connections, the group, the heartbeat. After a
    /// (re)connect the own PEL is re-read first; no entry is read before the heartbeat exists.
    async fn connect(&mut self) -> Result<()> {
        if self.conns.is_some() {
            return Ok(());
        }
        let read_timeout = self.cfg.consumer.block() + READ_TIMEOUT_MARGIN;
        let read = self.client.multiplexed(read_timeout).await?;
        let mut cmd = self
            .client
            .multiplexed(Duration::from_millis(self.redis.response_timeout_ms))
            .await?;
        if let Some(wait) = &self.wait {
            wait.check_server(&mut cmd).await?;
        }
        group::ensure_group(&mut cmd, &self.opts.stream, &self.opts.group).await?;
        self.beat().write_key(&mut cmd).await?;
        tracing::info!(stream = %self.opts.stream, group = %self.opts.group, consumer = %self.opts.name, "Consumer connected.");
        self.plan.on_connect();
        self.reclaimer.on_connect();
        // A batch read on the old connection is pending on us: the own-PEL walk reads it again.
        self.prefetched = None;
        self.conns = Some(Conns { read, cmd });
        Ok(())
    }

    fn conns(&mut self) -> Result<&mut Conns> {
        self.conns.as_mut().ok_or_else(not_connected)
    }

    /// Forgets the connections after a connection error; the next call reconnects. Error
    /// replies keep the connection: what failed is retried on it.
    fn on_error(&mut self, e: &Error) {
        if e.is_connection_dropped() && self.conns.take().is_some() {
            tracing::warn!(consumer = %self.opts.name, error = %e, "Consumer lost its connection; it will reconnect and re-read its pending entries.");
        }
    }

    /// Passes `r` on, dropping the connections when it failed with a connection error.
    fn guarded<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    /// Reads the next batch: first writes decisions of an earlier batch that could not be
    /// written yet; then the own PEL after a (re)connect, due re-reads, and new entries
    /// (blocking up to `block_ms`, or `block` when given).
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped read still moves entries into this consumer's PEL. Callers
    /// check their cancellation token between calls instead.
    ///
    /// # Errors
    /// The driver's error; the connection is dropped on connection errors. Nothing read is
    /// lost: the read plan keeps what it has not read yet, and the PEL the rest.
    pub async fn fetch(&mut self, block: Option<Duration>) -> Result<Vec<ReadEntry>> {
        let r = self.fetch_inner(block).await;
        self.guarded(r)
    }

    async fn fetch_inner(&mut self, block: Option<Duration>) -> Result<Vec<ReadEntry>> {
        self.connect().await?;
        if !self.unsettled.is_empty() {
            let mut carried = std::mem::take(&mut self.carried);
            let r = self.settle(&mut carried).await;
            self.carried = carried;
            r?;
        }
        if let Some(batch) = self.prefetched.take() {
            return Ok(batch);
        }
        loop {
            match self.plan.next(Instant::now()) {
                Read::OwnPelAfter(cursor) => {
                    let got = self.reread("after", cursor).await?;
                    self.plan.own_pel_read(got.as_ref().map(|(id, _)| *id));
                    if let Some((_, e)) = got {
                        return Ok(vec![e]);
                    }
                }
                Read::Id(id) => {
                    let got = self.reread("id", id).await?;
                    self.plan.id_read(id);
                    if let Some((_, e)) = got {
                        return Ok(vec![e]);
                    }
                }
                Read::New => return self.read_new(block).await,
            }
        }
    }

    /// One re-read of an entry pending on this consumer (which counts a delivery). One entry at
    /// a time: a batch is acknowledged only after every entry in it was handled, so when one
    /// entry kills the process (a poison), every entry read with it would get its delivery count
    /// raised on the next read and reach `max_deliveries` together with the poison. Read
    /// singly, the entries before the poison are handled and acknowledged, and the poison alone
    /// accumulates deliveries (found by the chaos scenario `poison`).
    async fn reread(&mut self, mode: &str, id: StreamId) -> Result<Option<(StreamId, ReadEntry)>> {
        let (stream, group, name) = (&self.opts.stream, &self.opts.group, &self.opts.name);
        let script = &Scripts::get().reread;
        let mut cmd = script.cmd(&[stream.as_str()], (group.as_str(), name.as_str(), mode));
        cmd.arg(id);
        let conns = self.conns()?;
        let v: Value = script.run(&mut conns.cmd, &cmd).await?;
        let parts = match v {
            Value::Array(parts) if parts.is_empty() => return Ok(None),
            Value::Array(parts) => parts,
            other => {
                return Err(Error::UnexpectedReply {
                    command: "reread script",
                    detail: format!("{other:?}"),
                })
            }
        };
        let [id, fields, count]: [Value; 3] = parts.try_into().map_err(|p: Vec<Value>| Error::UnexpectedReply {
            command: "reread script",
            detail: format!("row with {} parts", p.len()),
        })?;
        let deliveries = int(&count).unwrap_or(1).max(1) as u64;
        let entry = match fields {
            Value::Boolean(false) | Value::Nil => StreamEntry {
                id: reply::text(&id).unwrap_or_default(),
                fields: None,
            },
            f => reply::entry(Value::Array(vec![id, f]), "reread script")?,
        };
        let read_id = parse_id(&entry.id, "reread script")?;
        Ok(Some((read_id, ReadEntry { entry, deliveries })))
    }

    async fn read_new(&mut self, block: Option<Duration>) -> Result<Vec<ReadEntry>> {
        let block = block.unwrap_or_else(|| self.cfg.consumer.block());
        let conns = self.conns.as_mut().ok_or_else(not_connected)?;
        read_new(&mut conns.read, &self.opts, self.cfg.consumer.count, block).await
    }

    /// Handles a batch and writes the outcomes: one ownership-checked settle script for every
    /// acknowledgement, output and dead letter of the batch; retries are scheduled.
    ///
    /// # Errors
    /// The driver's error. The batch's decisions are kept and written before the next read
    /// (a later [`Consumer::fetch`]); the handler does not run again for them. The settle is
    /// exactly-once: it writes only for entries still pending on this consumer, and acknowledges
    /// them in the same script.
    pub async fn process(&mut self, batch: Vec<ReadEntry>) -> Result<BatchReport> {
        self.process_until(batch, std::future::pending(), false).await
    }

    /// As [`Consumer::process`], but handlers still running when `stop` completes are
    /// abandoned (their entries stay pending, nothing is written for them) and what was decided
    /// by then is written.
    async fn process_until(
        &mut self,
        batch: Vec<ReadEntry>,
        stop: impl Future<Output = ()>,
        prefetch: bool,
    ) -> Result<BatchReport> {
        let r = self.process_inner(batch, stop, prefetch).await;
        self.guarded(r)
    }

    async fn process_inner(
        &mut self,
        batch: Vec<ReadEntry>,
        stop: impl Future<Output = ()>,
        prefetch: bool,
    ) -> Result<BatchReport> {
        let mut report = std::mem::take(&mut self.carried);
        report.read = batch.len();
        let ids: Vec<StreamId> = batch
            .iter()
            .map(|r| parse_id(&r.entry.id, "XREADGROUP"))
            .collect::<Result<_>>()?;
        self.in_flight.queue(ids.iter().copied());
        let mut done: Vec<(usize, StreamId, ReadEntry, Decision)> = Vec::with_capacity(batch.len());
        {
            let this = &*self;
            let mut decisions = stream::iter(batch.into_iter().zip(ids.iter().copied()).enumerate())
                .map(|(i, (r, id))| async move {
                    this.in_flight.set(id, Flight::Running(Instant::now()));
                    let d = this.decide(&r).await;
                    this.in_flight.set(id, Flight::Decided);
                    (i, id, r, d)
                })
                .buffer_unordered(self.cfg.consumer.concurrency);
            let mut stop = std::pin::pin!(stop);
            loop {
                tokio::select! {
                    biased;
                    next = decisions.next() => match next {
                        Some(d) => done.push(d),
                        None => break,
                    },
                    () = &mut stop => break,
                }
            }
        }
        done.sort_unstable_by_key(|(i, ..)| *i);
        if done.len() < ids.len() {
            report.unfinished = ids.len() - done.len();
            let finished: std::collections::HashSet<usize> = done.iter().map(|(i, ..)| *i).collect();
            let unfinished = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| !finished.contains(i))
                .map(|(_, id)| *id);
            self.in_flight.remove(unfinished);
            tracing::warn!(consumer = %self.opts.name, unfinished = report.unfinished, "Shutdown deadline reached inside a batch; unfinished entries stay pending for the other consumers.");
        }
        for (_, id, r, d) in done {
            self.record(id, r, d, &mut report);
        }
        // Reconnected only now, after the decisions: when the connection was lost meanwhile,
        // they are written on the new one instead of running the handlers again.
        let written = async {
            self.connect().await?;
            if prefetch && self.prefetched.is_none() && self.plan.next(Instant::now()) == Read::New {
                self.settle_and_read(&mut report).await
            } else {
                self.settle(&mut report).await
            }
        }
        .await;
        match written {
            Ok(()) => Ok(report),
            Err(e) => {
                // Counted with the batch whose settle writes these decisions (which sets its
                // own `read`).
                self.carried = report;
                Err(e)
            }
        }
    }

    /// Turns one decision into a retry or an entry to settle.
    fn record(&mut self, id: StreamId, r: ReadEntry, d: Decision, report: &mut BatchReport) {
        let (stream, group, name) = (&self.opts.stream, &self.opts.group, &self.opts.name);
        let (kind, outputs) = match d {
            Decision::Retry(after) => {
                report.retried += 1;
                self.metrics
                    .processed
                    .with_label_values(&[stream, group, outcome::RETRIED])
                    .inc();
                self.plan.retry_at(id, Instant::now() + after);
                self.in_flight.remove([id]);
                return;
            }
            Decision::Ack => (Kind::Ack, Vec::new()),
            Decision::Trimmed => (Kind::Trimmed, Vec::new()),
            Decision::Emit(outputs) => (
                Kind::Emit,
                outputs
                    .into_iter()
                    .map(|o| {
                        let fields = o
                            .event
                            .to_fields()
                            .into_iter()
                            .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
                            .collect();
                        (o.stream, fields)
                    })
                    .collect(),
            ),
            Decision::DeadLetter(reason, error) => {
                tracing::warn!(stream = %stream, entry_id = %id, reason = %reason, error = %error, deliveries = r.deliveries, "Dead-lettering an entry.");
                let fields = dead_letter::dead_letter_fields(
                    r.entry.fields.as_deref().unwrap_or_default(),
                    stream,
                    &r.entry.id,
                    group,
                    name,
                    r.deliveries,
                    reason,
                    &error,
                );
                (
                    Kind::DeadLetter(reason),
                    vec![(self.cfg.deadletter_stream.clone(), fields)],
                )
            }
        };
        self.unsettled.push(Decided { id, kind, outputs });
    }

    /// Writes every unsettled decision in one script call and counts the outcomes into `report`.
    /// On failure the decisions are kept for the next attempt.
    async fn settle(&mut self, report: &mut BatchReport) -> Result<()> {
        if self.unsettled.is_empty() {
            return Ok(());
        }
        let cmd = settle::command(&self.opts.stream, &self.opts.group, &self.opts.name, &self.unsettled);
        let conns = self.conns.as_mut().ok_or_else(not_connected)?;
        let short = &self.metrics.durability_wait_short;
        let (settled, waited) = settle::run(&mut conns.cmd, &cmd, self.unsettled.len(), self.wait.as_ref(), |e| {
            wait_short(short, e)
        })
        .await?;
        self.account(settled, report);
        waited
    }

    /// As [`Consumer::settle`], with the next read of new entries sent on the read connection
    /// while the settle is in flight: Redis works on one while this consumer waits for the
    /// other, and the next batch is in hand when the settle returns. A failed read is left to
    /// the next fetch (the connection dropped when it was lost); a failed settle keeps its
    /// decisions, and the batch read beside it is handled after they are written.
    async fn settle_and_read(&mut self, report: &mut BatchReport) -> Result<()> {
        if self.unsettled.is_empty() {
            return Ok(());
        }
        let cmd = settle::command(&self.opts.stream, &self.opts.group, &self.opts.name, &self.unsettled);
        let n = self.unsettled.len();
        let conns = self.conns.as_mut().ok_or_else(not_connected)?;
        let short = &self.metrics.durability_wait_short;
        let (settled, read) = tokio::join!(
            settle::run(&mut conns.cmd, &cmd, n, self.wait.as_ref(), |e| wait_short(short, e)),
            read_new(
                &mut conns.read,
                &self.opts,
                self.cfg.consumer.count,
                self.cfg.consumer.block()
            ),
        );
        match read {
            Ok(batch) if !batch.is_empty() => {
                // Held from now on: kept fresh by the heartbeat while the settle is retried.
                self.in_flight
                    .queue(batch.iter().filter_map(|r| r.entry.id.parse().ok()));
                self.prefetched = Some(batch);
            }
            Ok(_) => {}
            Err(e) => self.on_error(&e),
        }
        let (settled, waited) = settled?;
        self.account(settled, report);
        waited
    }

    /// Counts a settle's outcomes (one flag per unsettled decision) and forgets the decisions.
    fn account(&mut self, settled: Vec<bool>, report: &mut BatchReport) {
        let (stream, group) = (&self.opts.stream, &self.opts.group);
        let decided = std::mem::take(&mut self.unsettled);
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let mut this = BatchReport::default();
        for (d, ours) in decided.iter().zip(settled) {
            match (ours, d.kind) {
                // Read with its fields gone: deleted while pending. The re-read's XCLAIM has
                // already dropped it from the PEL (Redis 7), so the settle finds it no longer
                // ours, and no other consumer can hold it either: trimmed, not NotOwner.
                (_, Kind::Trimmed) => {
                    this.trimmed += 1;
                    tracing::warn!(stream = %stream, group = %group, entry_id = %d.id, "A pending entry was trimmed before it was acknowledged.");
                }
                (false, _) if self.in_flight.is_gone(d.id) => this.trimmed += 1,
                (false, _) => {
                    this.not_owner += 1;
                    tracing::info!(stream = %stream, entry_id = %d.id, "Entry was claimed by another consumer; wrote nothing (NotOwner).");
                }
                (true, Kind::Ack | Kind::Emit) => {
                    if d.kind == Kind::Ack {
                        this.acked += 1;
                    } else {
                        this.emitted += 1;
                    }
                    self.e2e_latency
                        .observe(now_ms.saturating_sub(d.id.millis()) as f64 / 1000.0);
                }
                (true, Kind::DeadLetter(reason)) => *this.dead_lettered.entry(reason.as_str()).or_default() += 1,
            }
        }
        self.count(&this);
        report.absorb(this);
        self.in_flight.remove(decided.iter().map(|d| d.id));
    }

    /// The metrics of a settle's outcomes.
    fn count(&self, this: &BatchReport) {
        let (stream, group) = (self.opts.stream.as_str(), self.opts.group.as_str());
        let m = &self.metrics;
        for (o, n) in [
            (outcome::ACKED, this.acked),
            (outcome::EMITTED, this.emitted),
            (outcome::NOT_OWNER, this.not_owner),
            (outcome::DEAD_LETTERED, this.dead_lettered.values().sum()),
        ] {
            if n > 0 {
                m.processed.with_label_values(&[stream, group, o]).inc_by(n as u64);
            }
        }
        for (reason, n) in &this.dead_lettered {
            m.deadletter.with_label_values(&[stream, reason]).inc_by(*n as u64);
        }
        if this.trimmed > 0 {
            m.trimmed_unacked
                .with_label_values(&[stream, group])
                .inc_by(this.trimmed as u64);
        }
    }

    async fn decide(&self, r: &ReadEntry) -> Decision {
        let Some(fields) = &r.entry.fields else {
            return Decision::Trimmed;
        };
        let max = self.cfg.consumer.max_deliveries;
        let event = match Event::from_fields(&r.entry.id, fields, self.cfg.max_entry_bytes) {
            Ok(e) => e,
            Err(e) => return Decision::DeadLetter(DeadLetterReason::Malformed, e.to_string()),
        };
        if r.deliveries > max {
            return Decision::DeadLetter(
                DeadLetterReason::MaxDeliveries,
                format!(
                    "read {} times, more than max_deliveries {max}: a poison entry",
                    r.deliveries
                ),
            );
        }
        if !self.handler.handles(&event.event_type) {
            return Decision::DeadLetter(
                DeadLetterReason::Unsupported,
                format!("no handler for type {}", event.event_type),
            );
        }
        let delivery = Delivery {
            stream: self.opts.stream.clone(),
            group: self.opts.group.clone(),
            entry_id: r.entry.id.clone(),
            deliveries: r.deliveries,
            event,
        };
        let timeout = Duration::from_millis(self.cfg.consumer.handler_timeout_ms);
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.handler.handle(&delivery)).await;
        self.processing_duration.observe(started.elapsed().as_secs_f64());
        let (after, why) = match outcome {
            Ok(Outcome::Ack) => return Decision::Ack,
            Ok(Outcome::Emit(out)) => return Decision::Emit(out),
            Ok(Outcome::DeadLetter { reason, error }) => return Decision::DeadLetter(reason, error),
            Ok(Outcome::Retry { after }) => (after, "the handler asked for a retry".to_string()),
            Err(_) => (
                Duration::from_millis(self.cfg.consumer.timeout_retry_ms),
                format!("the handler timed out after {} ms", timeout.as_millis()),
            ),
        };
        if r.deliveries >= max {
            Decision::DeadLetter(
                DeadLetterReason::MaxDeliveries,
                format!("{why} at delivery {} of {max}", r.deliveries),
            )
        } else {
            Decision::Retry(after)
        }
    }

    /// One fetch and process.
    ///
    /// # Errors
    /// As [`Consumer::fetch`] and [`Consumer::process`].
    pub async fn step(&mut self, block: Option<Duration>) -> Result<BatchReport> {
        let batch = self.fetch(block).await?;
        self.process(batch).await
    }

    /// Whether everything this consumer read has been handled and written (no scheduled
    /// retries, nothing to re-read, no decision waiting to be written): for tests and drains.
    pub fn is_idle(&self) -> bool {
        self.plan.is_idle() && self.unsettled.is_empty() && self.prefetched.is_none()
    }

    /// Makes every scheduled retry due now (for deterministic tests).
    pub fn expire_retries(&mut self) {
        self.plan.expire_retries(Instant::now());
    }

    /// One reclaim tick: claims entries of dead consumers (no heartbeat) and idle entries into this
    /// consumer, then re-reads them from the own PEL on the next fetch.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn reclaim_tick(&mut self) -> Result<ReclaimReport> {
        let r = self.reclaim_inner().await;
        self.guarded(r)
    }

    async fn reclaim_inner(&mut self) -> Result<ReclaimReport> {
        self.connect().await?;
        let conns = self.conns.as_mut().ok_or_else(not_connected)?;
        let report = self.reclaimer.tick(&mut conns.cmd).await?;
        self.plan
            .claimed(report.claimed.iter().filter_map(|id| id.parse().ok()));
        self.last_reclaim = Some(Instant::now());
        Ok(report)
    }

    /// Refreshes the heartbeat key and the idle time of the entries this consumer holds.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn heartbeat(&mut self) -> Result<()> {
        let r = async {
            self.connect().await?;
            let beat = self.beat();
            let conns = self.conns()?;
            beat.beat(&mut conns.cmd).await
        }
        .await;
        self.guarded(r)
    }

    /// Runs until `cancel` fires: reads, handles, settles, heartbeats and reclaims; transient
    /// errors are retried forever with backoff. On cancellation it stops reading, finishes what
    /// it holds and writes what was decided (within `shutdown_timeout_ms`), deletes its
    /// heartbeat and returns.
    ///
    /// # Errors
    /// [`Error::GroupMissing`] when the group (or the stream) disappeared while running: the
    /// consumer never recreates it silently (`mt5_consumer_group_missing_total` counts it).
    /// [`Error::Unsupported`] when the server cannot do what the configuration asks (`fsync`
    /// durability without `WAITAOF`). Otherwise only when the final cleanup (deleting the
    /// heartbeat) fails with Redis reachable; everything else is retried.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let stop_beating = CancellationToken::new();
        let beating = self.beat().run(
            self.client.clone(),
            Duration::from_millis(self.cfg.consumer.heartbeat_interval_ms),
            stop_beating.clone(),
        );
        let shutdown = Duration::from_millis(self.cfg.consumer.shutdown_timeout_ms);
        let working = async {
            let deadline = async {
                cancel.cancelled().await;
                tokio::time::sleep(shutdown).await;
            };
            let r = tokio::select! {
                r = self.work(&cancel, shutdown) => r,
                () = deadline => {
                    tracing::warn!(consumer = %self.opts.name, "Shutdown timeout reached; unfinished entries stay pending for the other consumers.");
                    Ok(())
                }
            };
            stop_beating.cancel();
            r
        };
        // The heartbeat is a future of this one, not a detached task: dropping `run` stops it.
        let (result, ()) = tokio::join!(working, beating);
        // Bounded too: with Redis unreachable the heartbeat simply expires instead.
        let closed =
            match tokio::time::timeout(Duration::from_millis(self.redis.response_timeout_ms), self.close()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("Could not delete the heartbeat in time; it will expire.");
                    Ok(())
                }
            };
        match result {
            Err(e) => Err(e),
            Ok(()) => closed,
        }
    }

    /// The loop of [`Consumer::run`]; returns once cancelled and what was decided is written.
    async fn work(&mut self, cancel: &CancellationToken, shutdown: Duration) -> Result<()> {
        let mut backoff = Backoff::new(&self.cfg.retry);
        // Handlers get most of the shutdown time; the rest is for writing their decisions.
        let handler_budget = shutdown.mul_f64(0.8);
        while !cancel.is_cancelled() {
            // An iteration that finds everything ready (a batch read beforehand, nothing to
            // write) completes without yielding; this lets the heartbeat, joined to this future,
            // and the runtime's other tasks run between such iterations.
            tokio::task::consume_budget().await;
            let stop = async {
                cancel.cancelled().await;
                tokio::time::sleep(handler_budget).await;
            };
            match self.iteration(stop).await {
                Ok(()) => backoff.reset(),
                Err(e) if e.is_group_missing() => return Err(self.group_missing(&e)),
                // A setting this server cannot honour (`fsync` without WAITAOF): no retry helps.
                Err(e @ Error::Unsupported { .. }) => {
                    tracing::error!(consumer = %self.opts.name, error = %e, "Consumer cannot start on this server; stopping.");
                    return Err(e);
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    if e.is_transient() {
                        tracing::warn!(consumer = %self.opts.name, error = %e, delay_ms = delay.as_millis() as u64, "Consumer step failed; retrying.");
                    } else {
                        tracing::error!(consumer = %self.opts.name, error = %e, delay_ms = delay.as_millis() as u64, "Consumer step failed with a permanent error; retrying.");
                    }
                    if sleep_or_cancel(delay, cancel).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Cancelled. A batch read beside the last settle (`settle_and_read`) is held too: handle
        // it within the handlers' budget rather than leave it pending until a reclaim.
        if let Some(batch) = self.prefetched.take() {
            let n = batch.len();
            match self
                .process_until(batch, tokio::time::sleep(handler_budget), false)
                .await
            {
                Ok(report) => {
                    tracing::info!(consumer = %self.opts.name, read = n, unfinished = report.unfinished, "Handled the batch read before shutdown.");
                }
                Err(e) => {
                    tracing::warn!(consumer = %self.opts.name, error = %e, "Handling the batch read before shutdown failed; its decisions are written below if made.");
                }
            }
        }
        // Write what was decided and not yet written (until the outer deadline).
        while !self.unsettled.is_empty() {
            let mut carried = std::mem::take(&mut self.carried);
            let r = async {
                self.connect().await?;
                self.settle(&mut carried).await
            }
            .await;
            match self.guarded(r) {
                Ok(()) => break,
                Err(e) if e.is_group_missing() => return Err(self.group_missing(&e)),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(consumer = %self.opts.name, error = %e, delay_ms = delay.as_millis() as u64, "Writing decided entries at shutdown failed; retrying.");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        Ok(())
    }

    async fn iteration(&mut self, stop: impl Future<Output = ()>) -> Result<()> {
        if self.cfg.reclaim.enabled
            && self
                .last_reclaim
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(self.cfg.reclaim.interval_ms))
        {
            self.reclaim_tick().await?;
        }
        let batch = self.fetch(None).await?;
        self.process_until(batch, stop, true).await?;
        Ok(())
    }

    /// NOGROUP while running: counted, logged, and the consumer stops.
    fn group_missing(&self, e: &Error) -> Error {
        let (stream, group) = (&self.opts.stream, &self.opts.group);
        self.metrics.group_missing(stream, group);
        tracing::error!(stream = %stream, group = %group, consumer = %self.opts.name, error = %e, "The consumer group disappeared while this consumer ran; it is never recreated silently. Stopping. Recreate it at the right position with `mt5-hub groups create`.");
        Error::GroupMissing {
            stream: stream.clone(),
            group: group.clone(),
        }
    }

    /// Graceful exit: deletes the heartbeat so the others may reclaim what is left at once, and
    /// removes this consumer from the group when it holds nothing. A connection found broken is
    /// replaced once.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn close(mut self) -> Result<()> {
        match self.release().await {
            Err(e) if e.is_connection_dropped() => {
                self.conns = None;
                self.release().await
            }
            r => r,
        }
    }

    async fn release(&mut self) -> Result<()> {
        let key = keys::heartbeat_key(&self.opts.stream, &self.opts.group, &self.opts.name);
        if self.conns.is_none() {
            // Never connected, or cut off: connect without touching the group.
            let cmd = self
                .client
                .multiplexed(Duration::from_millis(self.redis.response_timeout_ms))
                .await?;
            let read = cmd.clone();
            self.conns = Some(Conns { read, cmd });
        }
        let (stream, group, name) = (&self.opts.stream, &self.opts.group, &self.opts.name);
        let conns = self.conns.as_mut().ok_or_else(not_connected)?;
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conns.cmd).await?;
        let scripts = Scripts::get();
        let cmd = scripts
            .delete_consumer
            .cmd(&[stream.as_str(), key.as_str()], (group, name));
        let deleted: i64 = scripts.delete_consumer.run(&mut conns.cmd, &cmd).await?;
        tracing::info!(consumer = %name, removed_from_group = deleted == 1, "Consumer closed.");
        Ok(())
    }
}

/// One `XREADGROUP ... >` of up to `count` new entries, blocking up to `block` (not at all when
/// zero).
async fn read_new(
    conn: &mut MultiplexedConnection,
    opts: &ConsumerOptions,
    count: usize,
    block: Duration,
) -> Result<Vec<ReadEntry>> {
    let block_ms = block.as_millis() as u64;
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&opts.group)
        .arg(&opts.name)
        .arg("COUNT")
        .arg(count);
    if block_ms > 0 {
        cmd.arg("BLOCK").arg(block_ms);
    }
    cmd.arg("STREAMS").arg(&opts.stream).arg(">");
    let v: Value = cmd.query_async(conn).await?;
    Ok(reply::read_reply(v)?
        .into_iter()
        .map(|entry| ReadEntry { entry, deliveries: 1 })
        .collect())
}

/// Counts and logs a settle's short durability wait (it is repeated).
fn wait_short(counter: &prometheus::IntCounterVec, e: &Error) {
    counter.with_label_values(&["settle"]).inc();
    tracing::warn!(error = %e, "Settle not yet durable; waiting again.");
}

fn not_connected() -> Error {
    Error::Redis(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "consumer is not connected",
    )))
}

fn parse_id(id: &str, command: &'static str) -> Result<StreamId> {
    id.parse()
        .map_err(|e: crate::id::InvalidStreamId| Error::UnexpectedReply {
            command,
            detail: e.to_string(),
        })
}
