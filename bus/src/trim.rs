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
use crate::reply::{self, cmp_ids, int, items, next_id, pairs, text};
use crate::retry::sleep_or_cancel;

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
    /// Per group, entries removed before it acknowledged them (maxlen mode only).
    pub trimmed_unacked: BTreeMap<String, u64>,
}

struct GroupPos {
    name: String,
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
        let pending = m.get("pending").and_then(int).unwrap_or(0);
        let oldest_pending = if pending > 0 {
            let s: Value = redis::cmd("XPENDING").arg(stream).arg(&name).query_async(conn).await?;
            items(&s).get(1).and_then(text)
        } else {
            None
        };
        out.push(GroupPos {
            name,
            last_delivered,
            oldest_pending,
        });
    }
    Ok(out)
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
    let len: u64 = redis::cmd("XLEN").arg(stream).query_async(conn).await?;
    let mut report = TrimReport {
        stream: stream.into(),
        length_before: len,
        ..TrimReport::default()
    };
    if mode == TrimMode::Never || len <= cfg.trim.max_len {
        return Ok(report);
    }
    let chunk = ((len - cfg.trim.max_len) as usize).min(MAX_TRIM_CHUNK);
    let v: Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(chunk + 1)
        .query_async(conn)
        .await?;
    let excess: Vec<String> = reply::entries(&v, "XRANGE")?.into_iter().map(|e| e.id).collect();
    let Some(last) = excess.last() else {
        return Ok(report);
    };
    // Keep the (chunk+1)-th oldest entry and everything after it.
    let position_floor = if excess.len() > chunk {
        last.clone()
    } else {
        next_id(last)
    };
    let groups = group_positions(conn, stream).await?;

    match mode {
        TrimMode::Safe => {
            let mut floor = position_floor.clone();
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
            if cmp_ids(&floor, &excess[0]).is_le() {
                report.floor = Some(floor);
                return Ok(report);
            }
            report.trimmed = redis::cmd("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg("~")
                .arg(&floor)
                .query_async(conn)
                .await?;
            report.floor = Some(floor);
        }
        TrimMode::Maxlen => {
            let floor = position_floor;
            let below: Vec<&String> = excess.iter().filter(|id| cmp_ids(id, &floor).is_lt()).collect();
            for g in &groups {
                let undelivered = below.iter().filter(|id| cmp_ids(id, &g.last_delivered).is_gt()).count() as u64;
                let mut pending_lost = 0u64;
                if g.oldest_pending.as_ref().is_some_and(|p| cmp_ids(p, &floor).is_lt()) {
                    let v: Value = redis::cmd("XPENDING")
                        .arg(stream)
                        .arg(&g.name)
                        .arg("-")
                        .arg(format!("({floor}"))
                        .arg(MAX_TRIM_CHUNK)
                        .query_async(conn)
                        .await?;
                    let ids: Vec<String> = reply::pending_rows(&v)?.into_iter().map(|p| p.id).collect();
                    if !ids.is_empty() {
                        // Their entries are about to vanish: acknowledge so the PEL drains and
                        // they are counted once, here.
                        let _: i64 = redis::cmd("XACK")
                            .arg(stream)
                            .arg(&g.name)
                            .arg(&ids)
                            .query_async(conn)
                            .await?;
                    }
                    pending_lost = ids.len() as u64;
                }
                let lost = undelivered + pending_lost;
                if lost > 0 {
                    tracing::warn!(stream, group = %g.name, lost, "MAXLEN trimming removed entries the group had not acknowledged.");
                    metrics
                        .trimmed_unacked
                        .with_label_values(&[stream, &g.name])
                        .inc_by(lost);
                    report.trimmed_unacked.insert(g.name.clone(), lost);
                }
            }
            report.trimmed = redis::cmd("XTRIM")
                .arg(stream)
                .arg("MINID")
                .arg(&floor)
                .query_async(conn)
                .await?;
            report.floor = Some(floor);
        }
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
