//! Stream statistics from `XINFO`, and their export to the gauges.

use chrono::Utc;
use redis::aio::ConnectionLike;
use redis::Value;
use serde::Serialize;

use crate::envelope::entry_millis;
use crate::error::{is_no_such_key, Result};
use crate::keys;
use crate::metrics::BusMetrics;
use crate::query;
use crate::reply::{int, items, pairs, text};

/// One consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStats {
    /// Its name.
    pub name: String,
    /// Entries it holds.
    pub pending: u64,
    /// Milliseconds since its last interaction.
    pub idle_ms: u64,
    /// Whether its heartbeat key exists.
    pub alive: bool,
}

/// One group of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// Its name.
    pub name: String,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
    /// The last delivered id.
    pub last_delivered_id: String,
    /// Entries read so far, when Redis knows.
    pub entries_read: Option<u64>,
    /// Entries not yet delivered; `None` when Redis reports nil (it cannot tell, e.g. after
    /// deletions or a trim past the group's position).
    pub lag: Option<u64>,
    /// The oldest pending id.
    pub oldest_pending_id: Option<String>,
    /// Its age: now minus the id's time, in ms.
    pub oldest_pending_age_ms: Option<u64>,
    /// Consumers.
    pub consumers: Vec<ConsumerStats>,
}

impl GroupStats {
    /// Consumers with a live heartbeat.
    pub fn alive(&self) -> usize {
        self.consumers.iter().filter(|c| c.alive).count()
    }
}

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// The stream.
    pub stream: String,
    /// Whether the key exists.
    pub exists: bool,
    /// Entries.
    pub length: u64,
    /// Oldest entry id.
    pub first_id: Option<String>,
    /// Newest entry id.
    pub last_id: Option<String>,
    /// Groups.
    pub groups: Vec<GroupStats>,
}

fn first_of(v: Option<&Value>) -> Option<String> {
    v.and_then(|e| items(e).first().and_then(text))
}

/// Every stream key in the database (`SCAN ... TYPE stream`, paged to its end), sorted. SCAN may
/// report a key twice while keys are added; each name appears once here.
///
/// # Errors
/// The driver's error, or [`crate::Error::UnexpectedReply`] for a reply that is not a SCAN page.
pub async fn list_streams<C: ConnectionLike + Send>(conn: &mut C) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let v: Value = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query_async(conn)
            .await?;
        let (next, keys) = match items(&v) {
            [next, keys] => (text(next), items(keys)),
            _ => (None, &[][..]),
        };
        let next = next.ok_or_else(|| crate::Error::UnexpectedReply {
            command: "SCAN",
            detail: format!("{v:?}"),
        })?;
        names.extend(keys.iter().filter_map(text));
        if next == "0" {
            return Ok(names.into_iter().collect());
        }
        cursor = next;
    }
}

/// Collects the stats of one stream. A missing stream is reported with `exists: false`.
///
/// # Errors
/// The driver's error.
pub async fn stream_stats<C: ConnectionLike + Send>(conn: &mut C, stream: &str) -> Result<StreamStats> {
    let info: redis::RedisResult<Value> = redis::cmd("XINFO").arg("STREAM").arg(stream).query_async(conn).await;
    let info = match info {
        Ok(v) => pairs(&v),
        Err(e) if is_no_such_key(&e) => {
            return Ok(StreamStats {
                stream: stream.into(),
                exists: false,
                length: 0,
                first_id: None,
                last_id: None,
                groups: vec![],
            })
        }
        Err(e) => return Err(e.into()),
    };
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    let mut stats = StreamStats {
        stream: stream.into(),
        exists: true,
        length: info.get("length").and_then(int).unwrap_or(0).max(0) as u64,
        first_id: first_of(info.get("first-entry")),
        last_id: first_of(info.get("last-entry")),
        groups: Vec::new(),
    };
    let gv: Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await?;
    for g in items(&gv) {
        let m = pairs(g);
        let Some(name) = m.get("name").and_then(text) else {
            continue;
        };
        let pending = m.get("pending").and_then(int).unwrap_or(0).max(0) as u64;
        let oldest_pending_id = query::oldest_pending_id(conn, stream, &name).await?;
        let cv: Value = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(&name)
            .query_async(conn)
            .await?;
        let mut consumers: Vec<ConsumerStats> = items(&cv)
            .iter()
            .filter_map(|c| {
                let c = pairs(c);
                Some(ConsumerStats {
                    name: text(c.get("name")?)?,
                    pending: c.get("pending").and_then(int).unwrap_or(0).max(0) as u64,
                    idle_ms: c.get("idle").and_then(int).unwrap_or(0).max(0) as u64,
                    alive: false,
                })
            })
            .collect();
        if !consumers.is_empty() {
            let mut pipe = redis::pipe();
            for c in &consumers {
                pipe.cmd("EXISTS").arg(keys::heartbeat_key(stream, &name, &c.name));
            }
            let alive: Vec<i64> = pipe.query_async(conn).await?;
            for (c, a) in consumers.iter_mut().zip(alive) {
                c.alive = a == 1;
            }
        }
        stats.groups.push(GroupStats {
            oldest_pending_age_ms: oldest_pending_id
                .as_deref()
                .and_then(entry_millis)
                .map(|ms| now_ms.saturating_sub(ms)),
            oldest_pending_id,
            pending,
            last_delivered_id: m
                .get("last-delivered-id")
                .and_then(text)
                .unwrap_or_else(|| "0-0".into()),
            entries_read: m.get("entries-read").and_then(int).map(|v| v.max(0) as u64),
            lag: m.get("lag").and_then(int).map(|v| v.max(0) as u64),
            consumers,
            name,
        });
    }
    Ok(stats)
}

impl BusMetrics {
    /// Sets the stream gauges from collected stats. A nil lag removes the lag series (absent,
    /// not 0).
    pub fn observe_stats(&self, s: &StreamStats) {
        self.stream_length.with_label_values(&[&s.stream]).set(s.length as i64);
        for g in &s.groups {
            let labels = [s.stream.as_str(), g.name.as_str()];
            match g.lag {
                Some(lag) => self.group_lag.with_label_values(&labels).set(lag as i64),
                None => {
                    let _ = self.group_lag.remove_label_values(&labels);
                }
            }
            self.group_pending.with_label_values(&labels).set(g.pending as i64);
            self.consumers_alive.with_label_values(&labels).set(g.alive() as i64);
            let age_s = g.oldest_pending_age_ms.map_or(0, |ms| (ms / 1000) as i64);
            self.oldest_pending_age.with_label_values(&labels).set(age_s);
        }
    }
}
