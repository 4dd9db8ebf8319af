//! `publish --rate R --count N`: a paced load that survives Redis restarts and records every
//! acknowledged publish, for the chaos suite and load tests.
//!
//! Event `i` (from 0) has data `{"seq": i, "payload": "<payload-bytes x's>"}`, or with
//! `--template news` a `news.raw.v1` article that passes the default filter (see `template`).
//! Either way the data also holds `published_us`: the wall clock (µs since the Unix epoch) right
//! before its batch was handed to Redis, so a reader of the stream, or of the filter's output
//! (which copies the raw data), can time each event end to end at µs resolution (entry ids have
//! 1 ms). A batch retried after an error keeps its first stamp. Transient errors
//! are retried until they pass or a signal stops the load (`with_unbounded_retries`); on
//! SIGINT/SIGTERM the batch in flight is finished (or abandoned in its backoff sleep and counted
//! as unconfirmed) and the summary is printed.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use mt5_bus::sleep_or_cancel;
use mt5_bus::{BusMetrics, Data, Event, PublishOptions, Published};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::bucket::TokenBucket;
use super::template;
use crate::cli::{LoadTemplate, PublishArgs};
use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::println;
use crate::redis_conn::classify;
use crate::services::{self, Retries};

/// The event type when `--type` is not given.
const DEFAULT_TYPE: &str = "load.v1";
/// The event source of load events unless `--source` says otherwise.
const SOURCE: &str = "mt5-hub/load";
/// Round trips per second the automatic batch size aims at.
const AUTO_BATCHES_PER_SECOND: f64 = 100.0;
/// Largest automatic batch.
const MAX_AUTO_BATCH: usize = 500;
/// The data field holding the publish time, µs since the Unix epoch (see the module docs).
const PUBLISHED_US: &str = "published_us";
/// Pause after a refused (backpressure) batch.
const BACKPRESSURE_PAUSE: Duration = Duration::from_millis(500);
/// Events the token bucket may hold beyond one batch, as time at the target rate.
const BURST_WINDOW: Duration = Duration::from_millis(50);
/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// One line of the history file.
#[derive(Debug, Serialize)]
struct HistoryLine<'a> {
    event_id: &'a str,
    entry_id: &'a str,
    seq: u64,
    published_at_ms: i64,
    duplicate: bool,
}

/// What the load did.
#[derive(Debug, Default, Serialize)]
struct Summary {
    /// Events handed to Redis.
    sent: u64,
    /// Events whose publish returned an entry id (duplicates included).
    acknowledged: u64,
    /// Acknowledged events whose idempotency key already existed (nothing written).
    duplicates: u64,
    /// Events whose publish failed permanently (e.g. backpressure).
    failed: u64,
    /// Events in flight when a signal stopped the load during a retry: written or not, unknown.
    unconfirmed: u64,
    /// Whether a signal stopped the load before `count`.
    interrupted: bool,
    /// Wall time from the first publish, in seconds.
    elapsed_s: f64,
    /// Acknowledged events per second.
    rate_achieved: f64,
    /// The `--rate`.
    rate_target: f64,
}

/// The automatic batch size: about 100 round trips per second, 1 to 500 events each.
fn auto_batch(rate: f64) -> usize {
    ((rate / AUTO_BATCHES_PER_SECOND).ceil() as usize).clamp(1, MAX_AUTO_BATCH)
}

/// A stable event id for `(prefix, seq)`: a UUID (version 8) from two FNV-1a hashes, so a rerun
/// with the same idempotency key prefix publishes the same event ids.
fn stable_event_id(prefix: &str, seq: u64) -> String {
    fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = seed;
        for p in parts {
            for b in *p {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }
    let parts: [&[u8]; 3] = [prefix.as_bytes(), &[0], &seq.to_le_bytes()];
    let hi = fnv1a(0xcbf2_9ce4_8422_2325, &parts);
    let lo = fnv1a(0x6c62_272e_07bb_0142, &parts);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string()
}

/// How the load's events are made: the template, type, source and padding of the arguments,
/// and stable ids and idempotency keys under `--idempotency-key-prefix`.
struct EventMaker {
    template: LoadTemplate,
    event_type: String,
    source: String,
    pad: String,
    prefix: Option<String>,
    #[cfg(feature = "chaos")]
    poison: Option<super::poison::Poison>,
}

impl EventMaker {
    fn new(args: &PublishArgs) -> Result<Self, HubError> {
        let template = args.load.template;
        let default_type = match template {
            LoadTemplate::Seq => DEFAULT_TYPE,
            LoadTemplate::News => template::NEWS_RAW_TYPE,
        };
        Ok(EventMaker {
            template,
            event_type: args.event_type.clone().unwrap_or_else(|| default_type.to_string()),
            source: args.source_or(SOURCE),
            pad: "x".repeat(args.load.payload_bytes),
            prefix: args.load.idempotency_key_prefix.clone(),
            #[cfg(feature = "chaos")]
            poison: super::poison::Poison::from_args(&args.load.poison, template)?,
        })
    }

    /// Event `i` and its publish options.
    fn event(&self, i: u64) -> (Event, PublishOptions) {
        let mut e = match self.template {
            LoadTemplate::Seq => {
                let data = serde_json::json!({ "seq": i, "payload": self.pad });
                Event::new(self.source.as_str(), self.event_type.as_str(), data)
            }
            LoadTemplate::News => {
                let mut e = template::news_event(self.source.as_str(), i);
                e.event_type.clone_from(&self.event_type);
                e
            }
        };
        #[cfg(feature = "chaos")]
        if let Some(p) = &self.poison {
            p.apply(&mut e, i);
        }
        let mut opts = PublishOptions::default();
        if let Some(p) = &self.prefix {
            e = e.with_id(stable_event_id(p, i));
            opts = PublishOptions::idempotent(format!("{p}-{i}"));
        }
        (e, opts)
    }
}

/// What the load does after a batch.
enum AfterBatch {
    Go,
    Stop,
    Fail(mt5_bus::Error),
}

impl Summary {
    /// Counts a batch's outcome (`events` starting at `seq`) and writes its history lines.
    async fn record(
        &mut self,
        outcome: mt5_bus::Result<Vec<Published>>,
        seq: u64,
        events: &[(Event, PublishOptions)],
        history: Option<&mut BufWriter<File>>,
        cancel: &CancellationToken,
    ) -> Result<AfterBatch, HubError> {
        let n = events.len() as u64;
        match outcome {
            Ok(results) => {
                let now_ms = chrono::Utc::now().timestamp_millis();
                if let Some(h) = history {
                    write_history(h, seq, events, &results, now_ms)?;
                }
                self.acknowledged += results.len() as u64;
                self.duplicates += results.iter().filter(|p| p.duplicate).count() as u64;
                self.failed += n - results.len() as u64;
                Ok(AfterBatch::Go)
            }
            Err(mt5_bus::Error::Cancelled) => {
                self.unconfirmed += n;
                Ok(AfterBatch::Stop)
            }
            Err(e @ mt5_bus::Error::Backpressure { .. }) => {
                self.failed += n;
                tracing::warn!(error = %e, seq, "A batch was refused by backpressure; pausing before the next one.");
                Ok(match sleep_or_cancel(BACKPRESSURE_PAUSE, cancel).await {
                    Ok(()) => AfterBatch::Go,
                    Err(_) => AfterBatch::Stop,
                })
            }
            Err(e) => {
                self.failed += n;
                tracing::error!(error = %e, seq, "A batch failed permanently; stopping the load.");
                Ok(AfterBatch::Fail(e))
            }
        }
    }

    /// Sets the time and rate figures at the end of the run.
    fn finish(&mut self, started: Instant) {
        self.elapsed_s = started.elapsed().as_secs_f64();
        self.rate_achieved = if self.elapsed_s > 0.0 {
            self.acknowledged as f64 / self.elapsed_s
        } else {
            0.0
        };
    }
}

/// Runs the paced load: `count` events at `rate` per second in batches, until done or
/// cancelled, then prints the summary.
///
/// # Errors
/// Usage errors (bad rate), a history file that cannot be written, or a permanent publish error
/// other than backpressure (after printing the summary).
pub(crate) async fn run(
    cfg: &HubConfig,
    cancel: &CancellationToken,
    args: &PublishArgs,
    rate: f64,
) -> Result<(), HubError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(HubError::Usage(format!(
            "--rate must be a positive number of events per second, got {rate}"
        )));
    }
    let count = args.load.count.unwrap_or(0);
    let batch = args
        .batch
        .map_or_else(|| auto_batch(rate), |b| b as usize)
        .min(count.max(1) as usize);
    let maker = EventMaker::new(args)?;
    let mut history = match &args.load.history {
        Some(path) => Some(open_history(path)?),
        None => None,
    };
    let mut summary = Summary {
        rate_target: rate,
        ..Summary::default()
    };

    let producer = match services::connect_producer(cfg, BusMetrics::default(), cancel, Retries::Unbounded).await {
        Ok(p) => p,
        Err(HubError::Bus(mt5_bus::Error::Cancelled)) => {
            summary.interrupted = true;
            return print_summary(&summary, args.json);
        }
        Err(e) => return Err(e),
    };
    tracing::info!(stream = %args.stream, rate, count, batch, "Starting the paced load.");

    // A bucket of exactly one batch would lose the timer's oversleep on every wait (and run
    // below the rate); 50 ms of events is slack enough without a catch-up burst after a stall.
    let capacity = batch.max((rate * BURST_WINDOW.as_secs_f64()).ceil() as usize);
    let mut bucket = TokenBucket::new(rate, capacity);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut fatal = None;
    let mut seq = 0u64;
    while seq < count {
        let n = (batch as u64).min(count - seq);
        if cancel.is_cancelled() || !bucket.acquire(n as usize, cancel).await {
            break;
        }
        let mut events: Vec<(Event, PublishOptions)> = (seq..seq + n).map(|i| maker.event(i)).collect();
        summary.sent += n;
        // Stamped last, after the batch is built, so the figure starts when the batch is sent.
        stamp_published_us(&mut events, chrono::Utc::now().timestamp_micros());
        let outcome = producer.publish_batch(&args.stream, &events).await;
        match summary.record(outcome, seq, &events, history.as_mut(), cancel).await? {
            AfterBatch::Go => {}
            AfterBatch::Stop => break,
            AfterBatch::Fail(e) => {
                fatal = Some(e);
                break;
            }
        }
        seq += n;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            tracing::info!(
                acknowledged = summary.acknowledged,
                failed = summary.failed,
                remaining = count - seq,
                "Load in progress."
            );
        }
    }
    summary.interrupted = seq < count && fatal.is_none();
    summary.finish(started);
    if let Some(h) = history.as_mut() {
        h.flush().map_err(|e| HubError::io("flushing the history file", e))?;
    }
    print_summary(&summary, args.json)?;
    match fatal {
        Some(e) => Err(classify(cfg, e)),
        None => Ok(()),
    }
}

/// Puts `published_us` into the data of every event of a batch (data that is not a JSON object
/// is left alone; the templates only build objects).
fn stamp_published_us(events: &mut [(Event, PublishOptions)], published_us: i64) {
    for (e, _) in events {
        let text = e.data.get();
        let Some(rest) = text.strip_prefix('{') else {
            continue;
        };
        e.data = if text.contains(PUBLISHED_US) {
            // A data object that may have the member already: replace it (the slow way).
            let mut value = e.data.to_value();
            if let serde_json::Value::Object(map) = &mut value {
                map.insert(PUBLISHED_US.into(), published_us.into());
            }
            value.into()
        } else {
            // The member goes first, without re-serializing the rest.
            let sep = if rest.trim_start().starts_with('}') { "" } else { "," };
            match Data::from_json(format!("{{\"{PUBLISHED_US}\":{published_us}{sep}{rest}")) {
                Ok(data) => data,
                Err(_) => continue,
            }
        };
    }
}

/// Opens the history file for appending (created if missing), so a rerun after a crash adds to
/// what the killed run recorded.
fn open_history(path: &Path) -> Result<BufWriter<File>, HubError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| HubError::io(format!("opening the history file {}", path.display()), e))?;
    Ok(BufWriter::new(file))
}

/// Appends one line per acknowledged event and flushes, so a SIGKILL loses at most the batch
/// being written (the data is in the OS's page cache once `flush` returns).
fn write_history(
    out: &mut BufWriter<File>,
    first_seq: u64,
    events: &[(Event, PublishOptions)],
    results: &[Published],
    published_at_ms: i64,
) -> Result<(), HubError> {
    for (i, ((event, _), p)) in events.iter().zip(results).enumerate() {
        let line = HistoryLine {
            event_id: &event.id,
            entry_id: &p.entry_id,
            seq: first_seq + i as u64,
            published_at_ms,
            duplicate: p.duplicate,
        };
        serde_json::to_writer(&mut *out, &line).map_err(|e| HubError::io("writing the history file", e.into()))?;
        out.write_all(b"\n")
            .map_err(|e| HubError::io("writing the history file", e))?;
    }
    out.flush().map_err(|e| HubError::io("writing the history file", e))
}

fn print_summary(s: &Summary, json: bool) -> Result<(), HubError> {
    let text = if json {
        serde_json::to_string(s).map_err(|e| HubError::io("encoding JSON", std::io::Error::other(e)))?
    } else {
        format!(
            "sent {}, acknowledged {} ({} duplicates), failed {}, unconfirmed {}{}, elapsed {:.2}s, rate {:.1}/s (target {}/s)",
            s.sent,
            s.acknowledged,
            s.duplicates,
            s.failed,
            s.unconfirmed,
            if s.interrupted { ", interrupted" } else { "" },
            s.elapsed_s,
            s.rate_achieved,
            s.rate_target
        )
    };
    println(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// About 100 round trips per second, within 1..=500 events each.
    #[test]
    fn the_automatic_batch_follows_the_rate() {
        assert_eq!(auto_batch(1.0), 1);
        assert_eq!(auto_batch(200.0), 2);
        assert_eq!(auto_batch(5000.0), 50);
        assert_eq!(auto_batch(1e9), 500);
    }

    /// Every event of a batch gets the one stamp, next to its template fields.
    #[test]
    fn a_batch_is_stamped_with_its_publish_time() {
        let mut events = vec![
            (
                Event::new("s", "load.v1", serde_json::json!({"seq": 0, "payload": ""})),
                PublishOptions::default(),
            ),
            (template::news_event("s", 1), PublishOptions::default()),
        ];
        events.push((
            Event::new("s", "load.v1", serde_json::json!({"published_us": 1, "seq": 2})),
            PublishOptions::default(),
        ));
        events.push((
            Event::new("s", "load.v1", serde_json::json!({})),
            PublishOptions::default(),
        ));
        events.push((
            Event::new("s", "load.v1", serde_json::json!([1])),
            PublishOptions::default(),
        ));
        stamp_published_us(&mut events, 1_700_000_000_123_456);
        for (e, _) in &events[..4] {
            assert_eq!(e.data.to_value()[PUBLISHED_US], 1_700_000_000_123_456_i64, "{}", e.data);
        }
        assert_eq!(events[0].0.data.to_value()["seq"], 0);
        assert!(events[1].0.data.to_value()["article"].is_object());
        assert_eq!(
            events[2].0.data,
            serde_json::json!({"published_us": 1_700_000_000_123_456_i64, "seq": 2}),
            "a stamp already there is replaced, not repeated"
        );
        assert_eq!(events[3].0.data.get(), r#"{"published_us":1700000000123456}"#);
        assert_eq!(
            events[4].0.data.get(),
            "[1]",
            "data that is not an object is left alone"
        );
    }

    /// The same prefix and seq give the same UUID; anything else a different one.
    #[test]
    fn stable_event_ids_are_stable_and_distinct() {
        let a = stable_event_id("run1", 7);
        assert_eq!(a, stable_event_id("run1", 7));
        assert_ne!(a, stable_event_id("run1", 8));
        assert_ne!(a, stable_event_id("run2", 7));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 8);
    }
}
