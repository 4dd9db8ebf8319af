//! Leaving: a shutdown that comes inside a long batch writes what was finished and leaves the
//! rest to the others; a write refused at shutdown is retried, a group deleted then ends it;
//! a consumer dropped while running stops beating.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mt5_bus::{BusMetrics, Consumer, ConsumerOptions};
use mt5_fixtures::RedisFixture;
use tokio_util::sync::CancellationToken;

use crate::support::{
    assert_zero_loss, configs, conn, consumer, output_seqs, pending, pending_entries, producer, read_all, scripted,
    seq_of, wait_until, Names, Scripted,
};

async fn heartbeat_exists(c: &mut redis::aio::MultiplexedConnection, n: &Names, name: &str) -> bool {
    let exists: i64 = redis::cmd("EXISTS")
        .arg(mt5_bus::heartbeat_key(&n.input, &n.group, name))
        .query_async(c)
        .await
        .unwrap();
    exists == 1
}

/// Defect 4: cancelled inside a batch that cannot be finished within `shutdown_timeout_ms`,
/// a consumer writes the decisions of the handlers that finished (outputs present, entries
/// acknowledged), leaves the unfinished entries pending, deletes its heartbeat and returns Ok
/// within the shutdown timeout; another consumer then takes the rest at once. The old code
/// dropped the whole batch's decisions at the deadline.
#[tokio::test]
async fn shutdown_inside_a_long_batch_writes_what_finished_and_leaves_the_rest_pending() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.count = 10;
    bus.consumer.concurrency = 1;
    bus.consumer.shutdown_timeout_ms = 2000;
    let p = producer(&redis, &bus).await;
    for i in 0..10 {
        p.publish(&n.input, &scripted(i, &["sleep:300"])).await.unwrap();
    }
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let leaving = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("leaving"),
        handler,
        BusMetrics::default(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(leaving.run(cancel.clone()));
    wait_until(Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) >= 2 }
    })
    .await
    .expect("the consumer starts handling its batch");
    let mut c = conn(&fx).await;
    assert_eq!(
        pending(&mut c, &n.input, &n.group).await,
        10,
        "it holds the whole batch when cancelled (10 × 300 ms > the 2 s shutdown timeout)"
    );
    let cancelled = Instant::now();
    cancel.cancel();
    let bound = Duration::from_millis(bus.consumer.shutdown_timeout_ms) + Duration::from_millis(1500);
    tokio::time::timeout(bound, task)
        .await
        .expect("run returns within the shutdown timeout")
        .unwrap()
        .unwrap();
    let took = cancelled.elapsed();

    let written = output_seqs(&mut c, &n.output).await;
    let written_set: BTreeSet<u64> = written.iter().copied().collect();
    assert_eq!(written.len(), written_set.len(), "duplicated outputs: {written:?}");
    assert!(
        !written.is_empty(),
        "the handlers that finished before the deadline must have their outputs written (took {took:?})"
    );
    assert!(written.len() < 10, "the batch cannot finish in time: {written:?}");
    let rows = pending_entries(&mut c, &n.input, &n.group).await;
    assert_eq!(rows.len() + written.len(), 10, "finished entries are acknowledged");
    assert!(rows.iter().all(|(_, owner, _)| owner == "leaving"), "{rows:?}");
    let entries = read_all(&mut c, &n.input).await;
    let left: BTreeSet<u64> = rows
        .iter()
        .map(|(id, _, _)| {
            let (_, f) = entries
                .iter()
                .find(|(e, _)| e == id)
                .expect("pending entry in the stream");
            seq_of(f).unwrap()
        })
        .collect();
    assert!(
        written_set.is_disjoint(&left),
        "an entry both written and pending: {written_set:?} {left:?}"
    );
    assert!(
        !heartbeat_exists(&mut c, &n, "leaving").await,
        "the heartbeat is deleted"
    );

    // The rest is for the others: without a heartbeat it is claimed at once.
    let mut rescuer = consumer(&redis, &bus, &n, Some("rescuer"));
    rescuer.heartbeat().await.unwrap(); // connects: a connect restarts the grace skipped next
    rescuer.reclaimer_mut().skip_connect_grace();
    let reclaimed = rescuer.reclaim_tick().await.unwrap();
    assert_eq!(reclaimed.from_dead, left.len(), "{reclaimed:?}");
    for _ in 0..left.len() + 2 {
        rescuer.step(Some(Duration::from_millis(10))).await.unwrap();
    }
    assert_zero_loss(&mut c, &n, 10).await;
}

/// A consumer whose `run` future is dropped (its task aborted) stops refreshing its
/// heartbeat: the key expires within its TTL, so the others may take its entries. The old code
/// beat from a detached task that outlived the consumer.
#[tokio::test]
async fn dropping_a_running_consumer_stops_its_heartbeat() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.heartbeat_ttl_ms = 500;
    bus.consumer.heartbeat_interval_ms = 100;
    let c0 = consumer(&redis, &bus, &n, Some("dropped"));
    let task = tokio::spawn(c0.run(CancellationToken::new()));
    let mut c = conn(&fx).await;
    wait_until(Duration::from_secs(10), || {
        let mut c = c.clone();
        let n = n.clone();
        async move { heartbeat_exists(&mut c, &n, "dropped").await }
    })
    .await
    .expect("the consumer connects and writes its heartbeat");
    // Let it beat a few times: the key outlives one TTL only when refreshed.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        heartbeat_exists(&mut c, &n, "dropped").await,
        "a running consumer refreshes its heartbeat"
    );

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let gone = wait_until(Duration::from_millis(4 * bus.consumer.heartbeat_ttl_ms), || {
        let mut c = c.clone();
        let n = n.clone();
        async move { !heartbeat_exists(&mut c, &n, "dropped").await }
    })
    .await;
    assert!(
        gone.is_some(),
        "the heartbeat key is still refreshed after its consumer was dropped"
    );
}

async fn config_set(c: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(c)
        .await
        .unwrap();
}

/// Runs a consumer on one event, makes Redis refuse writes (`maxmemory`) while the handler
/// works, so its decision is made but the settle is refused with `OOM`, then cancels it: the
/// decision is still unwritten when the shutdown begins. Leaves Redis refusing writes.
async fn cancelled_with_the_settle_refused(
    fx: &RedisFixture,
    n: &Names,
) -> tokio::task::JoinHandle<mt5_bus::Result<()>> {
    let (redis, mut bus) = configs(fx, n);
    // Far beyond the test's waits: the shutdown must end because the write succeeded or the
    // group is gone, never because the deadline passed.
    bus.consumer.shutdown_timeout_ms = 30_000;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["sleep:1000"])).await.unwrap();
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let opts = ConsumerOptions::new(&n.input, &n.group).with_name("leaving");
    let leaving = Consumer::new(&redis, &bus, opts, handler, BusMetrics::default()).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(leaving.run(cancel.clone()));
    wait_until(Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) >= 1 }
    })
    .await
    .expect("the consumer starts handling the event");
    let mut c = conn(fx).await;
    config_set(&mut c, "maxmemory-policy", "noeviction").await;
    config_set(&mut c, "maxmemory", "1").await;
    // The handler finishes (1 s; time enough to set maxmemory first) and its settle is refused, and retried, meanwhile.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        output_seqs(&mut c, &n.output).await.is_empty(),
        "the settle was refused"
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 1);
    cancel.cancel();
    // The shutdown's write is refused too, and retried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "a refused write at shutdown is retried, not given up"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    task
}

/// A decision whose write Redis refuses at shutdown (`OOM`, transient) is retried until Redis
/// accepts writes again: `run` then returns `Ok`, the output is written once and nothing is left
/// pending. A refused write must not be taken for a missing group.
#[tokio::test]
async fn a_write_refused_at_shutdown_is_retried_until_redis_accepts_it() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let task = cancelled_with_the_settle_refused(&fx, &n).await;
    let mut c = conn(&fx).await;
    config_set(&mut c, "maxmemory", "0").await;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns once the write went through")
        .unwrap()
        .expect("a transient refusal is no error once the decision is written");
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0]);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// A group deleted while the shutdown writes its last decisions stops the consumer at once with
/// `GroupMissing`, instead of retrying until the shutdown deadline.
#[tokio::test]
async fn a_group_deleted_during_the_shutdown_write_ends_it_with_group_missing() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let task = cancelled_with_the_settle_refused(&fx, &n).await;
    let mut c = conn(&fx).await;
    let destroyed: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&n.input)
        .arg(&n.group)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(destroyed, 1);
    config_set(&mut c, "maxmemory", "0").await;
    let err = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run stops at once when the group is gone")
        .unwrap()
        .unwrap_err();
    assert!(err.is_group_missing(), "expected GroupMissing, got {err}");
    assert!(
        output_seqs(&mut c, &n.output).await.is_empty(),
        "nothing written for a deleted group"
    );
}

/// `close` on a consumer whose connections were cut (here `CLIENT KILL`) connects once more and
/// still deletes its heartbeat and leaves the group, so the others may take what it left at
/// once instead of waiting a TTL.
#[tokio::test]
async fn close_after_a_cut_connection_reconnects_and_deletes_the_heartbeat() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let _p = producer(&redis, &bus).await;
    let mut closing = consumer(&redis, &bus, &n, Some("closing"));
    closing.step(Some(Duration::from_millis(10))).await.unwrap();
    closing.heartbeat().await.unwrap();
    let mut c = conn(&fx).await;
    let hb = mt5_bus::heartbeat_key(&n.input, &n.group, "closing");
    let exists: i64 = redis::cmd("EXISTS").arg(&hb).query_async(&mut c).await.unwrap();
    assert_eq!(exists, 1);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(killed >= 1, "the consumer's connections were cut");

    closing
        .close()
        .await
        .expect("close reconnects once after a cut connection");
    let exists: i64 = redis::cmd("EXISTS").arg(&hb).query_async(&mut c).await.unwrap();
    assert_eq!(exists, 0, "the heartbeat is deleted");
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&n.input)
        .arg(&n.group)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(consumers.is_empty(), "it left the group: {consumers:?}");
}
