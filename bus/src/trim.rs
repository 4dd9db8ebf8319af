//! Safe trimming: `XTRIM MINID ~ floor`, where the floor never passes what a group has not
//! acknowledged. Plain `MAXLEN`-style trimming is an explicit per-stream option whose losses are
//! counted.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{BusConfig, TrimMode};
use crate::error::Result;
use crate::metrics::BusMetrics;
use crate::query::{self, RangeOptions};
use crate::reply::{cmp_ids, int, items, next_id, pairs, text};
use crate::retry::sleep_or_cancel;
use crate::script::Scripts;

/// Entries examined per trim call: a tick trims at most this far; the next tick goes on.
const MAX_TRIM_CHUNK: usize = 10_000;

/// What one trim call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrimReport {
    /// The stream.
    pub stream: String,
    /// Its length before.
    pub length_before: u64,
    /// The floor used (`MINID`), when trimming was needed.
    pub floor: Option<String>,
    /// Entries removed.
    pub trimmed: u64,
    /// Whether a group's unacknowledged entries held the floor back (safe mode).
    pub held_back: bool,
    /// Per group that lost any, entries removed before it acknowledged them (maxlen mode only;
    /// a group that lost none is not listed).
    pub trimmed_unacked: BTreeMap<String, u64>,
}

struct GroupPos {
    last_delivered: String,
    oldest_pending: Option<String>,
}

async fn group_positions<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<Vec<GroupPos>> {
    let v: Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await?;
    let mut out = Vec::new();
    for g in items(&v) {
        let m = pairs(g);
        let Some(name) = m.get("name").and_then(text) else {
            continue;
        };
        let last_delivered = m
            .get("last-delivered-id")
            .and_then(text)
            .unwrap_or_else(|| "0-0".into());
        let oldest_pending = query::oldest_pending_id(conn, stream, &name).await?;
        out.push(GroupPos {
            last_delivered,
            oldest_pending,
        });
    }
    Ok(out)
}

/// `Safe` mode: trims (`XTRIM MINID ~`) below `position_floor`, but never past an entry a group
/// has not read or acknowledged (`held_back` then says so). `oldest` is the stream's first entry.
async fn trim_safe<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    position_floor: String,
    oldest: &str,
    report: &mut TrimReport,
) -> Result<()> {
    let groups = group_positions(conn, stream).await?;
    let mut floor = position_floor;
    for g in &groups {
        let mut safe = next_id(&g.last_delivered);
        if let Some(p) = &g.oldest_pending {
            if cmp_ids(p, &safe).is_lt() {
                safe = p.clone();
            }
        }
        if cmp_ids(&safe, &floor).is_lt() {
            floor = safe;
            report.held_back = true;
        }
    }
    if cmp_ids(&floor, oldest).is_gt() {
        report.trimmed = redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg("~")
            .arg(&floor)
            .query_async(conn)
            .await?;
    }
    report.floor = Some(floor);
    Ok(())
}

/// `Maxlen` mode: trims below `position_floor` whatever the groups hold, counting per group the
/// entries it had not acknowledged (`mt5_stream_trimmed_unacked_total`).
async fn trim_maxlen<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    position_floor: String,
    metrics: &BusMetrics,
    report: &mut TrimReport,
) -> Result<()> {
    // Counted and trimmed in one script: a read or an acknowledgement between the count and the
    // trim would make the count wrong.
    let script = &Scripts::get().trim_maxlen;
    let cmd = script.cmd(&[stream], (&position_floor, MAX_TRIM_CHUNK));
    let v: Value = script.run(conn, &cmd).await?;
    let parts = items(&v);
    report.trimmed = parts.first().and_then(int).unwrap_or(0).max(0) as u64;
    for row in parts.get(1).map(items).unwrap_or_default() {
        let (Some(group), Some(lost)) = (items(row).first().and_then(text), items(row).get(1).and_then(int)) else {
            continue;
        };
        let lost = lost.max(0) as u64;
        if lost > 0 {
            tracing::warn!(stream, group = %group, lost, "MAXLEN trimming removed entries the group had not acknowledged.");
            metrics
                .trimmed_unacked
                .with_label_values(&[stream, &group])
                .inc_by(lost);
            report.trimmed_unacked.insert(group, lost);
        }
    }
    report.floor = Some(position_floor);
    Ok(())
}

/// Trims one stream once, according to its mode.
///
/// # Errors
/// The driver's error.
pub async fn trim_stream<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    cfg: &BusConfig,
    metrics: &BusMetrics,
) -> Result<TrimReport> {
    let mode = cfg.trim.mode_for(stream, &cfg.deadletter_stream);
    let len = query::len(conn, stream).await?;
    let mut report = TrimReport {
        stream: stream.into(),
        length_before: len,
        ..TrimReport::default()
    };
    if mode == TrimMode::Never || len <= cfg.trim.max_len {
        return Ok(report);
    }
    let chunk = ((len - cfg.trim.max_len) as usize).min(MAX_TRIM_CHUNK);
    let excess: Vec<String> = query::range(conn, stream, &RangeOptions::all().count(chunk))
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    let Some(last) = excess.last() else {
        return Ok(report);
    };
    // Below the id just after the chunk-th oldest entry: the chunk goes, what follows it stays.
    let position_floor = next_id(last);
    match mode {
        TrimMode::Safe => trim_safe(conn, stream, position_floor, &excess[0], &mut report).await?,
        TrimMode::Maxlen => trim_maxlen(conn, stream, position_floor, metrics, &mut report).await?,
        TrimMode::Never => {}
    }
    if report.held_back {
        tracing::debug!(stream, floor = ?report.floor, "Trimming held back by unacknowledged entries; the backlog grows instead.");
    }
    Ok(report)
}

/// Trims `streams` every `bus.trim.interval_ms` until cancelled; errors are logged and retried
/// on the next tick.
pub async fn run_trimmer<C: ConnectionLike + Send>(
    mut conn: C,
    streams: Vec<String>,
    cfg: BusConfig,
    metrics: BusMetrics,
    cancel: CancellationToken,
) {
    let every = Duration::from_millis(cfg.trim.interval_ms);
    loop {
        for s in &streams {
            if let Err(e) = trim_stream(&mut conn, s, &cfg, &metrics).await {
                tracing::warn!(stream = %s, error = %e, "Trimming failed; will try again.");
            }
        }
        if sleep_or_cancel(every, &cancel).await.is_err() {
            return;
        }
    }
}
