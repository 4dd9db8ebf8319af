//! Concurrent single publishes on one shared producer (the gateway's case: many tasks, each
//! awaiting one publish, on one connection): each event keeps its own result.

use std::collections::HashSet;
use std::sync::Arc;

use mt5_bus::{Error, Event, EventProducer, PublishOptions};
use mt5_fixtures::RedisFixture;
use tokio::sync::Barrier;

use crate::support::{configs, conn, producer, read_all, Names};

/// Runs `tasks` tasks that start together and each publish one event on a clone of `p` with
/// `opts(i)`; the results in task order.
async fn publish_together(
    p: &EventProducer,
    stream: &str,
    tasks: usize,
    event: impl Fn(usize) -> Event,
    opts: impl Fn(usize) -> PublishOptions,
) -> Vec<mt5_bus::Result<mt5_bus::Published>> {
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let (p, stream, e, o, b) = (p.clone(), stream.to_string(), event(i), opts(i), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                p.publish_with(&stream, &e, &o).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// 64 tasks publishing one event each at the same moment (their commands pipelined on the one
/// connection): every event is written exactly once, and each task gets its own entry id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_single_publishes_are_each_written_once_with_their_own_entry_id() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut c = conn(&fx).await;
    let results = publish_together(
        &p,
        &n.input,
        64,
        |i| Event::new("t", "test.v1", serde_json::json!({ "seq": i })),
        |_| PublishOptions::default(),
    )
    .await;
    let ids: Vec<String> = results.into_iter().map(|r| r.unwrap().entry_id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        64,
        "distinct entry ids: {ids:?}"
    );
    let written = read_all(&mut c, &n.input).await;
    assert_eq!(written.len(), 64);
    for (i, id) in ids.iter().enumerate() {
        let (_, fields) = written
            .iter()
            .find(|(e, _)| e == id)
            .expect("the returned id is in the stream");
        assert_eq!(
            fields["data"],
            format!("{{\"seq\":{i}}}"),
            "entry {id} holds task {i}'s event"
        );
    }
}

/// An event too large is refused alone; the events published beside it are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_large_event_among_concurrent_publishes_is_refused_alone() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.max_entry_bytes = 1024;
    let p = producer(&redis, &bus).await;
    let results = publish_together(
        &p,
        &n.input,
        16,
        |i| {
            let pad = if i == 7 { 2000 } else { 10 };
            Event::new("t", "test.v1", serde_json::json!("x".repeat(pad)))
        },
        |_| PublishOptions::default(),
    )
    .await;
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (7, Err(Error::EntryTooLarge { max: 1024, .. })) => {}
            (7, other) => panic!("the large event: {other:?}"),
            (_, r) => assert!(r.is_ok(), "event {i}: {r:?}"),
        }
    }
    let mut c = conn(&fx).await;
    assert_eq!(read_all(&mut c, &n.input).await.len(), 15);
}

/// Keyed publishes racing each other keep exactly-once: of 8 concurrent publishes under one
/// idempotency key one is written and the other 7 are duplicates with its entry id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_under_one_idempotency_key_write_one_entry() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let results = publish_together(
        &p,
        &n.input,
        8,
        |i| Event::new("t", "test.v1", serde_json::json!(i)),
        |_| PublishOptions::idempotent("same-key"),
    )
    .await;
    let published: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(published.iter().filter(|p| !p.duplicate).count(), 1, "{published:?}");
    let ids: HashSet<_> = published.iter().map(|p| p.entry_id.clone()).collect();
    assert_eq!(ids.len(), 1, "every caller gets the one entry id: {published:?}");
    let mut c = conn(&fx).await;
    assert_eq!(read_all(&mut c, &n.input).await.len(), 1);
}

/// The backlog limit refuses each event past it with its own backpressure error, and the
/// events that fit are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_past_the_backlog_limit_are_refused_one_by_one() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 5;
    bus.trim.backlog_limit = 10;
    let p = producer(&redis, &bus).await;
    for i in 0..6 {
        p.publish(&n.input, &Event::new("t", "test.v1", serde_json::json!(i)))
            .await
            .unwrap();
    }
    let results = publish_together(
        &p,
        &n.input,
        12,
        |i| Event::new("t", "test.v1", serde_json::json!(i)),
        |_| PublishOptions::default(),
    )
    .await;
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Backpressure { limit: 10, .. })))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + refused, 12, "{results:?}");
    let mut c = conn(&fx).await;
    let len = read_all(&mut c, &n.input).await.len();
    assert_eq!(len, 6 + ok, "the stream holds what was acknowledged");
    // The plain path may overshoot by the publishes in flight, never refuse below the limit.
    assert!(ok >= 4, "at least the 4 that fit were written: {results:?}");
}

/// A caller that stops waiting (its future dropped) does not stop the others: their events
/// are written and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_publish_does_not_hold_up_the_others() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let dropped = {
        let (p, s) = (p.clone(), n.input.clone());
        tokio::spawn(async move {
            p.publish(&s, &Event::new("t", "test.v1", serde_json::json!("gone")))
                .await
        })
    };
    dropped.abort();
    let results = publish_together(
        &p,
        &n.input,
        8,
        |i| Event::new("t", "test.v1", serde_json::json!(i)),
        |_| PublishOptions::default(),
    )
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}
