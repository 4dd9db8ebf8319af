//! `EventProducer`: publish one event or a batch, idempotently when asked, with backpressure and
//! retries of transient errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, RedisConfig, TrimMode};
use crate::durability::Wait;
use crate::envelope::Event;
use crate::error::{Error, Result};
use crate::group;
use crate::keys;
use crate::metrics::BusMetrics;
use crate::reply::{int, items, text};
use crate::retry::retry_transient;
use crate::script::Scripts;

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
    conn: crate::Connection,
    cfg: BusConfig,
    metrics: BusMetrics,
    cancel: CancellationToken,
    /// Attempts per publish; `None` retries transient errors until cancelled (services).
    max_attempts: Option<u32>,
    /// Stream lengths seen after this producer's last plain (un-keyed) batch: the backlog check of
    /// the plain path (see `publish_plain`). A std mutex: never held across an await.
    lengths: Arc<Mutex<HashMap<String, u64>>>,
    /// The durability wait after each publish batch (`replicated`, `fsync`).
    wait: Option<Wait>,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl EventProducer {
    /// Connects and makes sure the configured consumer groups exist, so no event is published
    /// before its group exists: a group is created (at `0`, `MKSTREAM`) only on an absent or empty
    /// stream (see [`crate::group::ensure_group`]).
    ///
    /// # Errors
    /// Configuration errors; [`Error::GroupMissing`] when a configured group is missing on a
    /// stream with entries; the driver's error when Redis is unreachable after the bounded
    /// retries of `bus.retry`.
    pub async fn connect(
        redis: &RedisConfig,
        cfg: &BusConfig,
        metrics: BusMetrics,
        cancel: CancellationToken,
    ) -> Result<Self> {
        cfg.validate()?;
        let client = crate::Redis::new(redis)?.with_metrics(metrics.clone());
        let conn = retry_transient(
            &cfg.retry,
            Some(cfg.retry.max_attempts),
            &cancel,
            "connecting to Redis",
            || client.managed(),
        )
        .await?;
        let producer = EventProducer {
            conn,
            cfg: cfg.clone(),
            metrics,
            cancel,
            max_attempts: Some(cfg.retry.max_attempts),
            lengths: Arc::default(),
            wait: Wait::of(cfg),
        };
        if let Some(wait) = &producer.wait {
            retry_transient(
                &cfg.retry,
                producer.max_attempts,
                &producer.cancel,
                "checking the server",
                || {
                    let mut conn = producer.conn.clone();
                    async move { wait.check_server(&mut conn).await }
                },
            )
            .await?;
        }
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

    /// The connection (self-reconnecting), for callers that share it (stats, trimming, queries).
    pub fn connection(&self) -> crate::Connection {
        self.conn.clone()
    }

    /// The bus configuration.
    pub fn config(&self) -> &BusConfig {
        &self.cfg
    }

    /// Creates every configured group that does not exist yet on an absent or empty stream, and
    /// checks that the others exist.
    ///
    /// # Errors
    /// [`Error::GroupMissing`] when a configured group is missing on a stream with entries (it is
    /// never recreated at `0` there); the driver's error after bounded retries.
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
        let mut out = self.publish_each(stream, &[(event, opts)]).await?;
        out.pop().unwrap_or_else(|| {
            Err(Error::UnexpectedReply {
                command: "publish",
                detail: "no reply for the event".into(),
            })
        })
    }

    /// Publishes a batch atomically in one script call (one round trip). Results are in input
    /// order.
    ///
    /// # Errors
    /// As [`EventProducer::publish`]. On [`Error::Backpressure`] the events before the limit was
    /// reached are written; use [`EventProducer::publish_each`] to learn their entry ids.
    pub async fn publish_batch(&self, stream: &str, events: &[(Event, PublishOptions)]) -> Result<Vec<Published>> {
        let refs: Vec<(&Event, &PublishOptions)> = events.iter().map(|(e, o)| (e, o)).collect();
        self.publish_each(stream, &refs).await?.into_iter().collect()
    }

    /// Publishes a batch atomically in one script call and returns one result per event: events
    /// refused by the backlog limit get [`Error::Backpressure`], the others their entry id.
    ///
    /// # Errors
    /// The whole call fails on [`Error::EntryTooLarge`] (nothing sent) or on a Redis error after
    /// retries. A retry after a lost reply can duplicate the un-keyed events of the batch.
    pub async fn publish_each(
        &self,
        stream: &str,
        events: &[(&Event, &PublishOptions)],
    ) -> Result<Vec<Result<Published>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let out = if self.wait.is_some() {
            // Every publish keyed (the event id unless a key is given): a batch whose wait came
            // back short is sent again without duplicating what the master had applied.
            let keyed: Vec<PublishOptions> = events
                .iter()
                .map(|(e, o)| match &o.idempotency_key {
                    Some(_) => (*o).clone(),
                    None => PublishOptions::idempotent(e.id.clone()),
                })
                .collect();
            let refs: Vec<(&Event, &PublishOptions)> = events.iter().map(|(e, _)| *e).zip(keyed.iter()).collect();
            self.publish_scripted(stream, &refs).await?
        } else if events.iter().any(|(_, o)| o.idempotency_key.is_some()) {
            self.publish_scripted(stream, events).await?
        } else {
            self.publish_plain(stream, events).await?
        };
        let written = out.iter().filter(|r| matches!(r, Ok(p) if !p.duplicate)).count() as u64;
        let duplicates = out.iter().filter(|r| matches!(r, Ok(p) if p.duplicate)).count();
        if duplicates > 0 {
            tracing::debug!(
                stream,
                duplicates,
                "Publishes hit their idempotency keys; nothing written for them."
            );
        }
        self.metrics.published.with_label_values(&[stream]).inc_by(written);
        self.metrics
            .publish_duration
            .with_label_values(&[stream])
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// The keyed path: `publish.lua`, atomic with the idempotency keys and the exact backlog check.
    async fn publish_scripted(
        &self,
        stream: &str,
        events: &[(&Event, &PublishOptions)],
    ) -> Result<Vec<Result<Published>>> {
        let cmd = self.publish_cmd(stream, events)?;
        let script = &Scripts::get().publish;
        let reply: Value = retry_transient(&self.cfg.retry, self.max_attempts, &self.cancel, "publishing", || {
            let mut conn = self.conn.clone();
            let cmd = &cmd;
            async move {
                let Some(wait) = &self.wait else {
                    return script.run::<Value, _>(&mut conn, cmd).await;
                };
                // The script and its wait in one round trip on one connection; a short wait is
                // transient: the batch is sent again under its keys (nothing written twice),
                // with a new wait on the same connection.
                let (reply, waited) = wait.run_script("publish", script, &mut conn, cmd).await?;
                if let Err(e) = waited {
                    self.metrics.durability_wait_short.with_label_values(&["publish"]).inc();
                    tracing::warn!(error = %e, "Publish not yet durable; sending the batch again under its keys.");
                    return Err(e);
                }
                Ok(reply)
            }
        })
        .await?;
        let rows = items(&reply);
        if rows.len() != events.len() {
            return Err(Error::UnexpectedReply {
                command: "publish",
                detail: format!("{} replies for {} events", rows.len(), events.len()),
            });
        }
        Ok(rows.iter().map(|row| self.parse_row(stream, row)).collect())
    }

    /// The un-keyed path: a pipeline of plain `XADD`s followed by `XLEN` (a script costs Redis
    /// about twice the CPU per event). The backlog check uses the length seen after this
    /// producer's previous batch, re-read when the batch might not fit, so the limit can be
    /// overshot by at most one batch per concurrently publishing producer.
    async fn publish_plain(
        &self,
        stream: &str,
        events: &[(&Event, &PublishOptions)],
    ) -> Result<Vec<Result<Published>>> {
        let limit = self.backlog_limit(stream);
        let n = events.len() as u64;
        let mut room = n;
        if limit > 0 {
            let known = self.lengths.lock().expect("lengths lock poisoned").get(stream).copied();
            let len = match known {
                Some(len) if len + n <= limit => len,
                _ => {
                    retry_transient(
                        &self.cfg.retry,
                        self.max_attempts,
                        &self.cancel,
                        "reading the stream length",
                        || {
                            let mut conn = self.conn.clone();
                            async move { Ok(redis::cmd("XLEN").arg(stream).query_async::<u64>(&mut conn).await?) }
                        },
                    )
                    .await?
                }
            };
            room = limit.saturating_sub(len).min(n);
            if room < n {
                tracing::warn!(
                    stream,
                    length = len,
                    limit,
                    refused = n - room,
                    "Publish refused: backlog limit reached."
                );
            }
        }
        // MULTI/EXEC: all or nothing. A plain pipeline refused part-way (Redis at `maxmemory`
        // answers `OOM` to some `XADD`s after others were written) would leave written entries
        // that a retry of the batch duplicates.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (event, _) in &events[..room as usize] {
            let cmd = pipe.cmd("XADD").arg(stream).arg("*");
            let mut size = 0;
            event.for_each_field(|k, v| {
                size += k.len() + v.len();
                cmd.arg(k).arg(v);
            });
            if size > self.cfg.max_entry_bytes {
                return Err(Error::EntryTooLarge {
                    size,
                    max: self.cfg.max_entry_bytes,
                });
            }
        }
        pipe.cmd("XLEN").arg(stream);
        let reply: Vec<Value> = retry_transient(&self.cfg.retry, self.max_attempts, &self.cancel, "publishing", || {
            let mut conn = self.conn.clone();
            let pipe = &pipe;
            async move { Ok(pipe.query_async::<Vec<Value>>(&mut conn).await?) }
        })
        .await?;
        let (len, ids) = reply.split_last().ok_or_else(|| Error::UnexpectedReply {
            command: "XADD",
            detail: "empty pipeline reply".into(),
        })?;
        let len = int(len).unwrap_or(0).max(0) as u64;
        self.lengths
            .lock()
            .expect("lengths lock poisoned")
            .insert(stream.to_string(), len);
        let mut out: Vec<Result<Published>> = ids
            .iter()
            .map(|id| {
                Ok(Published {
                    entry_id: text(id).ok_or_else(|| Error::UnexpectedReply {
                        command: "XADD",
                        detail: format!("{id:?}"),
                    })?,
                    duplicate: false,
                })
            })
            .collect();
        out.extend((room..n).map(|_| {
            Err(Error::Backpressure {
                stream: stream.into(),
                length: len,
                limit,
            })
        }));
        Ok(out)
    }

    fn backlog_limit(&self, stream: &str) -> u64 {
        match self.cfg.trim.mode_for(stream, &self.cfg.deadletter_stream) {
            TrimMode::Never => 0,
            _ => self.cfg.trim.backlog_limit,
        }
    }

    /// One `EVALSHA` of `publish.lua` for the batch, with the fields written straight into the
    /// command (this is the publish hot path: no intermediate field vectors).
    fn publish_cmd(&self, stream: &str, events: &[(&Event, &PublishOptions)]) -> Result<redis::Cmd> {
        let limit = self.backlog_limit(stream);
        let idem_keys: Vec<String> = events
            .iter()
            .filter_map(|(_, o)| o.idempotency_key.as_deref().map(|k| keys::idempotency_key(stream, k)))
            .collect();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(Scripts::get().publish.sha())
            .arg(1 + idem_keys.len())
            .arg(stream)
            .arg(&idem_keys)
            .arg(self.cfg.idempotency_ttl_ms)
            .arg(limit)
            .arg(u8::from(self.wait.is_some()));
        let mut next_key = 2;
        for (event, opts) in events {
            if opts.idempotency_key.is_some() {
                cmd.arg(next_key);
                next_key += 1;
            } else {
                cmd.arg(0);
            }
            cmd.arg(event.field_count() * 2);
            let mut size = 0;
            event.for_each_field(|k, v| {
                size += k.len() + v.len();
                cmd.arg(k).arg(v);
            });
            if size > self.cfg.max_entry_bytes {
                return Err(Error::EntryTooLarge {
                    size,
                    max: self.cfg.max_entry_bytes,
                });
            }
        }
        Ok(cmd)
    }

    fn parse_row(&self, stream: &str, row: &Value) -> Result<Published> {
        match items(row) {
            [Value::Nil, len] => {
                let length = int(len).unwrap_or(0).max(0) as u64;
                let limit = self.cfg.trim.backlog_limit;
                tracing::warn!(stream, length, limit, "Publish refused: backlog limit reached.");
                Err(Error::Backpressure {
                    stream: stream.into(),
                    length,
                    limit,
                })
            }
            [id, dup] => Ok(Published {
                entry_id: text(id).ok_or_else(|| Error::UnexpectedReply {
                    command: "publish",
                    detail: "entry id".into(),
                })?,
                duplicate: int(dup) == Some(1),
            }),
            _ => Err(Error::UnexpectedReply {
                command: "publish",
                detail: format!("{row:?}"),
            }),
        }
    }
}
