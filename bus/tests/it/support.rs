//! Helpers shared by the bus integration tests: test configs, a scripted handler, readers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_bus::config::GroupSpec;
use mt5_bus::{
    BusConfig, BusMetrics, Consumer, ConsumerOptions, Delivery, Event, EventProducer, Handler, Outcome, RedisConfig,
};
use mt5_fixtures::RedisFixture;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

/// Names of one test's streams, under the fixture's random prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) dlq: String,
    pub(crate) group: String,
}

impl Names {
    pub(crate) fn new(fx: &RedisFixture) -> Self {
        let p = fx.prefix();
        Names {
            input: format!("{p}:in"),
            output: format!("{p}:out"),
            dlq: format!("{p}:dlq"),
            group: "g".into(),
        }
    }
}

/// Fast settings for tests: short blocks, heartbeats and backoffs.
pub(crate) fn configs(fx: &RedisFixture, n: &Names) -> (RedisConfig, BusConfig) {
    let redis = RedisConfig::default().with_url(fx.url());
    let mut bus = BusConfig::default();
    bus.deadletter_stream = n.dlq.clone();
    bus.groups = vec![GroupSpec {
        stream: n.input.clone(),
        group: n.group.clone(),
    }];
    bus.consumer.block_ms = 100;
    // The tests count in batches of 100 (the shipped default is 500).
    bus.consumer.count = 100;
    bus.consumer.heartbeat_ttl_ms = 1000;
    bus.consumer.heartbeat_interval_ms = 200;
    bus.consumer.handler_timeout_ms = 2000;
    bus.consumer.timeout_retry_ms = 50;
    bus.consumer.shutdown_timeout_ms = 5000;
    bus.reclaim.interval_ms = 200;
    bus.retry.initial_ms = 20;
    bus.retry.max_ms = 500;
    bus.retry.max_attempts = 5;
    (redis, bus)
}

pub(crate) async fn producer(redis: &RedisConfig, bus: &BusConfig) -> EventProducer {
    EventProducer::connect(redis, bus, BusMetrics::default(), CancellationToken::new())
        .await
        .expect("producer connects")
}

/// A consumer of the test's group running [`Scripted`] into the output stream; `None` for the
/// default `<host>-<pid>-<random>` name.
pub(crate) fn consumer(redis: &RedisConfig, bus: &BusConfig, n: &Names, name: Option<&str>) -> Consumer<Scripted> {
    let mut opts = ConsumerOptions::new(&n.input, &n.group);
    if let Some(name) = name {
        opts = opts.with_name(name);
    }
    Consumer::new(redis, bus, opts, Scripted::new(&n.output), BusMetrics::default()).expect("valid consumer settings")
}

/// As [`consumer`], named `name`, with the counter of its handler's calls.
pub(crate) fn counted_consumer(
    redis: &RedisConfig,
    bus: &BusConfig,
    n: &Names,
    name: &str,
) -> (Consumer<Scripted>, Arc<AtomicUsize>) {
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let opts = ConsumerOptions::new(&n.input, &n.group).with_name(name);
    let consumer = Consumer::new(redis, bus, opts, handler, BusMetrics::default()).expect("valid consumer settings");
    (consumer, calls)
}

/// An event whose handling is scripted by `plan`: the handler takes `plan[deliveries - 1]`
/// (the last step repeats). Steps: `ack`, `emit`, `retry`, `dead`, `timeout`, `sleep:<ms>`
/// (then emit).
pub(crate) fn scripted(seq: u64, plan: &[&str]) -> Event {
    Event::new("test", "test.v1", serde_json::json!({ "seq": seq, "plan": plan }))
}

/// The handler for [`scripted`] events: emits `{seq, raw_id}` to `output`.
#[derive(Debug, Clone)]
pub(crate) struct Scripted {
    pub(crate) output: String,
    pub(crate) calls: Arc<AtomicUsize>,
}

impl Scripted {
    pub(crate) fn new(output: &str) -> Self {
        Scripted {
            output: output.into(),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Handler for Scripted {
    fn handles(&self, event_type: &str) -> bool {
        event_type == "test.v1"
    }

    async fn handle(&self, d: &Delivery) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let plan: Vec<String> = d.event.data.to_value()["plan"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let step = plan
            .get(
                (d.deliveries as usize)
                    .saturating_sub(1)
                    .min(plan.len().saturating_sub(1)),
            )
            .cloned()
            .unwrap_or_else(|| "emit".into());
        let emit = || {
            let data = serde_json::json!({ "seq": d.event.data.to_value()["seq"], "raw_id": d.event.id, "raw_entry_id": d.entry_id });
            Outcome::emit(&self.output, Event::new("test", "test.out.v1", data))
        };
        match step.as_str() {
            "ack" => Outcome::Ack,
            "retry" => Outcome::Retry {
                after: Duration::from_millis(10),
            },
            "dead" => Outcome::dead_letter("scripted permanent failure"),
            "timeout" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Outcome::Ack
            }
            s if s.starts_with("sleep:") => {
                let ms: u64 = s[6..].parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                emit()
            }
            _ => emit(),
        }
    }
}

pub(crate) use mt5_fixtures::streams::{pending, read_all};

pub(crate) async fn conn(fx: &RedisFixture) -> MultiplexedConnection {
    fx.connection().await
}

/// The `seq` of every output event.
pub(crate) async fn output_seqs(conn: &mut MultiplexedConnection, stream: &str) -> Vec<u64> {
    read_all(conn, stream)
        .await
        .iter()
        .map(|(_, f)| {
            serde_json::from_str::<serde_json::Value>(&f["data"]).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Polls `check` until it holds or `timeout` passes; returns the time it took.
pub(crate) async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The `seq` of an entry written by [`scripted`] (or of a dead letter keeping its fields).
pub(crate) fn seq_of(fields: &HashMap<String, String>) -> Option<u64> {
    let data = serde_json::from_str::<serde_json::Value>(fields.get("data")?).ok()?;
    data["seq"].as_u64()
}

/// The entries pending in `group` on `stream` as (entry id, consumer, deliveries), oldest first.
pub(crate) async fn pending_entries(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<(String, String, u64)> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, consumer, _idle, deliveries)| (id, consumer, deliveries))
        .collect()
}

/// Asserts the zero-loss invariant for events numbered `0..count` when none of them may be
/// dead-lettered: see [`assert_zero_loss_allowing`].
pub(crate) async fn assert_zero_loss(conn: &mut MultiplexedConnection, n: &Names, count: u64) {
    assert_zero_loss_allowing(conn, n, count, &[]).await;
}

/// Asserts the zero-loss invariant for events numbered `0..count`: each is in the output stream
/// exactly once, or (only when its seq is in `may_dead_letter`, the events whose plan allows it)
/// in the dead letter stream exactly once; no other dead letter exists; the PEL is empty.
pub(crate) async fn assert_zero_loss_allowing(
    conn: &mut MultiplexedConnection,
    n: &Names,
    count: u64,
    may_dead_letter: &[u64],
) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for s in output_seqs(conn, &n.output).await {
        *seen.entry(s).or_default() += 1;
    }
    let mut unexpected = Vec::new();
    for (id, f) in read_all(conn, &n.dlq).await {
        match seq_of(&f) {
            Some(s) if may_dead_letter.contains(&s) => *seen.entry(s).or_default() += 1,
            s => unexpected.push((id, s, f.get("dlq_reason").cloned())),
        }
    }
    assert!(
        unexpected.is_empty(),
        "dead letters no plan allows (dead letter id, seq, reason): {unexpected:?}"
    );
    let lost: Vec<u64> = (0..count).filter(|s| !seen.contains_key(s)).collect();
    let dup: Vec<(u64, usize)> = seen.iter().filter(|(_, c)| **c > 1).map(|(s, c)| (*s, *c)).collect();
    assert!(
        lost.is_empty(),
        "lost {} events, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(dup.is_empty(), "duplicated effects: {dup:?}");
    assert_eq!(pending(conn, &n.input, &n.group).await, 0, "the PEL must drain");
}

/// Reads up to `count` new entries of `stream` as `consumer` of `group` (`XREADGROUP ... >`),
/// which then holds them pending as a consumer that stopped would; returns their ids.
pub(crate) async fn read_as<C: redis::aio::ConnectionLike + Send>(
    c: &mut C,
    stream: &str,
    group: &str,
    consumer: &str,
    count: u64,
) -> Vec<String> {
    let v: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(c)
        .await
        .unwrap();
    let reply: redis::streams::StreamReadReply = redis::from_redis_value(v).unwrap();
    reply.keys.into_iter().flat_map(|k| k.ids).map(|e| e.id).collect()
}

/// Gives `consumer` of `group` a heartbeat that lives `ttl_ms`: alive to every reclaim and to
/// the stats for that long.
pub(crate) async fn mark_alive<C: redis::aio::ConnectionLike + Send>(
    c: &mut C,
    stream: &str,
    group: &str,
    consumer: &str,
    ttl_ms: u64,
) {
    let _: () = redis::cmd("SET")
        .arg(mt5_bus::heartbeat_key(stream, group, consumer))
        .arg(1)
        .arg("PX")
        .arg(ttl_ms)
        .query_async(c)
        .await
        .unwrap();
}
