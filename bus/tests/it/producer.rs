//! Producer: group creation, idempotency, size limit, backpressure, batches.

use mt5_bus::{Error, Event, PublishOptions};
use mt5_fixtures::RedisFixture;
use redis::Value;

use crate::support::{configs, conn, producer, read_all, Names};

/// Connecting a producer creates the configured group at `0`, so entries published before any
/// consumer exists are still delivered to the group.
#[tokio::test]
async fn group_is_created_at_zero_before_the_first_publish() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    assert_eq!(
        p.config(),
        &bus,
        "the producer keeps the configuration it was built with"
    );
    let mut c = conn(&fx).await;
    let groups: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&n.input)
        .query_async(&mut c)
        .await
        .unwrap();
    let text = format!("{groups:?}");
    assert!(text.contains("\"g\"") || text.contains("g"), "{text}");
    p.publish(&n.input, &Event::new("t", "test.v1", serde_json::json!(1)))
        .await
        .unwrap();
    let lag: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&n.input)
        .query_async(&mut c)
        .await
        .unwrap();
    let parsed = mt5_bus::stats::stream_stats(&mut c, &n.input).await.unwrap();
    assert_eq!(parsed.groups.len(), 1, "{lag:?}");
    assert_eq!(parsed.groups[0].last_delivered_id, "0-0");
    assert_eq!(parsed.groups[0].lag, Some(1));
}

/// A second publish with the same idempotency key writes nothing and returns the first id.
#[tokio::test]
async fn idempotent_publish_returns_the_original_entry_id() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let e = Event::new("t", "test.v1", serde_json::json!({"a": 1}));
    let first = p
        .publish_with(&n.input, &e, &PublishOptions::idempotent("link-1:AAPL"))
        .await
        .unwrap();
    let again = p
        .publish_with(&n.input, &e, &PublishOptions::idempotent("link-1:AAPL"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(first.entry_id, again.entry_id);
    let other = p
        .publish_with(&n.input, &e, &PublishOptions::idempotent("link-2:AAPL"))
        .await
        .unwrap();
    assert_ne!(other.entry_id, first.entry_id);
    let mut c = conn(&fx).await;
    assert_eq!(read_all(&mut c, &n.input).await.len(), 2);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(mt5_bus::idempotency_key(&n.input, "link-1:AAPL"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 71 * 3600 * 1000, "the key must live about 72 h, got {ttl} ms");
}

/// An event larger than the maximum entry size is refused before it reaches Redis.
#[tokio::test]
async fn oversized_events_are_refused() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.max_entry_bytes = 1024;
    let p = producer(&redis, &bus).await;
    let e = Event::new("t", "test.v1", serde_json::json!("x".repeat(2000)));
    let err = p.publish(&n.input, &e).await.unwrap_err();
    assert!(matches!(err, Error::EntryTooLarge { max: 1024, .. }), "{err}");
    let mut c = conn(&fx).await;
    assert!(read_all(&mut c, &n.input).await.is_empty());
}

/// At the hard backlog limit publish fails with a clear backpressure error instead of letting
/// the stream grow or trimming unread entries.
#[tokio::test]
async fn the_backlog_limit_makes_publish_fail_loudly() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 5;
    bus.trim.backlog_limit = 10;
    let p = producer(&redis, &bus).await;
    for i in 0..10 {
        p.publish(&n.input, &Event::new("t", "test.v1", serde_json::json!(i)))
            .await
            .unwrap();
    }
    let err = p
        .publish(&n.input, &Event::new("t", "test.v1", serde_json::json!(10)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backpressure {
                length: 10,
                limit: 10,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("consumers are behind"), "{err}");
    // The dead letter stream has no backlog limit: losing a dead letter is never better.
    for i in 0..12 {
        p.publish(&n.dlq, &Event::new("t", "test.v1", serde_json::json!(i)))
            .await
            .unwrap();
    }
}

/// A batch goes out in one pipeline and returns ids in input order; keyed duplicates inside
/// the batch collapse to one entry.
#[tokio::test]
async fn batch_publish_returns_ids_in_order() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut batch: Vec<(Event, PublishOptions)> = (0..32)
        .map(|i| {
            (
                Event::new("t", "test.v1", serde_json::json!({"seq": i})),
                PublishOptions::default(),
            )
        })
        .collect();
    batch.push((
        Event::new("t", "test.v1", serde_json::json!({"seq": 99})),
        PublishOptions::idempotent("k"),
    ));
    batch.push((
        Event::new("t", "test.v1", serde_json::json!({"seq": 100})),
        PublishOptions::idempotent("k"),
    ));
    let out = p.publish_batch(&n.input, &batch).await.unwrap();
    assert_eq!(out.len(), 34);
    assert!(out
        .windows(2)
        .take(32)
        .all(|w| w[0].entry_id.parse::<mt5_bus::StreamId>().unwrap()
            < w[1].entry_id.parse::<mt5_bus::StreamId>().unwrap()));
    assert_eq!(out[32].entry_id, out[33].entry_id);
    assert!(out[33].duplicate);
    let mut c = conn(&fx).await;
    let entries = read_all(&mut c, &n.input).await;
    assert_eq!(entries.len(), 33);
    assert_eq!(entries[5].0, out[5].entry_id);
}

/// A batch that does not fit under the backlog limit is written up to the limit and the rest is
/// refused event by event, on the plain path and on the keyed (script) path alike.
#[tokio::test]
async fn a_batch_is_written_up_to_the_backlog_limit_and_the_rest_refused() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 5;
    bus.trim.backlog_limit = 10;
    let p = producer(&redis, &bus).await;
    let plain = PublishOptions::default();
    let events: Vec<Event> = (0..15)
        .map(|i| Event::new("t", "test.v1", serde_json::json!(i)))
        .collect();
    let batch: Vec<(&Event, &PublishOptions)> = events.iter().map(|e| (e, &plain)).collect();
    let out = p.publish_each(&n.input, &batch[..8]).await.unwrap();
    assert!(out.iter().all(Result::is_ok));
    let out = p.publish_each(&n.input, &batch[8..]).await.unwrap();
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 2, "{out:?}");
    assert!(matches!(out[2], Err(Error::Backpressure { limit: 10, .. })));
    let keyed: Vec<PublishOptions> = (0..3).map(|i| PublishOptions::idempotent(format!("k{i}"))).collect();
    let batch: Vec<(&Event, &PublishOptions)> = events.iter().zip(&keyed).collect();
    let out = p.publish_each(&n.dlq, &batch).await.unwrap();
    assert!(out.iter().all(Result::is_ok), "the dead letter stream has no limit");
    let out = p.publish_each(&n.input, &batch).await.unwrap();
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(Error::Backpressure { length: 10, .. }))),
        "{out:?}"
    );
    let mut c = conn(&fx).await;
    assert_eq!(read_all(&mut c, &n.input).await.len(), 10);
}

/// At `maxmemory` (policy `noeviction`) Redis refuses writes with `OOM`: an un-keyed batch is
/// refused as a whole (MULTI/EXEC, so no entry of it is written and a retry cannot duplicate
/// part of it), the error is transient (retried with backoff, then reported), and once memory
/// is available the same batch goes through complete.
#[tokio::test]
async fn an_oom_refusal_of_an_unkeyed_batch_is_transient_and_writes_nothing() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.retry.max_attempts = 2;
    bus.retry.initial_ms = 10;
    bus.retry.max_ms = 20;
    let p = producer(&redis, &bus).await;
    let mut c = conn(&fx).await;
    let used: u64 = fx
        .info_field("memory", "used_memory")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query_async(&mut c)
        .await
        .unwrap();
    let events: Vec<(Event, PublishOptions)> = (0..20)
        .map(|i| {
            (
                Event::new("t", "test.v1", serde_json::json!({"i": i, "pad": "x".repeat(512)})),
                PublishOptions::default(),
            )
        })
        .collect();
    let err = p.publish_batch(&n.input, &events).await.unwrap_err();
    match &err {
        // Retried (transient), then given up on after `max_attempts`.
        Error::RetriesExhausted { attempts, last, .. } => {
            assert_eq!(*attempts, 2, "{err}");
            assert!(last.is_transient() && last.to_string().contains("OOM"), "{err}");
        }
        other => panic!("expected the retries to run out on OOM, got {other}"),
    }
    let len: u64 = redis::cmd("XLEN").arg(&n.input).query_async(&mut c).await.unwrap();
    assert_eq!(len, 0, "nothing of the refused batch was written");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    let published = p.publish_batch(&n.input, &events).await.unwrap();
    assert_eq!(published.len(), 20);
    assert_eq!(read_all(&mut c, &n.input).await.len(), 20);
}

/// The maximum entry size counts field names and values and admits exactly the maximum, on the
/// plain path and on the keyed (script) path; one byte over is refused with the entry's size.
#[tokio::test]
async fn an_entry_of_exactly_the_maximum_size_is_published_and_one_byte_more_is_not() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    let e = Event::new("t", "test.v1", serde_json::json!("x".repeat(500)));
    let size = mt5_bus::envelope::fields_size(&e.to_fields());
    let keyed = PublishOptions::idempotent("k");
    bus.max_entry_bytes = size;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &e).await.unwrap();
    p.publish_with(&n.input, &e, &keyed).await.unwrap();
    bus.max_entry_bytes = size - 1;
    let p = producer(&redis, &bus).await;
    for opts in [PublishOptions::default(), PublishOptions::idempotent("k2")] {
        let err = p.publish_with(&n.input, &e, &opts).await.unwrap_err();
        assert!(
            matches!(err, Error::EntryTooLarge { size: s, max } if s == size && max == size - 1),
            "{opts:?}: {err}"
        );
    }
    let mut c = conn(&fx).await;
    assert_eq!(read_all(&mut c, &n.input).await.len(), 2);
}

/// A batch with different idempotency keys writes each event once; sent again, each one is a
/// duplicate of its own first entry.
#[tokio::test]
async fn each_key_of_a_batch_guards_its_own_event() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let events: Vec<(Event, PublishOptions)> = (0..3)
        .map(|i| {
            (
                Event::new("t", "test.v1", serde_json::json!(i)),
                PublishOptions::idempotent(format!("k{i}")),
            )
        })
        .collect();
    let first = p.publish_batch(&n.input, &events).await.unwrap();
    assert!(first.iter().all(|p| !p.duplicate), "{first:?}");
    let again = p.publish_batch(&n.input, &events).await.unwrap();
    assert!(again.iter().all(|p| p.duplicate), "{again:?}");
    let ids = |out: &[mt5_bus::Published]| out.iter().map(|p| p.entry_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    let mut c = conn(&fx).await;
    let written: Vec<String> = read_all(&mut c, &n.input).await.into_iter().map(|e| e.0).collect();
    assert_eq!(written, ids(&first));
}

/// The plain path's backlog check trusts the length it saw after its previous batch only while
/// that leaves room: a batch that fits costs no extra `XLEN`, and once the stream was trimmed
/// below the limit, publishes are accepted again instead of being refused on an old length.
#[tokio::test]
async fn the_backlog_check_rereads_the_length_only_when_the_known_one_leaves_no_room() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 5;
    bus.trim.backlog_limit = 10;
    let p = producer(&redis, &bus).await;
    let event = |i: i64| Event::new("t", "test.v1", serde_json::json!(i));
    let xlens = || async { fx.command_calls("xlen").await.unwrap() };
    p.publish(&n.input, &event(0)).await.unwrap();
    let before = xlens().await;
    for i in 1..10 {
        p.publish(&n.input, &event(i)).await.unwrap();
    }
    assert_eq!(
        xlens().await - before,
        9,
        "one XLEN per batch, in its own MULTI/EXEC, while the known length leaves room"
    );
    assert!(matches!(
        p.publish(&n.input, &event(10)).await,
        Err(Error::Backpressure { length: 10, .. })
    ));
    let mut c = conn(&fx).await;
    let _: i64 = redis::cmd("XTRIM")
        .arg(&n.input)
        .arg("MAXLEN")
        .arg(4)
        .query_async(&mut c)
        .await
        .unwrap();
    p.publish(&n.input, &event(11))
        .await
        .expect("room again after the trim: the length is read again, not taken from before");
    assert_eq!(read_all(&mut c, &n.input).await.len(), 5);
}
