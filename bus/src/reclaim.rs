//! Reclaim: entries of consumers without a heartbeat (crashed) and entries idle past `min_idle`
//! (stuck handlers) are claimed with `JUSTID` (which does not count a delivery) into a live
//! consumer, which then re-reads them from its own PEL.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::Value;

use crate::config::BusConfig;
use crate::error::Result;
use crate::keys;
use crate::metrics::{reclaim_kind, BusMetrics};
use crate::reply::{self, id_list, items, pairs, text};
use crate::script::Scripts;

/// Upper bound on `XAUTOCLAIM` calls per tick, so one tick stays short. The scan goes on from
/// where it stopped at the next tick, so every pending entry is examined however long the PEL.
const MAX_AUTOCLAIM_CALLS: usize = 100;

/// What one reclaim tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Ids now pending on the claiming consumer.
    pub claimed: Vec<String>,
    /// Of those, claimed from consumers without a heartbeat.
    pub from_dead: usize,
    /// Of those, claimed because they were idle past `min_idle`.
    pub idle: usize,
    /// Claimed ids that had been trimmed while pending (acknowledged and counted).
    pub trimmed: usize,
    /// Dead consumers removed from the group (no heartbeat, empty PEL).
    pub deleted_consumers: Vec<String>,
}

/// Claims for one consumer of one group.
#[derive(Debug, Clone)]
pub struct Reclaimer {
    stream: String,
    group: String,
    consumer: String,
    heartbeat_ttl: Duration,
    min_idle_ms: u64,
    count: usize,
    connected_at: Instant,
    /// Where the idle scan goes on (`XAUTOCLAIM`'s cursor); `0-0` starts a new pass.
    idle_cursor: String,
    metrics: BusMetrics,
}

impl Reclaimer {
    /// A reclaimer claiming into `consumer`.
    pub fn new(stream: &str, group: &str, consumer: &str, cfg: &BusConfig, metrics: BusMetrics) -> Self {
        Reclaimer {
            stream: stream.into(),
            group: group.into(),
            consumer: consumer.into(),
            heartbeat_ttl: Duration::from_millis(cfg.consumer.heartbeat_ttl_ms),
            min_idle_ms: cfg.reclaim.min_idle_ms,
            count: cfg.reclaim.count,
            connected_at: Instant::now(),
            idle_cursor: "0-0".into(),
            metrics,
        }
    }

    /// Records a (re)connect: the heartbeat path waits one TTL from here, so consumers that were
    /// cut off with us have had time to write their heartbeats again.
    pub fn on_connect(&mut self) {
        self.connected_at = Instant::now();
    }

    /// Lets the heartbeat path run at once (tests that control liveness explicitly).
    pub fn skip_connect_grace(&mut self) {
        self.connected_at = Instant::now()
            .checked_sub(self.heartbeat_ttl)
            .unwrap_or(self.connected_at);
    }

    /// One tick: the dead-consumer path (once a TTL has passed since connecting), then the idle
    /// path.
    ///
    /// # Errors
    /// The driver's error.
    pub async fn tick<C: ConnectionLike + Send>(&mut self, conn: &mut C) -> Result<ReclaimReport> {
        let mut report = ReclaimReport::default();
        if self.connected_at.elapsed() >= self.heartbeat_ttl {
            self.claim_from_dead(conn, &mut report).await?;
        }
        self.claim_idle(conn, &mut report).await?;
        // Counted every tick, 0 included: the series exist from the first tick on (a consumer
        // creates them at 0 anyway), and there is no condition to get wrong.
        let labels = [self.stream.as_str(), self.group.as_str()];
        self.metrics
            .reclaimed
            .with_label_values(&[labels[0], labels[1], reclaim_kind::DEAD_CONSUMER])
            .inc_by(report.from_dead as u64);
        self.metrics
            .reclaimed
            .with_label_values(&[labels[0], labels[1], reclaim_kind::IDLE])
            .inc_by(report.idle as u64);
        self.metrics
            .trimmed_unacked
            .with_label_values(&labels)
            .inc_by(report.trimmed as u64);
        Ok(report)
    }

    async fn claim_from_dead<C: ConnectionLike + Send>(&self, conn: &mut C, report: &mut ReclaimReport) -> Result<()> {
        let v: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(conn)
            .await?;
        let consumers: Vec<String> = items(&v)
            .iter()
            .filter_map(|c| text(pairs(c).get("name")?))
            .filter(|name| *name != self.consumer)
            .collect();
        if consumers.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for name in &consumers {
            pipe.cmd("EXISTS")
                .arg(keys::heartbeat_key(&self.stream, &self.group, name));
        }
        let alive: Vec<i64> = pipe.query_async(conn).await?;
        for (name, alive) in consumers.iter().zip(alive) {
            if alive == 1 {
                continue;
            }
            // Without asking what XINFO said it held: one dead consumer with nothing pending costs
            // one XPENDING, once (it is deleted below).
            self.claim_all_of(conn, name, report).await?;
            let hb = keys::heartbeat_key(&self.stream, &self.group, name);
            let s = &Scripts::get().delete_consumer;
            let cmd = s.cmd(&[self.stream.as_str(), hb.as_str()], (&self.group, name));
            let deleted: i64 = s.run(conn, &cmd).await?;
            if deleted == 1 {
                tracing::info!(stream = %self.stream, group = %self.group, consumer = %name, "Removed a dead consumer from the group.");
                report.deleted_consumers.push(name.clone());
            }
        }
        Ok(())
    }

    async fn claim_all_of<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        dead: &str,
        report: &mut ReclaimReport,
    ) -> Result<()> {
        loop {
            let v: Value = redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(self.count)
                .arg(dead)
                .query_async(conn)
                .await?;
            let ids: Vec<String> = reply::pending_rows(&v)?.into_iter().map(|p| p.id).collect();
            if ids.is_empty() {
                return Ok(());
            }
            let claimed: Vec<String> = id_list(
                &redis::cmd("XCLAIM")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&self.consumer)
                    .arg(0)
                    .arg(&ids)
                    .arg("JUSTID")
                    .query_async::<Value>(conn)
                    .await?,
            );
            let got: HashSet<&str> = claimed.iter().map(String::as_str).collect();
            let missing: Vec<&String> = ids.iter().filter(|id| !got.contains(id.as_str())).collect();
            if !missing.is_empty() {
                // Trimmed while pending: nothing to process; acknowledge so the PEL drains.
                let _: i64 = redis::cmd("XACK")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&missing)
                    .query_async(conn)
                    .await?;
                tracing::warn!(stream = %self.stream, group = %self.group, count = missing.len(), "Claimed entries had been trimmed before they were acknowledged.");
                report.trimmed += missing.len();
            }
            tracing::info!(stream = %self.stream, group = %self.group, from = %dead, to = %self.consumer, count = claimed.len(), "Reclaimed entries of a consumer without a heartbeat.");
            report.from_dead += claimed.len();
            report.claimed.extend(claimed);
        }
    }

    async fn claim_idle<C: ConnectionLike + Send>(&mut self, conn: &mut C, report: &mut ReclaimReport) -> Result<()> {
        let mut seen: HashSet<String> = report.claimed.iter().cloned().collect();
        for _ in 0..MAX_AUTOCLAIM_CALLS {
            let v: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(self.min_idle_ms)
                .arg(&self.idle_cursor)
                .arg("COUNT")
                .arg(self.count)
                .arg("JUSTID")
                .query_async(conn)
                .await?;
            let parts = items(&v);
            let next = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
            let claimed = parts.get(1).map(id_list).unwrap_or_default();
            let deleted = parts.get(2).map(id_list).unwrap_or_default();
            // Trimmed while pending: XAUTOCLAIM already removed them from the PEL.
            report.trimmed += deleted.len();
            if !deleted.is_empty() {
                tracing::warn!(stream = %self.stream, group = %self.group, count = deleted.len(), "Idle pending entries had been trimmed before they were acknowledged.");
            }
            if !claimed.is_empty() {
                tracing::info!(stream = %self.stream, group = %self.group, to = %self.consumer, count = claimed.len(), min_idle_ms = self.min_idle_ms, "Reclaimed idle entries.");
            }
            for id in claimed {
                if seen.insert(id.clone()) {
                    report.idle += 1;
                    report.claimed.push(id);
                }
            }
            let wrapped = next == "0-0";
            self.idle_cursor = next;
            if wrapped {
                break;
            }
        }
        Ok(())
    }
}
