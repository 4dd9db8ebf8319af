//! `streams stats` and `streams tail`.

use std::time::Duration;

use mt5_bus::query::{self, ReadOptions};
use mt5_bus::stats::{list_streams, stream_stats, StreamStats};
use mt5_bus::StreamEntry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::{human_ms, or_dash, print, print_json, println, Table};
use crate::redis_conn::OneShot;

/// Longest `BLOCK` of one tail read: short, so a stop is noticed quickly.
const TAIL_BLOCK: Duration = Duration::from_millis(1000);
/// Entries per tail read.
const TAIL_COUNT: usize = 100;

/// `streams stats`: a table or JSON of the given (or the known) streams.
///
/// # Errors
/// Redis unreachable after bounded retries, or a write error.
pub(crate) async fn stats(
    cfg: &HubConfig,
    cancel: &CancellationToken,
    json: bool,
    streams: Vec<String>,
) -> Result<(), HubError> {
    let redis = OneShot::connect(cfg, cancel).await?;
    let streams = if streams.is_empty() {
        let found = redis
            .run("listing the streams", |mut conn| async move {
                list_streams(&mut conn).await
            })
            .await?;
        configured_first(cfg.known_streams(), found)
    } else {
        streams
    };
    let mut all = Vec::with_capacity(streams.len());
    for s in &streams {
        let st = redis
            .run("reading stream stats", |mut conn| {
                let s = s.clone();
                async move { stream_stats(&mut conn, &s).await }
            })
            .await?;
        all.push(st);
    }
    if json {
        print_json(&all)?;
    } else {
        print(&render_stats(&all))?;
    }
    Ok(())
}

/// The configured streams (shown even when they do not exist yet), then every other stream found
/// in the database, in name order.
fn configured_first(configured: Vec<String>, found: Vec<String>) -> Vec<String> {
    let mut out = configured;
    for s in found {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The readable form of stream stats: one table of the streams, then per stream with groups a
/// table of its groups and one of their consumers.
pub(crate) fn render_stats(all: &[StreamStats]) -> String {
    let mut t = Table::new(0, &["STREAM", "LENGTH", "FIRST ID", "LAST ID", "GROUPS"]);
    for s in all {
        if s.exists {
            t.row(vec![
                s.stream.clone(),
                s.length.to_string(),
                or_dash(s.first_id.as_ref()),
                or_dash(s.last_id.as_ref()),
                s.groups.len().to_string(),
            ]);
        } else {
            t.row(vec![
                s.stream.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "(stream does not exist)".into(),
            ]);
        }
    }
    let mut out = t.render();
    for s in all.iter().filter(|s| !s.groups.is_empty()) {
        out.push_str(&format!("\n{}\n", s.stream));
        let mut gt = Table::new(
            2,
            &[
                "GROUP",
                "PENDING",
                "LAG",
                "OLDEST PENDING",
                "AGE",
                "ALIVE/CONSUMERS",
                "LAST DELIVERED",
            ],
        );
        let mut ct = Table::new(2, &["GROUP", "CONSUMER", "PENDING", "IDLE", "HEARTBEAT"]);
        let mut consumers = 0;
        for g in &s.groups {
            gt.row(vec![
                g.name.clone(),
                g.pending.to_string(),
                or_dash(g.lag),
                or_dash(g.oldest_pending_id.as_ref()),
                g.oldest_pending_age_ms.map_or_else(|| "-".into(), human_ms),
                format!("{}/{}", g.alive(), g.consumers.len()),
                g.last_delivered_id.clone(),
            ]);
            for c in &g.consumers {
                consumers += 1;
                ct.row(vec![
                    g.name.clone(),
                    c.name.clone(),
                    c.pending.to_string(),
                    human_ms(c.idle_ms),
                    if c.alive { "alive".into() } else { "missing".into() },
                ]);
            }
        }
        out.push_str(&gt.render());
        if consumers > 0 {
            out.push_str(&ct.render());
        }
    }
    out
}

/// One printed entry of `streams tail`.
#[derive(Debug, Serialize)]
struct TailLine<'a> {
    entry_id: &'a str,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// `streams tail`: follows `stream` with `XREAD BLOCK` from `from` (`$` = what arrives from now
/// on), printing each entry as one JSON line, until cancelled, `count` entries were printed, or
/// stdout is closed. Transient errors are retried with the bounded retries of `bus.retry`
/// (counted per outage).
///
/// # Errors
/// Redis unreachable after bounded retries, an invalid id, or a write error.
pub(crate) async fn tail(
    cfg: &HubConfig,
    cancel: &CancellationToken,
    stream: &str,
    from: &str,
    count: Option<u64>,
) -> Result<(), HubError> {
    if from != "$" {
        check_id(from)?;
    }
    if count == Some(0) {
        return Ok(());
    }
    let redis = OneShot::connect(cfg, cancel).await?;
    // `$` is resolved once, to the stream's last generated id: re-sending `$` on every read would
    // skip what arrives between two reads.
    let mut after = if from == "$" {
        redis
            .run("reading the stream's last id", |mut conn| {
                let stream = stream.to_string();
                async move { query::last_generated_id(&mut conn, &stream).await }
            })
            .await?
    } else {
        from.to_string()
    };
    // The read's reply must come back well within the connection's response timeout.
    let block_ms = (TAIL_BLOCK.as_millis() as u64)
        .min(cfg.bus.consumer.block_ms)
        .min(cfg.redis.response_timeout_ms / 2)
        .max(1);
    let mut printed = 0u64;
    tracing::debug!(stream, after = %after, "Following the stream.");
    while !cancel.is_cancelled() {
        let read = redis.run("reading the stream", |mut conn| {
            let (stream, after) = (stream.to_string(), after.clone());
            let opts = ReadOptions::count(TAIL_COUNT).block(Duration::from_millis(block_ms));
            async move { query::read_after(&mut conn, &stream, &after, &opts).await }
        });
        // Cancelling an XREAD loses nothing: it holds no group state.
        let entries = tokio::select! {
            r = read => r?,
            () = cancel.cancelled() => break,
        };
        for (id, fields) in json_entries(entries) {
            let line = TailLine { entry_id: &id, fields };
            let text =
                serde_json::to_string(&line).map_err(|e| HubError::io("encoding JSON", std::io::Error::other(e)))?;
            if !println(&text)? {
                return Ok(());
            }
            after = id;
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Checks the syntax of a stream id (`<ms>` or `<ms>-<seq>`).
///
/// # Errors
/// [`HubError::Usage`] naming the id.
pub(crate) fn check_id(id: &str) -> Result<(), HubError> {
    let ok = match id.split_once('-') {
        Some((ms, seq)) => is_digits(ms) && is_digits(seq),
        None => is_digits(id),
    };
    if ok {
        Ok(())
    } else {
        Err(HubError::Usage(format!(
            "{id:?} is not a stream entry id (expected <ms>-<seq>, e.g. 1700000000000-0)"
        )))
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Entry fields as a JSON object of strings.
type JsonFields = serde_json::Map<String, serde_json::Value>;

/// Entries as (id, fields as JSON strings), in order. Field names and values that are not UTF-8
/// are shown lossily.
fn json_entries(entries: Vec<StreamEntry>) -> Vec<(String, JsonFields)> {
    entries
        .into_iter()
        .map(|e| {
            let map = e
                .fields
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(&v).into_owned()),
                    )
                })
                .collect();
            (e.id, map)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mt5_bus::stats::{ConsumerStats, GroupStats};

    /// Entry ids are checked before they reach Redis.
    #[test]
    fn entry_ids_are_checked() {
        check_id("1700000000000-0").unwrap();
        check_id("0").unwrap();
        assert!(check_id("abc").is_err());
        assert!(check_id("1-").is_err());
        assert!(check_id("-1").is_err());
    }

    /// Without `--stream`: the configured streams first, then the others found, each once.
    #[test]
    fn configured_streams_come_first_then_the_others() {
        let got = configured_first(
            vec!["raw".into(), "dlq".into()],
            vec!["a".into(), "dlq".into(), "z".into()],
        );
        assert_eq!(got, ["raw", "dlq", "a", "z"]);
    }

    /// The table shows missing streams, `-` for unknown lag, consumers and their heartbeat.
    #[test]
    fn the_stats_table_shows_groups_and_consumers() {
        let s = StreamStats {
            stream: "s".into(),
            exists: true,
            length: 3,
            first_id: Some("1-0".into()),
            last_id: Some("3-0".into()),
            groups: vec![GroupStats {
                name: "g".into(),
                pending: 1,
                last_delivered_id: "2-0".into(),
                entries_read: Some(2),
                lag: None,
                oldest_pending_id: Some("2-0".into()),
                oldest_pending_age_ms: Some(65_000),
                consumers: vec![ConsumerStats {
                    name: "c1".into(),
                    pending: 1,
                    idle_ms: 1500,
                    alive: true,
                }],
            }],
        };
        let missing = StreamStats {
            stream: "gone".into(),
            exists: false,
            length: 0,
            first_id: None,
            last_id: None,
            groups: vec![],
        };
        let text = render_stats(&[s, missing]);
        let expected = "\
STREAM  LENGTH  FIRST ID  LAST ID  GROUPS
s       3       1-0       3-0      1
gone    -       -         -        (stream does not exist)

s
  GROUP  PENDING  LAG  OLDEST PENDING  AGE    ALIVE/CONSUMERS  LAST DELIVERED
  g      1        -    2-0             1m05s  1/1              2-0
  GROUP  CONSUMER  PENDING  IDLE  HEARTBEAT
  g      c1        1        1.5s  alive
";
        assert_eq!(text, expected);
    }
}
