//! The batch settle: an error reply writes nothing and keeps the decisions for the next step;
//! ownership is checked for every entry, plain acks included; an entry trimmed while held is
//! counted as trimmed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mt5_bus::metrics::outcome;
use mt5_bus::{BusMetrics, Consumer, ConsumerOptions};
use mt5_fixtures::RedisFixture;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::support::{
    configs, conn, counted_consumer, output_seqs, pending, pending_entries, producer, read_all, scripted, wait_until,
    Names, Scripted,
};

async fn config_set(c: &mut MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(c)
        .await
        .unwrap();
}

async fn key_type(c: &mut MultiplexedConnection, key: &str) -> String {
    redis::cmd("TYPE").arg(key).query_async(c).await.unwrap()
}

/// Defect 1: a batch whose settle fails with an error reply (Redis at `maxmemory`, `OOM`)
/// writes nothing, and its decisions are written by the next step once Redis accepts writes
/// again: every output once, the PEL empty, each handler called once. The old code left the
/// batch pending for the idle reclaim.
#[tokio::test]
async fn a_settle_refused_with_oom_writes_nothing_and_the_next_step_writes_the_kept_decisions() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..5 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let (mut consumer, calls) = counted_consumer(&redis, &bus, &n, "oom");
    let batch = consumer.fetch(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(batch.len(), 5);

    let mut c = conn(&fx).await;
    config_set(&mut c, "maxmemory-policy", "noeviction").await;
    config_set(&mut c, "maxmemory", "1").await;
    let probe: redis::RedisResult<String> = redis::cmd("XADD")
        .arg(format!("{}:probe", n.input))
        .arg("*")
        .arg("a")
        .arg("1")
        .query_async(&mut c)
        .await;
    let probe = probe.expect_err("the fault must land: Redis refuses XADD at maxmemory");
    assert_eq!(probe.code(), Some("OOM"), "{probe}");

    let err = consumer.process(batch).await.expect_err("the settle is refused");
    assert!(err.has_code("OOM"), "an OOM error, got {err}");
    assert!(err.is_transient(), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(output_seqs(&mut c, &n.output).await.is_empty(), "nothing was written");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 5, "nothing was acknowledged");
    assert!(read_all(&mut c, &n.dlq).await.is_empty(), "nothing was dead-lettered");

    config_set(&mut c, "maxmemory", "0").await;
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(
        report.emitted, 5,
        "the kept decisions are written and counted: {report:?}"
    );
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0, 1, 2, 3, 4]);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "no handler ran again because a write failed"
    );
    assert!(consumer.is_idle());
}

/// A batch whose dead letter stream key holds a string: the settle fails with `WRONGTYPE`
/// before its first write, so nothing at all is written or acknowledged (not the outputs of
/// the other entries, not their plain acks); once the key is fixed the next step settles the
/// whole batch once.
#[tokio::test]
async fn a_wrongtype_output_key_fails_the_whole_settle_before_any_write() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut c = conn(&fx).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    p.publish(&n.input, &scripted(1, &["ack"])).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&n.input)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    p.publish(&n.input, &scripted(2, &["emit"])).await.unwrap();
    let (mut consumer, calls) = counted_consumer(&redis, &bus, &n, "wrongtype");
    let batch = consumer.fetch(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(batch.len(), 4);
    let _: () = redis::cmd("SET")
        .arg(&n.dlq)
        .arg("not a stream")
        .query_async(&mut c)
        .await
        .unwrap();

    let err = consumer.process(batch).await.expect_err("the settle must fail");
    assert!(err.has_code("WRONGTYPE"), "a WRONGTYPE error, got {err}");
    assert!(
        output_seqs(&mut c, &n.output).await.is_empty(),
        "no output of the batch may be written when one of its keys has the wrong type"
    );
    assert_eq!(
        pending(&mut c, &n.input, &n.group).await,
        4,
        "nothing was acknowledged, plain acks included"
    );
    assert_eq!(key_type(&mut c, &n.dlq).await, "string");

    // Still refused while the key is wrong, still without a write.
    assert!(consumer.step(Some(Duration::from_millis(10))).await.is_err());
    assert!(output_seqs(&mut c, &n.output).await.is_empty());
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 4);

    let _: i64 = redis::cmd("DEL").arg(&n.dlq).query_async(&mut c).await.unwrap();
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.emitted, 2, "{report:?}");
    assert_eq!(report.acked, 1, "{report:?}");
    assert_eq!(report.dead_lettered.get("malformed"), Some(&1), "{report:?}");
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0, 2]);
    let dlq = read_all(&mut c, &n.dlq).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].1["junk"], "1");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the handler ran once per well-formed entry"
    );
}

/// A plain ack (nothing to write) of an entry claimed away by another consumer's idle reclaim
/// is refused like an emit: reported `NotOwner`, the entry stays pending on its new owner,
/// which then handles it. The old code XACKed it on behalf of the new owner.
#[tokio::test]
async fn a_plain_ack_of_an_entry_claimed_away_is_not_owner() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.reclaim.min_idle_ms = 0;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(3, &["ack"])).await.unwrap();
    let a_handler = Scripted::new(&n.output);
    let a_calls = a_handler.calls.clone();
    let mut a = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("a"),
        a_handler,
        BusMetrics::default(),
    )
    .unwrap();
    let b_handler = Scripted::new(&n.output);
    let b_calls = b_handler.calls.clone();
    let mut b = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("b"),
        b_handler,
        BusMetrics::default(),
    )
    .unwrap();
    let held = a.fetch(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(held.len(), 1);
    let id = held[0].entry.id.clone();
    b.heartbeat().await.unwrap(); // connects: a connect restarts the grace skipped next
    b.reclaimer_mut().skip_connect_grace();
    let claimed = b.reclaim_tick().await.unwrap();
    assert_eq!(claimed.claimed, vec![id.clone()], "{claimed:?}");
    assert_eq!(claimed.idle, 1);
    assert_eq!(claimed.from_dead, 0, "a is alive");

    let report = a.process(held).await.unwrap();
    assert_eq!(report.not_owner, 1, "{report:?}");
    assert_eq!(report.acked, 0, "{report:?}");
    assert_eq!(a_calls.load(Ordering::SeqCst), 1);
    let mut c = conn(&fx).await;
    let rows = pending_entries(&mut c, &n.input, &n.group).await;
    assert_eq!(rows.len(), 1, "not acknowledged on b's behalf");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), (id.as_str(), "b"));

    let report = b.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.acked, 1, "{report:?}");
    assert_eq!(report.not_owner, 0);
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert!(read_all(&mut c, &n.output).await.is_empty());
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
}

/// An entry deleted from the stream (trimmed) while its handler runs: the heartbeat's touch
/// finds it gone (XCLAIM drops it from the PEL), nothing is written for it, and it is counted
/// as trimmed (`mt5_stream_trimmed_unacked_total`), not as NotOwner.
#[tokio::test]
async fn a_held_entry_trimmed_while_its_handler_runs_is_counted_as_trimmed_not_not_owner() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.heartbeat_interval_ms = 100;
    let p = producer(&redis, &bus).await;
    let entry_id = p
        .publish(&n.input, &scripted(0, &["sleep:800"]))
        .await
        .unwrap()
        .entry_id;
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let metrics = BusMetrics::default();
    let consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("holder"),
        handler,
        metrics.clone(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer.run(cancel.clone()));
    wait_until(Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) == 1 }
    })
    .await
    .expect("the handler starts");
    let mut c = conn(&fx).await;
    let deleted: i64 = redis::cmd("XDEL")
        .arg(&n.input)
        .arg(&entry_id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the fault must land: the held entry is deleted");

    let labels = [n.input.as_str(), n.group.as_str()];
    let not_owner = || {
        metrics
            .processed
            .with_label_values(&[labels[0], labels[1], outcome::NOT_OWNER])
            .get()
    };
    let trimmed = || metrics.trimmed_unacked.with_label_values(&labels).get();
    wait_until(Duration::from_secs(10), || {
        let settled = trimmed() + not_owner() > 0;
        async move { settled }
    })
    .await
    .expect("the entry's decision is settled");
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(trimmed(), 1, "counted as trimmed while pending");
    assert_eq!(not_owner(), 0, "a trimmed entry was not claimed by anyone");
    assert!(read_all(&mut c, &n.output).await.is_empty(), "nothing written for it");
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An entry deleted from the stream while it waits for its retry: the re-read finds no fields,
/// so no handler runs; the settle acknowledges it and it is counted as trimmed, once, in the
/// batch report and in `mt5_stream_trimmed_unacked_total`; nothing is written for it.
#[tokio::test]
async fn an_entry_deleted_while_its_retry_waits_is_acknowledged_and_counted_as_trimmed() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let entry_id = p
        .publish(&n.input, &scripted(0, &["retry", "emit"]))
        .await
        .unwrap()
        .entry_id;
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let metrics = BusMetrics::default();
    let mut consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("retrying"),
        handler,
        metrics.clone(),
    )
    .unwrap();
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.retried, 1, "{report:?}");
    let mut c = conn(&fx).await;
    let deleted: i64 = redis::cmd("XDEL")
        .arg(&n.input)
        .arg(&entry_id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    consumer.expire_retries();
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.trimmed, 1, "{report:?}");
    assert_eq!(
        (report.acked, report.emitted, report.not_owner),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        metrics
            .trimmed_unacked
            .with_label_values(&[n.input.as_str(), n.group.as_str()])
            .get(),
        1
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no handler runs for a deleted entry");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert!(read_all(&mut c, &n.output).await.is_empty());
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
    assert!(consumer.is_idle());
}
