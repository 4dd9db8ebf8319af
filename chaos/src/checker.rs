//! The history checker: reads back what the group did with every published event and gives the
//! verdict of the zero-loss invariant.
//!
//! Inputs: the publisher's history files (what was published: unique event ids), the raw stream,
//! the output stream (the filter's effects: `data.raw_id`), the dead letter stream (field `id`
//! and `dlq_reason`, entries with `dlq_stream` = the raw stream) and the group's PEL. The load
//! is built so that every good event passes the filter (`publish --template news`), so a
//! published event with neither an effect nor a dead letter is lost: a plain ACK of a rejected
//! event would look exactly like a loss, which is why the traffic never produces one.
//!
//! ```no_run
//! use mt5_chaos::checker::Checker;
//! use mt5_chaos::harness::Scenario;
//!
//! # async fn example(sc: &Scenario) -> Result<(), mt5_chaos::harness::HarnessError> {
//! let checker = Checker::for_scenario(sc);
//! let recovery = checker.wait_drained(std::time::Duration::from_secs(20)).await?;
//! let verdict = checker
//!     .check(&[sc.history_path("load")])
//!     .await?
//!     .with_recovery(recovery)
//!     .with_faults("3 consumer SIGKILLs");
//! println!("{}", verdict.line());
//! verdict.assert_zero_loss();
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mt5_bus::query::{self, RangeReader};
use mt5_bus::{stats, Connection, Redis, RedisConfig, StreamEntry, StreamId};
use mt5_fixtures::Percentiles;

use crate::harness::{HarnessError, Result, Scenario, Streams};
use crate::history::History;

/// Entries per `XRANGE` page.
const PAGE: usize = 1000;
/// Time to establish a connection, in ms.
const CONNECT_TIMEOUT_MS: u64 = 5000;
/// Time to wait for a reply, in ms.
const RESPONSE_TIMEOUT_MS: u64 = 10_000;

/// Reads a scenario's streams back.
#[derive(Debug, Clone)]
pub struct Checker {
    redis_url: String,
    /// `(master name, sentinels)` in sentinel mode: the checker reads the current master.
    sentinels: Option<(String, Vec<String>)>,
    streams: Streams,
}

/// What happened to the published events.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Verdict {
    /// What faults were injected (for the report), set by the scenario.
    pub faults: String,
    /// Distinct event ids whose publish returned an entry id.
    pub published: u64,
    /// History lines whose idempotency key already existed: retried publishes that deduped.
    pub publish_dedupes: u64,
    /// Torn history lines (a SIGKILLed publisher's last line).
    pub history_torn: u64,
    /// Entries in the raw stream.
    pub raw_entries: u64,
    /// Published events with at least one effect in the output stream.
    pub processed: u64,
    /// Effects (output entries) of this scenario's raw stream.
    pub effects: u64,
    /// Effects beyond the first per event (the same `raw_id` twice in the output).
    pub duplicated_effects: u64,
    /// Published events in the dead letter stream, by `dlq_reason`.
    pub dead_lettered: BTreeMap<String, u64>,
    /// Published events dead-lettered more than once, or both dead-lettered and processed.
    pub double_outcomes: u64,
    /// Published events with neither an effect nor a dead letter.
    pub lost: u64,
    /// Up to 10 lost event ids.
    pub lost_sample: Vec<String>,
    /// Effects or dead letters of event ids the history does not hold (a publish applied but
    /// not recorded, e.g. the publisher was killed before writing its history).
    pub unrecorded: u64,
    /// Entries still in the group's PEL.
    pub pending: u64,
    /// End-to-end latency of the effects (output entry id ms − raw entry id ms), in ms; `None`
    /// without effects.
    pub latency: Option<Percentiles>,
    /// Time to recover, measured by the scenario.
    pub recovery: Option<Duration>,
}

impl Verdict {
    /// With the scenario's faults description.
    #[must_use]
    pub fn with_faults(mut self, faults: impl Into<String>) -> Self {
        self.faults = faults.into();
        self
    }

    /// With the scenario's time to recover.
    #[must_use]
    pub fn with_recovery(mut self, recovery: Duration) -> Self {
        self.recovery = Some(recovery);
        self
    }

    /// All dead-lettered published events.
    pub fn dead_lettered_total(&self) -> u64 {
        self.dead_lettered.values().sum()
    }

    /// Dead letters with `reason`.
    pub fn dead_lettered_with(&self, reason: &str) -> u64 {
        self.dead_lettered.get(reason).copied().unwrap_or(0)
    }

    /// `reason=n,reason=n`, or `0`.
    pub fn dead_lettered_text(&self) -> String {
        if self.dead_lettered.is_empty() {
            return "0".into();
        }
        self.dead_lettered
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The one-line summary with every figure.
    pub fn line(&self) -> String {
        let lat = self
            .latency
            .map_or_else(|| "n/a".to_string(), |l| format!("{}/{}/{} ms", l.p50, l.p95, l.p99));
        let rec = self
            .recovery
            .map_or_else(|| "n/a".to_string(), |d| format!("{:.2}s", d.as_secs_f64()));
        format!(
            "published {} (dedupes {}), processed {}, effects {}, duplicated {}, dead-lettered {}, double outcomes {}, lost {}, pending {}, unrecorded {}, recovery {}, e2e p50/p95/p99 {}",
            self.published,
            self.publish_dedupes,
            self.processed,
            self.effects,
            self.duplicated_effects,
            self.dead_lettered_text(),
            self.double_outcomes,
            self.lost,
            self.pending,
            self.unrecorded,
            rec,
            lat
        )
    }

    /// Asserts the zero-loss invariant: something was published, nothing lost, no duplicated
    /// effect, no event with two outcomes, and the PEL drained.
    ///
    /// # Panics
    /// When the invariant does not hold (the message has the whole line and lost ids).
    pub fn assert_zero_loss(&self) {
        assert!(self.published > 0, "nothing was published: {}", self.line());
        assert!(
            self.lost == 0 && self.duplicated_effects == 0 && self.double_outcomes == 0 && self.pending == 0,
            "zero-loss invariant violated: {}; lost ids (sample): {:?}",
            self.line(),
            self.lost_sample
        );
    }
}

/// The milliseconds part of an entry id.
fn entry_ms(id: &str) -> Option<u64> {
    id.parse::<StreamId>().ok().map(StreamId::millis)
}

/// An entry id read from Redis, parsed.
fn stream_id(id: &str, what: &str) -> Result<StreamId> {
    id.parse()
        .map_err(|e: mt5_bus::id::InvalidStreamId| HarnessError::Parse {
            what: what.to_string(),
            detail: e.to_string(),
        })
}

impl Checker {
    /// A checker of `streams` on `redis_url`.
    pub fn new(redis_url: &str, streams: Streams) -> Self {
        Checker {
            redis_url: redis_url.to_string(),
            sentinels: None,
            streams,
        }
    }

    /// Reads the master named `master` as `sentinels` (`host:port`) report it, on every
    /// connection: the checker follows a failover as the services do.
    #[must_use]
    pub fn with_sentinels(mut self, master: &str, sentinels: &[String]) -> Self {
        self.sentinels = Some((master.to_string(), sentinels.to_vec()));
        self
    }

    /// A checker of the scenario's streams.
    pub fn for_scenario(sc: &Scenario) -> Self {
        Self::new(&sc.redis_url, sc.streams.clone())
    }

    /// A fresh connection (Redis may have restarted since the last one): connect timeout 5 s,
    /// response timeout 10 s.
    ///
    /// # Errors
    /// The URL is invalid, or Redis is unreachable.
    pub async fn connection(&self) -> Result<Connection> {
        let mut cfg = RedisConfig::default().with_url(self.redis_url.as_str());
        if let Some((master, sentinels)) = &self.sentinels {
            cfg = cfg.with_sentinels(master.as_str(), sentinels.iter().cloned());
        }
        cfg.connect_timeout_ms = CONNECT_TIMEOUT_MS;
        cfg.response_timeout_ms = RESPONSE_TIMEOUT_MS;
        Ok(Redis::new(&cfg)?.connect().await?)
    }

    /// Every entry of `stream`, oldest first, paged.
    async fn read_all(conn: &mut Connection, stream: &str) -> Result<Vec<StreamEntry>> {
        Ok(RangeReader::new(stream, PAGE).read_to_end(conn).await?)
    }

    /// `XLEN` of the output stream: a cheap progress probe while a fault is on (Redis errors are
    /// the caller's to retry).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn output_len(&self) -> Result<u64> {
        let mut conn = self.connection().await?;
        Ok(query::len(&mut conn, &self.streams.filtered).await?)
    }

    /// The id times (ms) of the first and the last entry of the filtered stream: the span over
    /// which the effects were written; `(0, 0)` when it is empty.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn output_span(&self) -> Result<(u64, u64)> {
        let mut conn = self.connection().await?;
        let ms = |e: Option<StreamEntry>| {
            e.and_then(|e| e.id.parse::<StreamId>().ok())
                .map_or(0, StreamId::millis)
        };
        let first = ms(query::first_entry(&mut conn, &self.streams.filtered).await?);
        let last = ms(query::last_entry(&mut conn, &self.streams.filtered).await?);
        Ok((first, last))
    }

    /// The group's pending count (`XPENDING` summary; 0 when the stream or group is missing).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn pending(&self) -> Result<u64> {
        Ok(self.pending_by_consumer().await?.values().sum())
    }

    /// The group's pending entries per consumer (empty when the stream or group is missing).
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn pending_by_consumer(&self) -> Result<HashMap<String, u64>> {
        let mut conn = self.connection().await?;
        // None (NOGROUP): nothing was ever published.
        let summary = query::pending_summary(&mut conn, &self.streams.raw, &self.streams.group).await?;
        Ok(summary.map(|s| s.consumers.into_iter().collect()).unwrap_or_default())
    }

    /// The group's last-delivered id and the stream's last-generated id; `None` when the stream
    /// or the group is missing.
    async fn positions(&self, conn: &mut Connection) -> Result<Option<(StreamId, StreamId)>> {
        let last = query::last_generated_id(conn, &self.streams.raw).await?;
        let info = stats::stream_stats(conn, &self.streams.raw).await?;
        if !info.exists {
            return Ok(None);
        }
        let Some(group) = info.groups.iter().find(|g| g.name == self.streams.group) else {
            return Ok(None);
        };
        let delivered = stream_id(
            &group.last_delivered_id,
            &format!("the last-delivered id of group {}", group.name),
        )?;
        let last = stream_id(&last, &format!("the last-generated id of {}", self.streams.raw))?;
        Ok(Some((delivered, last)))
    }

    /// Whether the group has read every entry and its PEL is empty.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn is_drained(&self) -> Result<bool> {
        let mut conn = self.connection().await?;
        let Some((delivered, last)) = self.positions(&mut conn).await? else {
            return Ok(false);
        };
        Ok(delivered >= last && self.pending().await? == 0)
    }

    /// Waits until the group has read every entry and its PEL is empty; returns how long that
    /// took. Redis errors while waiting (a restart) are retried until the timeout.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] with the pending count at the end.
    pub async fn wait_drained(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if let Ok(true) = self.is_drained().await {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= timeout {
                let pending = self.pending().await.unwrap_or(u64::MAX);
                return Err(HarnessError::Timeout {
                    what: format!(
                        "group {} on {} to drain (pending {pending})",
                        self.streams.group, self.streams.raw
                    ),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads everything back and computes the verdict (without faults or recovery time: add
    /// them with [`Verdict::with_faults`] and [`Verdict::with_recovery`]).
    ///
    /// # Errors
    /// A history file cannot be read, Redis is unreachable, or an output entry's `data` is not
    /// JSON.
    pub async fn check(&self, histories: &[PathBuf]) -> Result<Verdict> {
        let history = History::read(histories)?;
        let published: HashSet<&str> = history.event_ids().into_iter().collect();
        let mut conn = self.connection().await?;
        let raw = Self::read_all(&mut conn, &self.streams.raw).await?;
        let output = Self::read_all(&mut conn, &self.streams.filtered).await?;
        let dlq = Self::read_all(&mut conn, &self.streams.deadletter).await?;

        let mut effects_by_id: HashMap<String, u64> = HashMap::new();
        let mut latencies = Vec::with_capacity(output.len());
        let mut effects = 0u64;
        for entry in &output {
            let entry_id = &entry.id;
            let data = entry.field("data").unwrap_or("null");
            let data: serde_json::Value = serde_json::from_str(data).map_err(|e| HarnessError::Parse {
                what: format!("the data of output entry {entry_id}"),
                detail: e.to_string(),
            })?;
            let Some(raw_id) = data.get("raw_id").and_then(|v| v.as_str()) else {
                continue;
            };
            effects += 1;
            *effects_by_id.entry(raw_id.to_string()).or_default() += 1;
            if let (Some(out_ms), Some(in_ms)) = (
                entry_ms(entry_id),
                data.get("raw_entry_id").and_then(|v| v.as_str()).and_then(entry_ms),
            ) {
                latencies.push(out_ms.saturating_sub(in_ms));
            }
        }
        let mut dead_by_id: HashMap<String, (u64, String)> = HashMap::new();
        for entry in &dlq {
            if entry.field("dlq_stream") != Some(self.streams.raw.as_str()) {
                continue;
            }
            let Some(id) = entry.field("id") else { continue };
            let reason = entry.field("dlq_reason").unwrap_or("unknown").to_string();
            let e = dead_by_id.entry(id.to_string()).or_insert((0, reason));
            e.0 += 1;
        }

        let mut v = Verdict {
            published: published.len() as u64,
            publish_dedupes: history.duplicates() as u64,
            history_torn: history.torn as u64,
            raw_entries: raw.len() as u64,
            effects,
            ..Verdict::default()
        };
        for id in &published {
            let n_eff = effects_by_id.get(*id).copied().unwrap_or(0);
            let dead = dead_by_id.get(*id);
            if n_eff > 0 {
                v.processed += 1;
                v.duplicated_effects += n_eff - 1;
            }
            if let Some((n, reason)) = dead {
                *v.dead_lettered.entry(reason.clone()).or_default() += 1;
                if *n > 1 || n_eff > 0 {
                    v.double_outcomes += 1;
                }
            }
            if n_eff == 0 && dead.is_none() {
                v.lost += 1;
                if v.lost_sample.len() < 10 {
                    v.lost_sample.push((*id).to_string());
                }
            }
        }
        v.unrecorded = effects_by_id
            .keys()
            .chain(dead_by_id.keys())
            .filter(|id| !published.contains(id.as_str()))
            .collect::<HashSet<_>>()
            .len() as u64;
        v.pending = self.pending().await?;
        if !latencies.is_empty() {
            v.latency = Some(Percentiles::of(&mut latencies));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entry ids compare numerically, not as text.
    #[test]
    fn entry_ids_compare_numerically() {
        let id = |s: &str| stream_id(s, "a test id").unwrap();
        assert!(id("10-0") > id("9-5"));
        assert!(id("10-10") > id("10-9"));
        assert!(stream_id("x-1", "a test id").is_err());
        assert_eq!(entry_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(entry_ms("nope"), None);
    }

    /// The zero-loss assertion fails on a loss.
    #[test]
    #[should_panic(expected = "zero-loss invariant violated")]
    fn a_loss_fails_the_verdict() {
        Verdict {
            published: 2,
            processed: 1,
            lost: 1,
            ..Verdict::default()
        }
        .assert_zero_loss();
    }
}
