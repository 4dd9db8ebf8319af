//! `EventProducer`: publish one event or a batch, idempotently when asked, with backpressure and
//! retries of transient errors.

use std::time::Instant;

use redis::aio::ConnectionManager;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, RedisConfig, TrimMode};
use crate::connection;
use crate::envelope::{fields_size, Event};
use crate::error::{Error, Result};
use crate::group;
use crate::keys;
use crate::metrics::BusMetrics;
use crate::reply::{int, items, text};
use crate::retry::retry_transient;
use crate::script::{run_pipeline, Scripts};

/// Per-publish options.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PublishOptions {
    /// With a key, a second publish with the same key (within the TTL) writes nothing and returns
    /// the first entry id.
    pub idempotency_key: Option<String>,
}

impl PublishOptions {
    /// Options with an idempotency key.
    pub fn idempotent(key: impl Into<String>) -> Self {
        PublishOptions {
            idempotency_key: Some(key.into()),
        }
    }
}

/// What a publish returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The stream entry id (the original one for a duplicate).
    pub entry_id: String,
    /// Whether the idempotency key already existed, so nothing was written.
    pub duplicate: bool,
}

/// Publishes events to streams. Cheap to clone: clones share one self-reconnecting connection.
#[derive(Clone)]
pub struct EventProducer {
    conn: ConnectionManager,
    cfg: BusConfig,
    metrics: BusMetrics,
    cancel: CancellationToken,
    /// Attempts per publish; `None` retries transient errors until cancelled (services).
    max_attempts: Option<u32>,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl EventProducer {
    /// Connects and creates the configured consumer groups (at `0`, `MKSTREAM`), so no event is
    /// published before its group exists.
    ///
    /// # Errors
    /// Configuration errors, or the driver's error when Redis is unreachable after the bounded
    /// retries of `bus.retry`.
    pub async fn connect(
        redis: &RedisConfig,
        cfg: &BusConfig,
        metrics: BusMetrics,
        cancel: CancellationToken,
    ) -> Result<Self> {
        cfg.validate()?;
        let client = connection::client(redis)?;
        let conn = retry_transient(
            &cfg.retry,
            Some(cfg.retry.max_attempts),
            &cancel,
            "connecting to Redis",
            || connection::connection_manager(&client, redis),
        )
        .await?;
        let producer = EventProducer {
            conn,
            cfg: cfg.clone(),
            metrics,
            cancel,
            max_attempts: Some(cfg.retry.max_attempts),
        };
        producer.ensure_groups().await?;
        Ok(producer)
    }

    /// Retry transient errors forever (until cancelled) instead of `bus.retry.max_attempts` times:
    /// what a long-running service wants.
    #[must_use]
    pub fn with_unbounded_retries(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// The connection, for callers that share it (stats, trimming).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The bus configuration.
    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    /// Creates every configured group that does not exist yet.
    ///
    /// # Errors
    /// The driver's error after bounded retries.
    pub async fn ensure_groups(&self) -> Result<()> {
        for spec in &self.cfg.groups {
            retry_transient(
                &self.cfg.retry,
                self.max_attempts,
                &self.cancel,
                "creating a consumer group",
                || {
                    let mut conn = self.conn.clone();
                    async move { group::ensure_group(&mut conn, &spec.stream, &spec.group).await }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes one event.
    ///
    /// # Errors
    /// [`Error::EntryTooLarge`], [`Error::Backpressure`], or the driver's error once retries of
    /// transient failures are exhausted. A transient failure after Redis applied the write is
    /// retried too: without an idempotency key that can duplicate the entry (same event `id`).
    pub async fn publish(&self, stream: &str, event: &Event) -> Result<Published> {
        self.publish_with(stream, event, &PublishOptions::default()).await
    }

    /// Publishes one event with options.
    ///
    /// # Errors
    /// As [`EventProducer::publish`].
    pub async fn publish_with(&self, stream: &str, event: &Event, opts: &PublishOptions) -> Result<Published> {
        let started = Instant::now();
        let cmd = self.publish_cmd(stream, event, opts)?;
        let reply: Value = retry_transient(&self.cfg.retry, self.max_attempts, &self.cancel, "publishing", || {
            let mut conn = self.conn.clone();
            let cmd = cmd.clone();
            async move { Scripts::get().publish.run::<Value, _>(&mut conn, &cmd).await }
        })
        .await
        .map_err(|e| self.backpressure(stream, e))?;
        let published = parse_published(&reply)?;
        self.record(stream, 1, started, &published);
        Ok(published)
    }

    /// Publishes a batch in one pipeline (one round trip). Results are in input order.
    ///
    /// # Errors
    /// As [`EventProducer::publish`]; on a failure part of the batch may already be written (each
    /// event's entry id is then lost to the caller, so prefer idempotency keys for batches that
    /// must not duplicate).
    pub async fn publish_batch(&self, stream: &str, events: &[(Event, PublishOptions)]) -> Result<Vec<Published>> {
        let started = Instant::now();
        let cmds = events
            .iter()
            .map(|(e, o)| self.publish_cmd(stream, e, o))
            .collect::<Result<Vec<_>>>()?;
        // Results land here as they arrive, so a retry re-sends only what has not succeeded.
        let done: std::sync::Mutex<Vec<Option<Published>>> = std::sync::Mutex::new(vec![None; cmds.len()]);
        let scripts = Scripts::get();
        retry_transient(
            &self.cfg.retry,
            self.max_attempts,
            &self.cancel,
            "publishing a batch",
            || {
                let todo: Vec<usize> = {
                    let d = done.lock().expect("batch lock poisoned");
                    (0..cmds.len()).filter(|&i| d[i].is_none()).collect()
                };
                let batch: Vec<redis::Cmd> = todo.iter().map(|&i| cmds[i].clone()).collect();
                let mut conn = self.conn.clone();
                let done = &done;
                async move {
                    let results = run_pipeline(&mut conn, &batch, &[&scripts.publish]).await?;
                    let mut first_err = None;
                    let mut d = done.lock().expect("batch lock poisoned");
                    for (i, r) in todo.into_iter().zip(results) {
                        match r.and_then(|v| parse_published(&v)) {
                            Ok(p) => d[i] = Some(p),
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    first_err.map_or(Ok(()), Err)
                }
            },
        )
        .await
        .map_err(|e| self.backpressure(stream, e))?;
        let done = done.into_inner().expect("batch lock poisoned");
        let out: Vec<Published> = done.into_iter().flatten().collect();
        for p in &out {
            if p.duplicate {
                tracing::debug!(stream, entry_id = %p.entry_id, "Publish hit its idempotency key; nothing written.");
            }
        }
        let written = out.iter().filter(|p| !p.duplicate).count() as u64;
        self.metrics.published.with_label_values(&[stream]).inc_by(written);
        self.metrics
            .publish_duration
            .with_label_values(&[stream])
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    fn publish_cmd(&self, stream: &str, event: &Event, opts: &PublishOptions) -> Result<redis::Cmd> {
        let fields = event.to_fields();
        let size = fields_size(&fields);
        if size > self.cfg.max_entry_bytes {
            return Err(Error::EntryTooLarge {
                size,
                max: self.cfg.max_entry_bytes,
            });
        }
        let limit = match self.cfg.trim.mode_for(stream, &self.cfg.deadletter_stream) {
            TrimMode::Never => 0,
            _ => self.cfg.trim.backlog_limit,
        };
        let mut keys_: Vec<String> = vec![stream.to_string()];
        if let Some(k) = &opts.idempotency_key {
            keys_.push(keys::idempotency_key(stream, k));
        }
        let mut args: Vec<String> = Vec::with_capacity(2 + fields.len() * 2);
        args.push(self.cfg.idempotency_ttl_ms.to_string());
        args.push(limit.to_string());
        for (k, v) in fields {
            args.push(k);
            args.push(v);
        }
        Ok(Scripts::get().publish.cmd(&keys_, args))
    }

    fn backpressure(&self, stream: &str, e: Error) -> Error {
        if let Error::Redis(re) = &e {
            if re.code() == Some("BACKLOG") {
                let length = re.detail().and_then(|d| d.trim().parse().ok()).unwrap_or(0);
                tracing::warn!(
                    stream,
                    length,
                    limit = self.cfg.trim.backlog_limit,
                    "Publish refused: backlog limit reached."
                );
                return Error::Backpressure {
                    stream: stream.into(),
                    length,
                    limit: self.cfg.trim.backlog_limit,
                };
            }
        }
        e
    }

    fn record(&self, stream: &str, n: u64, started: Instant, p: &Published) {
        if p.duplicate {
            tracing::debug!(stream, entry_id = %p.entry_id, "Publish hit its idempotency key; nothing written.");
        } else {
            self.metrics.published.with_label_values(&[stream]).inc_by(n);
        }
        self.metrics
            .publish_duration
            .with_label_values(&[stream])
            .observe(started.elapsed().as_secs_f64());
    }
}

fn parse_published(v: &Value) -> Result<Published> {
    match items(v) {
        [id, dup] => Ok(Published {
            entry_id: text(id).ok_or_else(|| Error::UnexpectedReply {
                command: "publish",
                detail: "entry id".into(),
            })?,
            duplicate: int(dup) == Some(1),
        }),
        _ => Err(Error::UnexpectedReply {
            command: "publish",
            detail: format!("{v:?}"),
        }),
    }
}
