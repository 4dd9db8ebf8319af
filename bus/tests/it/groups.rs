//! Consumer group creation: a group is created at `0` only on an absent or empty stream, never
//! silently recreated on a stream with entries, and an existing group is fine while Redis is out
//! of memory.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mt5_bus::group::{create_group, ensure_group, group_exists};
use mt5_bus::stats::stream_stats;
use mt5_bus::{BusMetrics, Consumer, ConsumerOptions, Error, EventProducer};
use mt5_fixtures::RedisFixture;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use crate::support::{
    configs, conn, counted_consumer, mark_alive, output_seqs, producer, read_as, scripted, wait_until, Names, Scripted,
};

async fn destroy_group(c: &mut MultiplexedConnection, stream: &str, group: &str) {
    let destroyed: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(stream)
        .arg(group)
        .query_async(c)
        .await
        .unwrap();
    assert_eq!(destroyed, 1);
}

async fn config_set(c: &mut MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(c)
        .await
        .unwrap();
}

#[track_caller]
fn assert_group_missing(err: &Error, stream: &str, group: &str) {
    assert!(
        matches!(err, Error::GroupMissing { stream: s, group: g } if s == stream && g == group),
        "expected GroupMissing, got {err:?}"
    );
    let fix = format!("mt5-hub groups create --stream {stream} --group {group} --at 0|$|ID");
    assert!(err.to_string().contains(&fix), "the message names the fix: {err}");
}

/// A group deleted from a stream with entries is not recreated at `0` (which would process the
/// whole retained stream again): `ensure_group`, a producer's connect and a consumer's connect
/// all fail with `GroupMissing` naming `groups create`, and nothing is handled twice.
#[tokio::test]
async fn a_deleted_group_on_a_stream_with_entries_is_not_recreated() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..5 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let (mut running, calls) = counted_consumer(&redis, &bus, &n, "running");
    assert_eq!(running.step(Some(Duration::from_millis(10))).await.unwrap().emitted, 5);
    let mut c = conn(&fx).await;
    destroy_group(&mut c, &n.input, &n.group).await;

    let err = ensure_group(&mut c, &n.input, &n.group).await.unwrap_err();
    assert_group_missing(&err, &n.input, &n.group);
    assert!(!err.is_transient(), "retrying cannot help: {err}");

    let err = EventProducer::connect(&redis, &bus, BusMetrics::default(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_group_missing(&err, &n.input, &n.group);

    let mut fresh = crate::support::consumer(&redis, &bus, &n, Some("fresh"));
    let err = fresh.step(Some(Duration::from_millis(10))).await.unwrap_err();
    assert_group_missing(&err, &n.input, &n.group);

    // The consumer that was running when the group went away gets errors (NOGROUP, then
    // GroupMissing on its reconnect), never a recreated group.
    for _ in 0..3 {
        assert!(running.step(Some(Duration::from_millis(10))).await.is_err());
    }
    assert!(!group_exists(&mut c, &n.input, &n.group).await.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 5, "nothing was handled a second time");
    assert_eq!(output_seqs(&mut c, &n.output).await, (0..5).collect::<Vec<_>>());
}

/// On an absent stream the group is created at `0` with the stream (`MKSTREAM`), and on an empty
/// one (every entry deleted) too; a second call finds it and changes nothing.
#[tokio::test]
async fn an_absent_or_empty_stream_gets_the_group_at_zero() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;

    assert!(
        !group_exists(&mut c, &n.input, &n.group).await.unwrap(),
        "no stream, no group"
    );
    assert!(ensure_group(&mut c, &n.input, &n.group).await.unwrap(), "created");
    assert!(
        !ensure_group(&mut c, &n.input, &n.group).await.unwrap(),
        "already there"
    );
    let stats = stream_stats(&mut c, &n.input).await.unwrap();
    assert!(stats.exists);
    assert_eq!(stats.groups.len(), 1);
    assert_eq!(stats.groups[0].last_delivered_id, "0-0");

    let emptied = format!("{}:emptied", fx.prefix());
    let id: String = redis::cmd("XADD")
        .arg(&emptied)
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("XDEL")
        .arg(&emptied)
        .arg(&id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        ensure_group(&mut c, &emptied, "g").await.unwrap(),
        "created on the empty stream"
    );
    let stats = stream_stats(&mut c, &emptied).await.unwrap();
    assert_eq!((stats.length, stats.groups.len()), (0, 1));
    assert_eq!(stats.groups[0].last_delivered_id, "0-0");

    // Another group on a stream with entries is missing, whatever other groups exist.
    let _: String = redis::cmd("XADD")
        .arg(&emptied)
        .arg("*")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = ensure_group(&mut c, &emptied, "other").await.unwrap_err();
    assert_group_missing(&err, &emptied, "other");
}

/// At `maxmemory` with `noeviction` Redis refuses `XGROUP CREATE` with `OOM` even for a group
/// that exists: `ensure_group` then confirms the group exists and succeeds (so a service can
/// start while Redis is full), `create_group` reports it as existing, and a group that does not
/// exist gets the transient `OOM` error.
#[tokio::test]
async fn an_existing_group_is_fine_while_redis_is_out_of_memory() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..10 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let mut c = conn(&fx).await;
    config_set(&mut c, "maxmemory-policy", "noeviction").await;
    config_set(&mut c, "maxmemory", "1").await;
    let refused: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&n.input)
        .arg(&n.group)
        .arg("0")
        .query_async(&mut c)
        .await;
    assert_eq!(
        refused.unwrap_err().code(),
        Some("OOM"),
        "the premise: OOM even for an existing group"
    );

    assert!(!ensure_group(&mut c, &n.input, &n.group).await.unwrap());
    assert!(!create_group(&mut c, &n.input, &n.group, "$").await.unwrap());
    let absent = format!("{}:absent", fx.prefix());
    let err = ensure_group(&mut c, &absent, "g").await.unwrap_err();
    assert!(err.is_transient() && err.has_code("OOM"), "{err:?}");
    let err = create_group(&mut c, &absent, "g", "0").await.unwrap_err();
    assert!(err.is_transient() && err.has_code("OOM"), "{err:?}");

    config_set(&mut c, "maxmemory", "0").await;
    assert!(
        ensure_group(&mut c, &absent, "g").await.unwrap(),
        "created once memory is free"
    );
}

/// Errors other than Redis being full are not taken for "the group exists": `create_group` with
/// an invalid start id fails even where the group exists, and `group_exists` on a key that is not
/// a stream fails with `WRONGTYPE` rather than answering `false`.
#[tokio::test]
async fn other_errors_are_not_taken_for_an_existing_or_absent_group() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;
    assert!(create_group(&mut c, &n.input, &n.group, "0").await.unwrap());
    let err = create_group(&mut c, &n.input, &n.group, "not-an-id").await.unwrap_err();
    assert!(err.has_code("ERR") && !err.is_transient(), "{err:?}");

    let text = format!("{}:text", fx.prefix());
    let _: () = redis::cmd("SET").arg(&text).arg("x").query_async(&mut c).await.unwrap();
    let err = group_exists(&mut c, &text, "g").await.unwrap_err();
    assert!(err.has_code("WRONGTYPE"), "{err:?}");
    assert!(!group_exists(&mut c, &format!("{}:absent", fx.prefix()), "g")
        .await
        .unwrap());
}

/// `create_group` creates a group at `0`, `$` or an entry id on a stream with entries (the
/// explicit way), with `MKSTREAM` on an absent stream, and leaves an existing group as it is.
#[tokio::test]
async fn create_group_starts_where_it_is_told() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id: String = redis::cmd("XADD")
            .arg(&n.input)
            .arg("*")
            .arg("n")
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
        ids.push(id);
    }
    assert!(create_group(&mut c, &n.input, "from-start", "0").await.unwrap());
    assert!(create_group(&mut c, &n.input, "from-now", "$").await.unwrap());
    assert!(create_group(&mut c, &n.input, "resume", &ids[1]).await.unwrap());
    assert!(!create_group(&mut c, &n.input, "resume", "0").await.unwrap(), "exists");
    let stats = stream_stats(&mut c, &n.input).await.unwrap();
    let at = |name: &str| {
        stats
            .groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.last_delivered_id.clone())
    };
    assert_eq!(at("from-start").as_deref(), Some("0-0"));
    assert_eq!(at("from-now").as_deref(), Some(ids[2].as_str()));
    assert_eq!(
        at("resume").as_deref(),
        Some(ids[1].as_str()),
        "unchanged by the second call"
    );
    // With the group in place, services accept the stream.
    assert!(!ensure_group(&mut c, &n.input, "resume").await.unwrap());

    let absent = format!("{}:absent", fx.prefix());
    assert!(create_group(&mut c, &absent, "g", "1700000000000").await.unwrap());
    assert!(group_exists(&mut c, &absent, "g").await.unwrap());
    let err = create_group(&mut c, &absent, "h", "not-an-id").await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

/// A group deleted while `Consumer::run` runs stops the consumer on its own (no cancellation)
/// with `GroupMissing`: retrying cannot bring the group back and it is never recreated silently.
/// The stop is counted once in `mt5_consumer_group_missing_total`, the series an alert watches.
#[tokio::test]
async fn a_group_deleted_under_a_running_consumer_stops_it_with_group_missing() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let registry = prometheus::Registry::new();
    let metrics = BusMetrics::register(&registry).unwrap();
    let opts = ConsumerOptions::new(&n.input, &n.group).with_name("running");
    let consumer = Consumer::new(&redis, &bus, opts, Scripted::new(&n.output), metrics).unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(consumer.run(cancel.clone()));
    let mut c = conn(&fx).await;
    // Inside its loop: the first event is written.
    let out = n.output.clone();
    let written = wait_until(Duration::from_secs(10), || {
        let mut c = c.clone();
        let out = out.clone();
        async move { output_seqs(&mut c, &out).await == vec![0] }
    })
    .await;
    assert!(written.is_some(), "the running consumer handles the first event");
    destroy_group(&mut c, &n.input, &n.group).await;

    let result = tokio::time::timeout(Duration::from_secs(10), running).await;
    cancel.cancel();
    let err = result
        .expect("run stops by itself when its group is gone")
        .unwrap()
        .unwrap_err();
    assert_group_missing(&err, &n.input, &n.group);
    assert!(
        !group_exists(&mut c, &n.input, &n.group).await.unwrap(),
        "not recreated"
    );
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let series = format!(
        "mt5_consumer_group_missing_total{{group=\"{}\",stream=\"{}\"}} 1",
        n.group, n.input
    );
    assert!(text.contains(&series), "{series} in\n{text}");
}

/// `stream_stats` reports a stream's ends and length, and per group what is pending (and since
/// when), how far it has read, and which of its consumers are alive (have a heartbeat); the
/// gauges take those figures. An absent stream is reported as such.
#[tokio::test]
async fn stream_stats_report_ends_pending_and_live_consumers() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;
    let absent = stream_stats(&mut c, &n.input).await.unwrap();
    assert!(!absent.exists && absent.groups.is_empty() && absent.first_id.is_none());

    let mut ids = Vec::new();
    for i in 0..3 {
        let id: String = redis::cmd("XADD")
            .arg(&n.input)
            .arg("*")
            .arg("k")
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
        ids.push(id);
    }
    assert!(create_group(&mut c, &n.input, &n.group, "0").await.unwrap());
    for (name, count) in [("alive", 2), ("dead", 1)] {
        read_as(&mut c, &n.input, &n.group, name, count).await;
    }
    mark_alive(&mut c, &n.input, &n.group, "alive", 60_000).await;

    let stats = stream_stats(&mut c, &n.input).await.unwrap();
    assert!(stats.exists);
    assert_eq!(stats.length, 3);
    assert_eq!(
        (stats.first_id.as_deref(), stats.last_id.as_deref()),
        (Some(&*ids[0]), Some(&*ids[2]))
    );
    let [g] = &stats.groups[..] else {
        panic!("one group: {:?}", stats.groups)
    };
    assert_eq!(
        (g.name.as_str(), g.pending, g.last_delivered_id.as_str()),
        (n.group.as_str(), 3, &*ids[2])
    );
    assert_eq!((g.entries_read, g.lag), (Some(3), Some(0)));
    assert_eq!(g.oldest_pending_id.as_deref(), Some(&*ids[0]));
    assert!(g.oldest_pending_age_ms.is_some_and(|ms| ms < 60_000), "{g:?}");
    let consumers: Vec<_> = g
        .consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending, c.alive))
        .collect();
    assert_eq!(consumers, [("alive", 2, true), ("dead", 1, false)]);
    assert_eq!(g.alive(), 1);
    mark_alive(&mut c, &n.input, &n.group, "dead", 60_000).await;
    let both = stream_stats(&mut c, &n.input).await.unwrap();
    assert_eq!(both.groups[0].alive(), 2, "a heartbeat makes a consumer alive");

    let metrics = BusMetrics::default();
    metrics.observe_stats(&stats);
    let labels = [n.input.as_str(), n.group.as_str()];
    assert_eq!(metrics.stream_length.with_label_values(&[n.input.as_str()]).get(), 3);
    assert_eq!(metrics.group_pending.with_label_values(&labels).get(), 3);
    assert_eq!(metrics.group_lag.with_label_values(&labels).get(), 0);
    assert_eq!(metrics.consumers_alive.with_label_values(&labels).get(), 1);
    let mut aged = stats.clone();
    aged.groups[0].oldest_pending_age_ms = Some(5_500);
    metrics.observe_stats(&aged);
    assert_eq!(
        metrics.oldest_pending_age.with_label_values(&labels).get(),
        5,
        "whole seconds"
    );

    // A key that is not a stream is an error, not an absent stream.
    let text = format!("{}:text", fx.prefix());
    let _: () = redis::cmd("SET").arg(&text).arg("x").query_async(&mut c).await.unwrap();
    let err = stream_stats(&mut c, &text).await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
}

/// `list_streams` names every stream of the database once, sorted, however many pages `SCAN`
/// takes, and nothing that is not a stream.
#[tokio::test]
async fn list_streams_names_every_stream_across_scan_pages() {
    let fx = RedisFixture::start().await.unwrap();
    let mut c = conn(&fx).await;
    let mut pipe = redis::pipe();
    let mut want = Vec::new();
    for i in 0..2_500 {
        let name = format!("s:{i:04}");
        pipe.cmd("XADD").arg(&name).arg("*").arg("k").arg("v").ignore();
        want.push(name);
        if i % 10 == 0 {
            pipe.cmd("SET").arg(format!("k:{i}")).arg("v").ignore();
        }
    }
    let _: () = pipe.query_async(&mut c).await.unwrap();
    // SCAN looks at about COUNT (1000) keys a call: several pages for 2 750 keys.
    assert_eq!(mt5_bus::stats::list_streams(&mut c).await.unwrap(), want);
    let _: () = redis::cmd("FLUSHDB").query_async(&mut c).await.unwrap();
    assert!(mt5_bus::stats::list_streams(&mut c).await.unwrap().is_empty());
}
