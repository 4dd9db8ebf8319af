//! A consumer of a group: blocking batch reads on a connection of its own, handler outcomes,
//! ownership-checked emit + ACK, retries from the own PEL, heartbeats and reclaim ticks.

mod handler;

pub use handler::{DeadLetterReason, Delivery, Emission, Handler, Outcome};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{Client, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, RedisConfig};
use crate::connection;
use crate::dead_letter;
use crate::envelope::{entry_millis, Event};
use crate::error::{Error, Result};
use crate::group;
use crate::keys;
use crate::metrics::{outcome, BusMetrics};
use crate::reclaim::{ReclaimReport, Reclaimer};
use crate::reply::{self, cmp_ids, int, items, StreamEntry};
use crate::retry::{sleep_or_cancel, Backoff};
use crate::script::{run_pipeline, Scripts};

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

/// Entries per read of already-delivered entries (the own PEL after a (re)connect, claimed
/// entries, retries). One at a time, because a batch is acknowledged only after every entry in
/// it was handled: when one entry kills the process (a poison), every entry read with it stays
/// pending and gets its delivery count raised on the next read, and would reach
/// `max_deliveries` together with the poison and be dead-lettered unhandled. Read singly, the
/// entries before the poison are handled and acknowledged, and the poison alone accumulates
/// deliveries (found by the chaos scenario `poison`).
const SUSPECT_BATCH: usize = 1;

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
    client: Client,
    redis: RedisConfig,
    cfg: BusConfig,
    opts: ConsumerOptions,
    handler: Arc<H>,
    metrics: BusMetrics,
    conns: Option<Conns>,
    /// Set on start and after every reconnect: the own PEL is re-read (from `pel_cursor`) before
    /// new entries.
    pel_cursor: Option<String>,
    /// Entries to re-read by id: due retries and freshly reclaimed entries.
    reread: Vec<String>,
    /// Entries waiting to be retried, with when they are due. They stay pending on us meanwhile.
    retries: HashMap<String, Instant>,
    /// Entries whose handler is running, with when it started; the heartbeat keeps their idle
    /// time fresh within the handler timeout. A std mutex: it is never held across an await.
    in_flight: Arc<Mutex<HashMap<String, Instant>>>,
    reclaimer: Reclaimer,
    last_reclaim: Option<Instant>,
}

impl<H: Handler> std::fmt::Debug for Consumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("opts", &self.opts)
            .field("connected", &self.conns.is_some())
            .finish()
    }
}

impl<H: Handler> Consumer<H> {
    /// A consumer; it connects on first use.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings.
    pub fn new(
        redis: &RedisConfig,
        cfg: &BusConfig,
        opts: ConsumerOptions,
        handler: H,
        metrics: BusMetrics,
    ) -> Result<Self> {
        cfg.validate()?;
        if opts.name.is_empty() || opts.stream.is_empty() || opts.group.is_empty() {
            return Err(Error::Config {
                field: "consumer",
                reason: "stream, group and name must be non-empty".into(),
            });
        }
        let client = connection::client(redis)?;
        metrics.init_consumer_series(&opts.stream, &opts.group);
        let reclaimer = Reclaimer::new(&opts.stream, &opts.group, &opts.name, cfg, metrics.clone());
        Ok(Consumer {
            client,
            redis: redis.clone(),
            cfg: cfg.clone(),
            opts,
            handler: Arc::new(handler),
            metrics,
            conns: None,
            pel_cursor: Some("0".into()),
            reread: Vec::new(),
            retries: HashMap::new(),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            reclaimer,
            last_reclaim: None,
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

    fn heartbeat_key(&self) -> String {
        keys::heartbeat_key(&self.opts.stream, &self.opts.group, &self.opts.name)
    }

    /// Connects (if not connected): both connections, the group, the heartbeat. After a
    /// (re)connect the own PEL is re-read first.
    async fn conns(&mut self) -> Result<&mut Conns> {
        if self.conns.is_none() {
            let read_timeout = self.cfg.consumer.block() + READ_TIMEOUT_MARGIN;
            let read = connection::connect(&self.client, &self.redis, read_timeout).await?;
            let mut cmd = connection::connect(
                &self.client,
                &self.redis,
                Duration::from_millis(self.redis.response_timeout_ms),
            )
            .await?;
            group::ensure_group(&mut cmd, &self.opts.stream, &self.opts.group).await?;
            write_heartbeat(&mut cmd, &self.heartbeat_key(), self.cfg.consumer.heartbeat_ttl_ms).await?;
            tracing::info!(stream = %self.opts.stream, group = %self.opts.group, consumer = %self.opts.name, "Consumer connected.");
            self.pel_cursor = Some("0".into());
            self.retries.clear();
            self.reread.clear();
            self.reclaimer.on_connect();
            self.conns = Some(Conns { read, cmd });
        }
        Ok(self.conns.as_mut().expect("connected above"))
    }

    /// Forgets the connections after a connection error; the next call reconnects.
    fn on_error(&mut self, e: &Error) {
        if (e.is_connection_dropped() || e.is_nogroup()) && self.conns.take().is_some() {
            tracing::warn!(consumer = %self.opts.name, error = %e, "Consumer lost its connection; it will reconnect and re-read its pending entries.");
        }
    }

    /// Reads the next batch: the own PEL first after a (re)connect, then due re-reads, then new
    /// entries (blocking up to `block_ms`, or `block` when given).
    ///
    /// # Cancel safety
    /// Not cancel safe: a dropped read still moves entries into this consumer's PEL. Callers
    /// check their cancellation token between calls instead.
    ///
    /// # Errors
    /// The driver's error; the connection is dropped on connection errors.
    pub async fn fetch(&mut self, block: Option<Duration>) -> Result<Vec<ReadEntry>> {
        let r = self.fetch_inner(block).await;
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    async fn fetch_inner(&mut self, block: Option<Duration>) -> Result<Vec<ReadEntry>> {
        self.conns().await?;
        let now = Instant::now();
        let mut due: Vec<String> = self
            .retries
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        due.sort_by(|a, b| cmp_ids(a, b));
        for id in due {
            self.retries.remove(&id);
            if !self.reread.contains(&id) {
                self.reread.push(id);
            }
        }
        let count = self.cfg.consumer.count;
        let (stream, group, name) = (
            self.opts.stream.clone(),
            self.opts.group.clone(),
            self.opts.name.clone(),
        );
        let conns = self.conns.as_mut().expect("connected");

        if let Some(cursor) = self.pel_cursor.clone() {
            let v: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&name)
                .arg("COUNT")
                .arg(SUSPECT_BATCH)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&cursor)
                .query_async(&mut conns.read)
                .await?;
            let entries = reply::read_reply(&v)?;
            match entries.last() {
                None => self.pel_cursor = None,
                Some(last) => self.pel_cursor = Some(last.id.clone()),
            }
            if !entries.is_empty() {
                // This read counts their delivery: they must not be re-read again by id.
                for e in &entries {
                    self.reread.retain(|id| *id != e.id);
                    self.retries.remove(&e.id);
                }
                let conns = self.conns.as_mut().expect("connected");
                let counts = pending_counts(&mut conns.cmd, &stream, &group, &name, &entries).await?;
                return Ok(with_counts(entries, &counts));
            }
            // The own PEL is drained: go on to re-reads and new entries in this same call.
        }

        // One id at a time; an id that is no longer ours (claimed away, acknowledged) yields
        // nothing and the next one is tried in this same call.
        while !self.reread.is_empty() {
            let conns = self.conns.as_mut().expect("connected");
            let ids: Vec<String> = self.reread.drain(..self.reread.len().min(SUSPECT_BATCH)).collect();
            let script = &Scripts::get().reread;
            let mut args: Vec<&str> = vec![group.as_str(), name.as_str()];
            args.extend(ids.iter().map(String::as_str));
            let cmd = script.cmd(&[stream.as_str()], args);
            let v: Value = script.run(&mut conns.cmd, &cmd).await?;
            let mut out = Vec::new();
            for row in items(&v) {
                let parts = items(row);
                let [id, fields, count] = parts else {
                    return Err(Error::UnexpectedReply {
                        command: "reread",
                        detail: format!("{row:?}"),
                    });
                };
                let entry = reply::entry(&Value::Array(vec![id.clone(), fields.clone()]), "reread")?;
                let deliveries = int(count).unwrap_or(1).max(1) as u64;
                if entry.fields.is_none() {
                    // XCLAIM already dropped it from the PEL; count it like any trimmed entry.
                    tracing::warn!(stream = %stream, group = %group, entry_id = %entry.id, "A pending entry was trimmed before it was acknowledged.");
                    self.metrics.trimmed_unacked.with_label_values(&[&stream, &group]).inc();
                    continue;
                }
                out.push(ReadEntry { entry, deliveries });
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }

        let block_ms = block.unwrap_or_else(|| self.cfg.consumer.block()).as_millis() as u64;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&group).arg(&name).arg("COUNT").arg(count);
        if block_ms > 0 {
            cmd.arg("BLOCK").arg(block_ms);
        }
        cmd.arg("STREAMS").arg(&stream).arg(">");
        let conns = self.conns.as_mut().expect("connected");
        let v: Value = cmd.query_async(&mut conns.read).await?;
        let entries = reply::read_reply(&v)?;
        Ok(entries
            .into_iter()
            .map(|entry| ReadEntry { entry, deliveries: 1 })
            .collect())
    }

    /// Handles a batch and writes the outcomes: one `XACK` for the plain acks, one pipeline of
    /// ownership-checked emit + ACK scripts for outputs and dead letters; retries are scheduled.
    ///
    /// # Errors
    /// The driver's error. Entries not yet acknowledged stay pending and are re-read after the
    /// reconnect; emits are exactly-once because each is conditional on ownership and acks in
    /// the same script.
    pub async fn process(&mut self, batch: Vec<ReadEntry>) -> Result<BatchReport> {
        let r = self.process_inner(batch).await;
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    async fn process_inner(&mut self, batch: Vec<ReadEntry>) -> Result<BatchReport> {
        let mut report = BatchReport {
            read: batch.len(),
            ..BatchReport::default()
        };
        if batch.is_empty() {
            return Ok(report);
        }
        {
            let mut f = self.in_flight.lock().expect("in-flight lock poisoned");
            let now = Instant::now();
            for r in &batch {
                f.insert(r.entry.id.clone(), now);
            }
        }
        let decisions: Vec<(ReadEntry, Decision, Duration)> = {
            let this = &*self;
            stream::iter(batch)
                .map(|r| async move {
                    let started = Instant::now();
                    let d = this.decide(&r).await;
                    (r, d, started.elapsed())
                })
                .buffered(self.cfg.consumer.concurrency)
                .collect()
                .await
        };
        let result = self.apply(decisions, &mut report).await;
        self.in_flight.lock().expect("in-flight lock poisoned").clear();
        result.map(|()| report)
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
        self.metrics
            .processing_duration
            .with_label_values(&[&self.opts.stream, &self.opts.group])
            .observe(started.elapsed().as_secs_f64());
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

    async fn apply(&mut self, decisions: Vec<(ReadEntry, Decision, Duration)>, report: &mut BatchReport) -> Result<()> {
        let (stream, group, name) = (&self.opts.stream, &self.opts.group, &self.opts.name);
        let scripts = Scripts::get();
        let mut acks: Vec<String> = Vec::new();
        let mut script_cmds: Vec<redis::Cmd> = Vec::new();
        let mut script_kinds: Vec<(String, Option<DeadLetterReason>)> = Vec::new();
        let mut latency_ids: Vec<String> = Vec::new();
        for (r, d, _) in decisions {
            match d {
                Decision::Ack => {
                    latency_ids.push(r.entry.id.clone());
                    acks.push(r.entry.id);
                }
                Decision::Trimmed => {
                    report.trimmed += 1;
                    tracing::warn!(stream = %stream, group = %group, entry_id = %r.entry.id, "A pending entry was trimmed before it was acknowledged.");
                    self.metrics.trimmed_unacked.with_label_values(&[stream, group]).inc();
                    acks.push(r.entry.id);
                }
                Decision::Emit(outputs) => {
                    let outs: Vec<(String, Vec<(String, String)>)> =
                        outputs.into_iter().map(|o| (o.stream, o.event.to_fields())).collect();
                    script_cmds.push(emit_ack_cmd(stream, group, name, &r.entry.id, &outs));
                    script_kinds.push((r.entry.id, None));
                }
                Decision::DeadLetter(reason, error) => {
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
                    tracing::warn!(stream = %stream, entry_id = %r.entry.id, reason = %reason, error = %error, deliveries = r.deliveries, "Dead-lettering an entry.");
                    script_cmds.push(emit_ack_cmd(
                        stream,
                        group,
                        name,
                        &r.entry.id,
                        &[(self.cfg.deadletter_stream.clone(), fields)],
                    ));
                    script_kinds.push((r.entry.id, Some(reason)));
                }
                Decision::Retry(after) => {
                    report.retried += 1;
                    self.metrics
                        .processed
                        .with_label_values(&[stream, group, outcome::RETRIED])
                        .inc();
                    self.retries.insert(r.entry.id, Instant::now() + after);
                }
            }
        }
        let conns = self.conns.as_mut().ok_or_else(|| {
            Error::Redis(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "consumer is not connected",
            )))
        })?;
        if !acks.is_empty() {
            let _: i64 = redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(&acks)
                .query_async(&mut conns.cmd)
                .await?;
            let plain = acks.len() - report.trimmed;
            report.acked += plain;
            self.metrics
                .processed
                .with_label_values(&[stream, group, outcome::ACKED])
                .inc_by(plain as u64);
        }
        if !script_cmds.is_empty() {
            let results = run_pipeline(&mut conns.cmd, &script_cmds, &[&scripts.emit_ack]).await?;
            let mut first_err = None;
            for ((id, kind), res) in script_kinds.into_iter().zip(results) {
                let v = match res {
                    Ok(v) => v,
                    Err(e) => {
                        first_err.get_or_insert(e);
                        continue;
                    }
                };
                let owned = items(&v).first().and_then(int) == Some(1);
                match (owned, kind) {
                    (false, _) => {
                        report.not_owner += 1;
                        tracing::info!(stream = %stream, entry_id = %id, "Entry was claimed by another consumer; wrote nothing (NotOwner).");
                        self.metrics
                            .processed
                            .with_label_values(&[stream, group, outcome::NOT_OWNER])
                            .inc();
                    }
                    (true, None) => {
                        report.emitted += 1;
                        latency_ids.push(id);
                        self.metrics
                            .processed
                            .with_label_values(&[stream, group, outcome::EMITTED])
                            .inc();
                    }
                    (true, Some(reason)) => {
                        *report.dead_lettered.entry(reason.as_str()).or_default() += 1;
                        self.metrics
                            .processed
                            .with_label_values(&[stream, group, outcome::DEAD_LETTERED])
                            .inc();
                        self.metrics
                            .deadletter
                            .with_label_values(&[stream, reason.as_str()])
                            .inc();
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let hist = self.metrics.e2e_latency.with_label_values(&[stream]);
        for id in latency_ids {
            if let Some(ms) = entry_millis(&id) {
                hist.observe(now_ms.saturating_sub(ms) as f64 / 1000.0);
            }
        }
        Ok(())
    }

    /// One fetch and process.
    ///
    /// # Errors
    /// As [`Consumer::fetch`] and [`Consumer::process`].
    pub async fn step(&mut self, block: Option<Duration>) -> Result<BatchReport> {
        let batch = self.fetch(block).await?;
        self.process(batch).await
    }

    /// Whether everything this consumer read has been handled (no scheduled retries, nothing to
    /// re-read): for tests and drains.
    pub fn is_idle(&self) -> bool {
        self.retries.is_empty() && self.reread.is_empty() && self.pel_cursor.is_none()
    }

    /// Makes every scheduled retry due now (for deterministic tests).
    pub fn expire_retries(&mut self) {
        let now = Instant::now();
        for t in self.retries.values_mut() {
            *t = now;
        }
    }

    /// One reclaim tick: claims entries of dead consumers (no heartbeat) and idle entries into this
    /// consumer, then re-reads them from the own PEL on the next fetch.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn reclaim_tick(&mut self) -> Result<ReclaimReport> {
        let r = self.reclaim_inner().await;
        if let Err(e) = &r {
            self.on_error(e);
        }
        r
    }

    async fn reclaim_inner(&mut self) -> Result<ReclaimReport> {
        self.conns().await?;
        let conns = self.conns.as_mut().expect("connected");
        let report = self.reclaimer.tick(&mut conns.cmd).await?;
        for id in &report.claimed {
            if !self.retries.contains_key(id) && !self.reread.contains(id) {
                self.reread.push(id.clone());
            }
        }
        self.reread.sort_by(|a, b| cmp_ids(a, b));
        self.last_reclaim = Some(Instant::now());
        Ok(report)
    }

    /// Refreshes the heartbeat key and the idle time of entries still within the handler timeout.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn heartbeat(&mut self) -> Result<()> {
        let key = self.heartbeat_key();
        let ttl = self.cfg.consumer.heartbeat_ttl_ms;
        let conns = self.conns().await?;
        let mut cmd = conns.cmd.clone();
        beat(
            &mut cmd,
            &key,
            ttl,
            &self.opts,
            &self.in_flight,
            self.cfg.consumer.handler_timeout_ms,
        )
        .await
    }

    /// Runs until `cancel` fires: reads, handles, acknowledges, heartbeats and reclaims; transient
    /// errors are retried forever with backoff. On cancellation it stops reading, finishes what it
    /// holds (within `shutdown_timeout_ms`), deletes its heartbeat and returns.
    ///
    /// # Errors
    /// Only when the final cleanup (deleting the heartbeat) fails with Redis reachable;
    /// everything else is retried.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let hb_cancel = CancellationToken::new();
        let hb_task = self.spawn_heartbeat(hb_cancel.clone());
        let shutdown = Duration::from_millis(self.cfg.consumer.shutdown_timeout_ms);
        let work = async {
            let mut backoff = Backoff::new(&self.cfg.retry);
            while !cancel.is_cancelled() {
                match self.iteration().await {
                    Ok(()) => backoff.reset(),
                    Err(e) => {
                        let delay = backoff.next_delay();
                        if e.is_transient() || e.is_nogroup() {
                            tracing::warn!(consumer = %self.opts.name, error = %e, delay_ms = delay.as_millis() as u64, "Consumer step failed; retrying.");
                        } else {
                            tracing::error!(consumer = %self.opts.name, error = %e, delay_ms = delay.as_millis() as u64, "Consumer step failed with a permanent error; retrying.");
                        }
                        if sleep_or_cancel(delay, &cancel).await.is_err() {
                            break;
                        }
                    }
                }
            }
        };
        // The loop checks the token between reads and finishes the batch it holds; the bound
        // applies to that last batch (a read in flight returns within block_ms).
        let deadline = async {
            cancel.cancelled().await;
            tokio::time::sleep(shutdown).await;
        };
        tokio::select! {
            () = work => {}
            () = deadline => {
                tracing::warn!(consumer = %self.opts.name, "Shutdown timeout reached; unfinished entries stay pending for the other consumers.");
            }
        }
        hb_cancel.cancel();
        let _ = hb_task.await;
        // Bounded too: with Redis unreachable the heartbeat simply expires instead.
        match tokio::time::timeout(Duration::from_millis(self.redis.response_timeout_ms), self.close()).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("Could not delete the heartbeat in time; it will expire.");
                Ok(())
            }
        }
    }

    async fn iteration(&mut self) -> Result<()> {
        if self.cfg.reclaim.enabled
            && self
                .last_reclaim
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(self.cfg.reclaim.interval_ms))
        {
            self.reclaim_tick().await?;
        }
        let batch = self.fetch(None).await?;
        self.process(batch).await?;
        Ok(())
    }

    fn spawn_heartbeat(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        let redis = self.redis.clone();
        let key = self.heartbeat_key();
        let ttl = self.cfg.consumer.heartbeat_ttl_ms;
        let every = Duration::from_millis(self.cfg.consumer.heartbeat_interval_ms);
        let handler_timeout = self.cfg.consumer.handler_timeout_ms;
        let opts = self.opts.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let mut conn: Option<MultiplexedConnection> = None;
            loop {
                if sleep_or_cancel(every, &cancel).await.is_err() {
                    return;
                }
                if conn.is_none() {
                    conn = connection::connect(&client, &redis, Duration::from_millis(redis.response_timeout_ms))
                        .await
                        .ok();
                }
                if let Some(c) = conn.as_mut() {
                    if let Err(e) = beat(c, &key, ttl, &opts, &in_flight, handler_timeout).await {
                        tracing::warn!(consumer = %opts.name, error = %e, "Heartbeat failed; retrying.");
                        if e.is_connection_dropped() {
                            conn = None;
                        }
                    }
                }
            }
        })
    }

    /// Graceful exit: deletes the heartbeat so the others may reclaim what is left at once, and
    /// removes this consumer from the group when it holds nothing.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn close(mut self) -> Result<()> {
        let key = self.heartbeat_key();
        let (stream, group, name) = (
            self.opts.stream.clone(),
            self.opts.group.clone(),
            self.opts.name.clone(),
        );
        let conns = self.conns().await?;
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conns.cmd).await?;
        let scripts = Scripts::get();
        let cmd = scripts
            .delete_consumer
            .cmd(&[stream.as_str(), key.as_str()], (&group, &name));
        let deleted: i64 = scripts.delete_consumer.run(&mut conns.cmd, &cmd).await?;
        tracing::info!(consumer = %name, removed_from_group = deleted == 1, "Consumer closed.");
        Ok(())
    }
}

async fn write_heartbeat(conn: &mut MultiplexedConnection, key: &str, ttl_ms: u64) -> Result<()> {
    let _: Value = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Refreshes the heartbeat (`PEXPIRE`, which works even when Redis is out of memory; `SET` when
/// the key is gone) and the idle time of in-flight entries within the handler timeout.
async fn beat(
    conn: &mut MultiplexedConnection,
    key: &str,
    ttl_ms: u64,
    opts: &ConsumerOptions,
    in_flight: &Mutex<HashMap<String, Instant>>,
    handler_timeout_ms: u64,
) -> Result<()> {
    let refreshed: i64 = redis::cmd("PEXPIRE").arg(key).arg(ttl_ms).query_async(conn).await?;
    if refreshed == 0 {
        write_heartbeat(conn, key, ttl_ms).await?;
    }
    let limit = Duration::from_millis(handler_timeout_ms);
    let ids: Vec<String> = in_flight
        .lock()
        .expect("in-flight lock poisoned")
        .iter()
        .filter(|(_, started)| started.elapsed() < limit)
        .map(|(id, _)| id.clone())
        .collect();
    if !ids.is_empty() {
        let s = &Scripts::get().touch_pending;
        let mut args: Vec<&str> = vec![&opts.group, &opts.name];
        args.extend(ids.iter().map(String::as_str));
        let cmd = s.cmd(&[opts.stream.as_str()], args);
        let _: i64 = s.run(conn, &cmd).await?;
    }
    Ok(())
}

/// The emit + ACK script call for one entry and its outputs. Field names and values are raw
/// bytes or text: dead letters carry the original bytes.
pub(crate) fn emit_ack_cmd<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    stream: &str,
    group: &str,
    consumer: &str,
    entry_id: &str,
    outputs: &[(String, Vec<(K, V)>)],
) -> redis::Cmd {
    let mut keys_: Vec<&str> = vec![stream];
    let mut args: Vec<Vec<u8>> = vec![group.into(), consumer.into(), entry_id.into()];
    for (out_stream, fields) in outputs {
        keys_.push(out_stream);
        args.push((fields.len() * 2).to_string().into_bytes());
        for (k, v) in fields {
            args.push(k.as_ref().to_vec());
            args.push(v.as_ref().to_vec());
        }
    }
    Scripts::get().emit_ack.cmd(&keys_, args)
}

/// Delivery counts of entries just re-read from the own PEL (a contiguous run of this consumer's
/// pending entries), from `XPENDING` over their id range.
async fn pending_counts(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    entries: &[StreamEntry],
) -> Result<HashMap<String, u64>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(HashMap::new());
    };
    let v: Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(consumer)
        .query_async(conn)
        .await?;
    Ok(reply::pending_rows(&v)?
        .into_iter()
        .map(|p| (p.id, p.deliveries))
        .collect())
}

fn with_counts(entries: Vec<StreamEntry>, counts: &HashMap<String, u64>) -> Vec<ReadEntry> {
    entries
        .into_iter()
        // An entry missing from XPENDING was claimed away between the read and the query; it
        // was delivered at least once, and the emit's ownership check will refuse it.
        .map(|entry| {
            let deliveries = counts.get(&entry.id).copied().unwrap_or(1);
            ReadEntry { entry, deliveries }
        })
        .collect()
}
