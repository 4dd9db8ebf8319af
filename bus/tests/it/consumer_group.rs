//! Consumer groups: round trip, batch ack, retries, malformed and unsupported entries,
//! NotOwner, graceful shutdown.

use std::time::Duration;

use mt5_bus::{BusMetrics, Consumer, ConsumerOptions, Event};
use mt5_fixtures::RedisFixture;
use redis::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{
    configs, conn, consumer, output_seqs, pending, producer, read_all, scripted, wait_until, Names, Scripted,
};

/// Published events are handled by the group and their outputs written once, in order.
#[tokio::test]
async fn publish_consume_round_trip() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..20 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let mut consumer = consumer(&redis, &bus, &n, None);
    let mut total = 0;
    for _ in 0..5 {
        total += consumer.step(Some(Duration::from_millis(10))).await.unwrap().emitted;
    }
    assert_eq!(total, 20);
    let mut c = conn(&fx).await;
    assert_eq!(output_seqs(&mut c, &n.output).await, (0..20).collect::<Vec<_>>());
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    let out = read_all(&mut c, &n.output).await;
    assert_eq!(out[0].1["type"], "test.out.v1");
    assert_eq!(out[0].1["specversion"], "1.0");
}

/// A fetch with a block waits for new entries: on an empty stream it comes back empty only after
/// its block, and an entry published while it waits is what that same fetch returns.
#[tokio::test]
async fn a_fetch_waits_up_to_its_block_for_new_entries() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut consumer = consumer(&redis, &bus, &n, None);

    let started = std::time::Instant::now();
    let batch = consumer.fetch(Some(Duration::from_millis(400))).await.unwrap();
    assert!(batch.is_empty(), "{batch:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "an empty fetch came back before its block: {:?}",
        started.elapsed()
    );

    let publish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.publish(&n.input, &scripted(0, &["ack"])).await.unwrap()
    };
    let started = std::time::Instant::now();
    let (batch, published) = tokio::join!(consumer.fetch(Some(Duration::from_secs(20))), publish);
    let ids: Vec<String> = batch.unwrap().into_iter().map(|r| r.entry.id).collect();
    assert_eq!(ids, [published.entry_id]);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

/// Plain acks of a whole batch go out as one XACK: the PEL is empty after one step.
#[tokio::test]
async fn a_batch_of_plain_acks_is_acknowledged() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..50 {
        p.publish(&n.input, &scripted(i, &["ack"])).await.unwrap();
    }
    let mut consumer = consumer(&redis, &bus, &n, None);
    let mut c = conn(&fx).await;
    let batch = consumer.fetch(Some(Duration::from_millis(10))).await.unwrap();
    let first = batch.len();
    assert_eq!(pending(&mut c, &n.input, &n.group).await, first as u64);
    let report = consumer.process(batch).await.unwrap();
    assert_eq!(report.acked, first);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    let mut rest = 0;
    for _ in 0..3 {
        rest += consumer.step(Some(Duration::from_millis(10))).await.unwrap().acked;
    }
    assert_eq!(first + rest, 50);
    assert!(read_all(&mut c, &n.output).await.is_empty());
}

/// A transiently failing entry is retried from the own PEL and dead-lettered with reason
/// `max_deliveries` after 3 deliveries, with its fields and delivery count.
#[tokio::test]
async fn transient_failure_is_retried_then_dead_lettered_after_three_deliveries() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let bad = scripted(1, &["retry"]);
    p.publish(&n.input, &bad).await.unwrap();
    p.publish(&n.input, &scripted(2, &["retry", "emit"])).await.unwrap();
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let mut consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group),
        handler,
        BusMetrics::default(),
    )
    .unwrap();
    for _ in 0..20 {
        consumer.step(Some(Duration::from_millis(5))).await.unwrap();
        if consumer.is_idle() && calls.load(std::sync::atomic::Ordering::SeqCst) >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut c = conn(&fx).await;
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![2]);
    let dlq = read_all(&mut c, &n.dlq).await;
    assert_eq!(dlq.len(), 1);
    let f = &dlq[0].1;
    assert_eq!(f["dlq_reason"], "max_deliveries");
    assert_eq!(f["dlq_deliveries"], "3");
    assert_eq!(f["id"], bad.id, "the event id is kept");
    assert_eq!(f["dlq_stream"], n.input);
    assert_eq!(f["dlq_group"], n.group);
    assert_eq!(f["dlq_consumer"], consumer.name());
    assert!(f.contains_key("dlq_entry_id") && f.contains_key("dlq_time") && f.contains_key("dlq_error"));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "3 calls for the bad one, 2 for the other"
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// A malformed entry goes to the dead letter stream at once (no retries) with its raw fields,
/// and the good entries behind it flow; an unsupported type is dead-lettered as `unsupported`.
#[tokio::test]
async fn malformed_entry_is_dead_lettered_at_once_while_good_entries_flow() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut c = conn(&fx).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&n.input)
        .arg("*")
        .arg("id")
        .arg("m-1")
        .arg("type")
        .arg("test.v1")
        .arg("data")
        .arg("{not json")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&n.input)
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    p.publish(&n.input, &Event::new("t", "other.v1", serde_json::json!({"seq": 99})))
        .await
        .unwrap();
    for i in 1..5 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let mut consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group),
        handler,
        BusMetrics::default(),
    )
    .unwrap();
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.emitted, 5);
    assert_eq!(report.dead_lettered.get("malformed"), Some(&2));
    assert_eq!(report.dead_lettered.get("unsupported"), Some(&1));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        5,
        "the handler never sees bad entries"
    );
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0, 1, 2, 3, 4]);
    let dlq = read_all(&mut c, &n.dlq).await;
    assert_eq!(dlq[0].1["data"], "{not json", "raw fields are kept");
    assert_eq!(dlq[0].1["dlq_deliveries"], "1");
    assert!(dlq[0].1["dlq_error"].contains("not valid JSON"));
    assert_eq!(dlq[1].1["junk"], "1");
    assert_eq!(dlq[2].1["dlq_reason"], "unsupported");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// An entry claimed away by another consumer between read and emit: the emit writes nothing
/// and reports NotOwner; the new owner's emit is the only effect.
#[tokio::test]
async fn emit_after_the_entry_was_claimed_away_writes_nothing() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(7, &["emit"])).await.unwrap();
    let mk = |name: &str| consumer(&redis, &bus, &n, Some(name));
    let mut a = mk("a");
    let mut b = mk("b");
    let batch = a.fetch(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(batch.len(), 1);
    let mut c = conn(&fx).await;
    let _: Value = redis::cmd("XCLAIM")
        .arg(&n.input)
        .arg(&n.group)
        .arg("b")
        .arg(0)
        .arg(&batch[0].entry.id)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .unwrap();
    let report = a.process(batch).await.unwrap();
    assert_eq!(report.not_owner, 1);
    assert_eq!(report.emitted, 0);
    assert!(
        read_all(&mut c, &n.output).await.is_empty(),
        "NotOwner must write nothing"
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 1, "still pending on b");
    // b re-reads its PEL on start and emits exactly once.
    let report = b.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.emitted, 1);
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![7]);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// On cancellation a consumer finishes the batch it holds, acknowledges it, deletes its
/// heartbeat and returns within the bound: nothing it held is left unacknowledged.
#[tokio::test]
async fn graceful_shutdown_leaves_nothing_unacknowledged_that_it_held() {
    graceful_shutdown_with_batches_of(10).await;
}

/// The same with batches of 5: cancelled during the first batch, the consumer has already read
/// the second beside the first one's settle (`settle_and_read`), and handles it too before it
/// returns (it used to leave those 5 pending until a reclaim).
#[tokio::test]
async fn graceful_shutdown_handles_the_batch_read_beside_the_last_settle() {
    graceful_shutdown_with_batches_of(5).await;
}

/// 10 events of 100 ms each, read `count` at a time; cancelled once two handlers ran.
async fn graceful_shutdown_with_batches_of(count: usize) {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.count = count;
    let p = producer(&redis, &bus).await;
    for i in 0..10 {
        p.publish(&n.input, &scripted(i, &["sleep:100"])).await.unwrap();
    }
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("graceful"),
        handler,
        BusMetrics::default(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer.run(cancel.clone()));
    assert!(
        wait_until(Duration::from_secs(10), || {
            let calls = calls.clone();
            async move { calls.load(std::sync::atomic::Ordering::SeqCst) >= 2 }
        })
        .await
        .is_some(),
        "the consumer must start handling"
    );
    let mut c = conn(&fx).await;
    assert!(
        pending(&mut c, &n.input, &n.group).await > 0,
        "it holds a batch when cancelled"
    );
    let started = std::time::Instant::now();
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(bus.consumer.shutdown_timeout_ms),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        pending(&mut c, &n.input, &n.group).await,
        0,
        "everything it held is acknowledged"
    );
    assert_eq!(output_seqs(&mut c, &n.output).await, (0..10).collect::<Vec<_>>());
    let hb: i64 = redis::cmd("EXISTS")
        .arg(mt5_bus::heartbeat_key(&n.input, &n.group, "graceful"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(hb, 0, "the heartbeat is deleted on graceful exit");
}

/// A handler call past the timeout counts as a transient failure and, at the last delivery,
/// is dead-lettered with `max_deliveries`.
#[tokio::test]
async fn handler_timeouts_count_as_transient_failures() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.handler_timeout_ms = 50;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(1, &["timeout", "emit"])).await.unwrap();
    p.publish(&n.input, &scripted(2, &["timeout"])).await.unwrap();
    let mut consumer = consumer(&redis, &bus, &n, None);
    for _ in 0..20 {
        consumer.step(Some(Duration::from_millis(5))).await.unwrap();
        consumer.expire_retries();
        if consumer.is_idle() {
            let mut c = conn(&fx).await;
            if pending(&mut c, &n.input, &n.group).await == 0 {
                break;
            }
        }
    }
    let mut c = conn(&fx).await;
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![1]);
    let dlq = read_all(&mut c, &n.dlq).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].1["dlq_reason"], "max_deliveries");
    assert!(dlq[0].1["dlq_error"].contains("timed out"), "{}", dlq[0].1["dlq_error"]);
}

/// `is_idle` says whether everything read has been handled and written: false while a retry
/// is scheduled (the entry stays pending on this consumer), true once it was re-read and
/// written. Drains and tests stop on it, so a consumer that claims to be idle with work left
/// would end them early.
#[tokio::test]
async fn a_consumer_with_a_retry_scheduled_is_not_idle_until_the_retry_is_written() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(7, &["retry", "emit"])).await.unwrap();
    let mut consumer = consumer(&redis, &bus, &n, None);
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!((report.read, report.retried, report.emitted), (1, 1, 0), "{report:?}");
    assert!(!consumer.is_idle(), "a scheduled retry is work left");
    let mut c = conn(&fx).await;
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 1);
    consumer.expire_retries();
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.emitted, 1, "{report:?}");
    assert!(consumer.is_idle());
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![7]);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// `mt5_event_e2e_latency_seconds` observes, per written entry, the time from its publish (the
/// entry id's milliseconds) to its settle, in seconds: an entry handled about 1.1 s after it was
/// published adds about 1.1 to the sum, not milliseconds or a remainder.
#[tokio::test]
async fn the_e2e_latency_is_observed_in_seconds_since_publish() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let published = std::time::Instant::now();
    let metrics = BusMetrics::default();
    let opts = ConsumerOptions::new(&n.input, &n.group).with_name("late");
    let mut consumer = Consumer::new(&redis, &bus, opts, Scripted::new(&n.output), metrics.clone()).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    let elapsed = published.elapsed().as_secs_f64();
    assert_eq!(report.emitted, 1, "{report:?}");
    let h = metrics.e2e_latency.with_label_values(&[n.input.as_str()]);
    assert_eq!(h.get_sample_count(), 1);
    let sum = h.get_sample_sum();
    // The id's clock is Redis's (same host), in whole milliseconds: allow a little either side.
    assert!(
        (1.0..=elapsed + 0.5).contains(&sum),
        "latency {sum} s for an entry handled {elapsed:.3} s after its publish"
    );
}
