//! Sentinel mode against a real replicated Redis: a master, a replica and three sentinels on
//! loopback (`SentinelFixture`). A producer and a running consumer made once, in sentinel mode,
//! keep working across a SIGKILL of the master and the promotion of the replica: nothing
//! acknowledged before the kill (and replicated) is lost, nothing is processed twice, and no
//! process is restarted.

use std::time::{Duration, Instant};

use mt5_bus::query::{self, RangeReader};
use mt5_bus::{BusMetrics, Consumer, ConsumerOptions, EventProducer, Redis, RedisConfig};
use mt5_fixtures::SentinelFixture;
use tokio_util::sync::CancellationToken;

use crate::support::{configs, scripted, Names, Scripted};

/// The sentinels call the master down after this long without an answer.
const DOWN_AFTER_MS: u64 = 1000;

/// A connection to the sentinels' current master, retried for up to 10 s (right after a
/// failover the sentinels may still disagree, as a service's retries would ride out).
async fn master(redis: &RedisConfig) -> mt5_bus::Connection {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Redis::new(redis).unwrap().connect().await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("no master yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no master within 10 s: {e}"),
        }
    }
}

/// The `seq` of every event in `stream`, read through the sentinels' current master.
async fn seqs(redis: &RedisConfig, stream: &str) -> Vec<u64> {
    let mut conn = master(redis).await;
    RangeReader::new(stream, 500)
        .read_to_end(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(e.field("data").unwrap()).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Waits until `stream` holds `count` events (through the current master).
async fn wait_for_outputs(redis: &RedisConfig, stream: &str, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = seqs(redis, stream).await.len();
        if got >= count {
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {count} outputs after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_producer_and_a_consumer_follow_a_failover_without_a_restart() {
    let mut fx = SentinelFixture::start(1, DOWN_AFTER_MS).await.unwrap();
    let n = Names::new(&fx.servers()[0]);
    let (redis, mut bus) = configs(&fx.servers()[0], &n);
    // The URL's host and port are ignored in sentinel mode: point it nowhere to prove it.
    let redis = redis
        .with_url("redis://127.0.0.1:1")
        .with_sentinels(fx.master_name(), fx.sentinel_addrs());
    bus.retry.max_ms = 200;
    // One process's metrics, shared by its producer and consumer as the binary shares them.
    let metrics = BusMetrics::unregistered();
    let p = EventProducer::connect(&redis, &bus, metrics.clone(), CancellationToken::new())
        .await
        .unwrap()
        .with_unbounded_retries();
    let cancel = CancellationToken::new();
    let opts = ConsumerOptions::new(&n.input, &n.group).with_name("c1");
    let c = Consumer::new(&redis, &bus, opts, Scripted::new(&n.output), metrics.clone()).unwrap();
    let running = tokio::spawn(c.run(cancel.clone()));

    for seq in 0..50 {
        p.publish(&n.input, &scripted(seq, &["emit"])).await.unwrap();
    }
    wait_for_outputs(&redis, &n.output, 50, Duration::from_secs(10)).await;
    let old = fx.master_port().await.unwrap();
    assert_eq!(old, fx.servers()[0].port());
    let info = |port: u16| {
        metrics
            .redis_master_info
            .with_label_values(&[&format!("127.0.0.1:{port}")])
            .get()
    };
    assert_eq!((metrics.redis_failovers.get(), info(old)), (0, 1));
    fx.wait_replicas_in_sync(old, Duration::from_secs(5)).await.unwrap();
    let mut before = Redis::new(&redis).unwrap().connect().await.unwrap();
    assert_eq!(query::connected_replicas(&mut before).await.unwrap(), 1);

    fx.server_mut(0).kill().await.unwrap();
    let killed = Instant::now();
    // The same producer: its first publish after the kill waits out the failover.
    tokio::time::timeout(Duration::from_secs(30), p.publish(&n.input, &scripted(50, &["emit"])))
        .await
        .expect("the producer did not follow the failover within 30 s")
        .unwrap();
    let first_ack = killed.elapsed();
    let new = fx.wait_for_promotion(old, Duration::from_secs(1)).await.unwrap();
    assert_ne!(new, old);
    for seq in 51..100 {
        p.publish(&n.input, &scripted(seq, &["emit"])).await.unwrap();
    }
    wait_for_outputs(&redis, &n.output, 100, Duration::from_secs(20)).await;
    let settled = killed.elapsed();
    eprintln!("failover: first acknowledged publish {first_ack:?} after the kill, 100 outputs after {settled:?}");

    assert_eq!(
        metrics.redis_failovers.get(),
        1,
        "one failover, counted once by the process"
    );
    assert_eq!((info(old), info(new)), (0, 1));
    // The promoted replica has no replica of its own: the old master is dead.
    let mut after = master(&redis).await;
    assert_eq!(query::connected_replicas(&mut after).await.unwrap(), 0);

    let mut out = seqs(&redis, &n.output).await;
    out.sort_unstable();
    assert_eq!(out, (0..100).collect::<Vec<u64>>(), "every event once, none twice");
    let mut conn = master(&redis).await;
    let pending = query::pending_summary(&mut conn, &n.input, &n.group)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.count, 0, "{pending:?}");

    cancel.cancel();
    running.await.unwrap().unwrap();
}

/// With no sentinel reachable, connecting fails as "Redis is unavailable" (so services retry and
/// one-shot commands exit 3) and the error says which sentinels were asked.
#[tokio::test]
async fn unreachable_sentinels_are_an_unavailable_redis() {
    let port = mt5_fixtures::free_port().unwrap();
    let redis = RedisConfig::default().with_sentinels("mt5master", [format!("127.0.0.1:{port}")]);
    let err = Redis::new(&redis).unwrap().connect().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("mt5master") && text.contains(&port.to_string()), "{text}");
}

/// A sentinel that does not know the master's name is not taken for an answer.
#[tokio::test]
async fn a_wrong_master_name_is_reported() {
    let fx = SentinelFixture::start(0, DOWN_AFTER_MS).await.unwrap();
    let redis = RedisConfig::default().with_sentinels("nosuchmaster", fx.sentinel_addrs());
    let err = Redis::new(&redis).unwrap().connect().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("knows no master named nosuchmaster"), "{err}");
    // The right name connects, to the master.
    let redis = RedisConfig::default().with_sentinels(fx.master_name(), fx.sentinel_addrs());
    let mut conn = Redis::new(&redis).unwrap().connect().await.unwrap();
    query::ping(&mut conn).await.unwrap();
}

/// A sentinel that has not heard of the latest failover names an older master, which may answer
/// as a master (restarted, or another server now on its address): the answer with the newest
/// configuration epoch wins over it. Here the stale sentinel monitors another server under the
/// same name (epoch 0) and is asked first; the real topology has failed over once (epoch 1).
#[tokio::test]
async fn the_newest_configuration_epoch_wins_over_a_stale_sentinel() {
    let fx = SentinelFixture::start(1, DOWN_AFTER_MS).await.unwrap();
    let new = fx.force_failover(Duration::from_secs(30)).await.unwrap();
    let stale = SentinelFixture::start(0, DOWN_AFTER_MS).await.unwrap();
    assert_eq!(stale.master_name(), fx.master_name());
    let mut sentinels = vec![stale.sentinel_addrs()[0].clone()];
    sentinels.extend(fx.sentinel_addrs());
    let redis = RedisConfig::default().with_sentinels(fx.master_name(), sentinels);
    let mut conn = Redis::new(&redis).unwrap().connect().await.unwrap();
    let (_, port): (String, u16) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        port, new,
        "connected to the stale sentinel's master on {port}, not the promoted {new}"
    );
}

/// The shipped `configs/redis/sentinel.conf` (quorum 2 of 3, its `down-after-milliseconds`),
/// its monitored address replaced by a loopback master: a publish through a producer made before
/// the master's SIGKILL is acknowledged by the promoted replica within the 10 s target.
#[tokio::test]
async fn the_shipped_sentinel_config_fails_over_within_ten_seconds() {
    let shipped = include_str!("../../../configs/redis/sentinel.conf");
    let monitor = shipped
        .lines()
        .find(|l| l.starts_with("sentinel monitor "))
        .expect("a monitor line");
    assert!(monitor.ends_with(" 2"), "the shipped quorum is 2 of 3: {monitor}");
    let mut fx = SentinelFixture::start_with_config(1, shipped).await.unwrap();
    let n = Names::new(&fx.servers()[0]);
    let (redis, mut bus) = configs(&fx.servers()[0], &n);
    let redis = redis.with_sentinels(fx.master_name(), fx.sentinel_addrs());
    bus.retry.max_ms = 200;
    let p = EventProducer::connect(&redis, &bus, BusMetrics::unregistered(), CancellationToken::new())
        .await
        .unwrap()
        .with_unbounded_retries();
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let old = fx.master_port().await.unwrap();
    fx.wait_replicas_in_sync(old, Duration::from_secs(5)).await.unwrap();
    fx.server_mut(0).kill().await.unwrap();
    let killed = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), p.publish(&n.input, &scripted(1, &["emit"])))
        .await
        .expect("no failover within 30 s")
        .unwrap();
    let took = killed.elapsed();
    eprintln!("shipped sentinel.conf: first acknowledged publish {took:?} after the master's SIGKILL");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let mut conn = master(&redis).await;
    assert_eq!(query::len(&mut conn, &n.input).await.unwrap(), 2);
}

/// Publishes events `from..to` (each its own call) through `p`, returning what each returned.
async fn publish_range(
    p: &EventProducer,
    stream: &str,
    from: u64,
    to: u64,
) -> Vec<mt5_bus::Result<mt5_bus::Published>> {
    let mut out = Vec::new();
    for seq in from..to {
        out.push(p.publish(stream, &scripted(seq, &["emit"])).await);
    }
    out
}

/// The `seq`s in `stream` on the current master.
async fn input_seqs(redis: &RedisConfig, stream: &str) -> Vec<u64> {
    let mut s = seqs(redis, stream).await;
    s.sort_unstable();
    s
}

/// Both replicas frozen and cut off (the master drops their links, `CLIENT KILL TYPE replica`;
/// frozen, they cannot reconnect), 10 publishes started, the master SIGKILLed with them applied
/// but not replicated, the replicas thawed and one promoted.
/// Returns what the promoted master holds and what the publishes returned.
async fn publish_through_a_failover_with_frozen_replicas(
    durability: mt5_bus::Durability,
) -> (Vec<u64>, Vec<mt5_bus::Result<mt5_bus::Published>>, BusMetrics) {
    let mut fx = SentinelFixture::start(2, DOWN_AFTER_MS).await.unwrap();
    let n = Names::new(&fx.servers()[0]);
    let (redis, mut bus) = configs(&fx.servers()[0], &n);
    let redis = redis.with_sentinels(fx.master_name(), fx.sentinel_addrs());
    bus.retry.max_ms = 200;
    bus.durability = durability;
    bus.durability_timeout_ms = 200;
    let metrics = BusMetrics::unregistered();
    let p = EventProducer::connect(&redis, &bus, metrics.clone(), CancellationToken::new())
        .await
        .unwrap()
        .with_unbounded_retries();
    assert!(publish_range(&p, &n.input, 0, 10).await.iter().all(Result::is_ok));
    let old = fx.master_port().await.unwrap();
    fx.wait_replicas_in_sync(old, Duration::from_secs(5)).await.unwrap();

    for r in &fx.servers()[1..] {
        r.pause().await.unwrap();
    }
    let _: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut fx.servers()[0].connection().await)
        .await
        .unwrap();
    let stream = n.input.clone();
    let publishing = tokio::spawn(async move { publish_range(&p, &stream, 10, 20).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    fx.server_mut(0).kill().await.unwrap();
    for r in &fx.servers()[1..] {
        r.resume().await.unwrap();
    }
    let results = tokio::time::timeout(Duration::from_secs(60), publishing)
        .await
        .expect("the publishes did not finish within 60 s of the failover")
        .unwrap();
    fx.wait_for_promotion(old, Duration::from_secs(30)).await.unwrap();
    (input_seqs(&redis, &n.input).await, results, metrics)
}

/// `replicated` durability: a publish is acknowledged only once a replica has it (`WAIT` in the
/// same round trip), so every acknowledged publish survives the failover, exactly once (a short
/// `WAIT` sends the batch again under the event id as its key).
#[tokio::test]
async fn replicated_durability_loses_no_acknowledged_publish_across_a_failover() {
    let (held, results, metrics) =
        publish_through_a_failover_with_frozen_replicas(mt5_bus::Durability::Replicated).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(held, (0..20).collect::<Vec<u64>>(), "every acknowledged publish once");
    assert!(
        metrics.durability_wait_short.with_label_values(&["publish"]).get() > 0,
        "the frozen replicas made WAIT come back short"
    );
}

/// The same schedule in `async` durability loses what the master acknowledged and the frozen
/// replicas never received: what the test above proves `replicated` prevents.
#[tokio::test]
async fn async_durability_loses_what_the_replicas_never_received() {
    let (held, results, _) = publish_through_a_failover_with_frozen_replicas(mt5_bus::Durability::Async).await;
    let acknowledged = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(acknowledged, 10, "{results:?}");
    assert!(held.len() < 20, "nothing was lost: {held:?}");
    assert!(held.starts_with(&(0..10).collect::<Vec<u64>>()), "{held:?}");
}

/// An ACL user in the URL reaches the master found through the sentinels, and the replica
/// promoted after a failover: the connections authenticate as that user (`CLIENT LIST` shows
/// it), while the sentinels, which know no such user, are asked without it. A wrong password is
/// the server's refusal, not "Redis is unavailable".
#[tokio::test]
async fn an_acl_user_reaches_the_master_through_the_sentinels_and_after_a_failover() {
    let mut fx = SentinelFixture::start(1, DOWN_AFTER_MS).await.unwrap();
    for s in fx.servers() {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("mt5-acl")
            .arg("on")
            .arg(">s3cret")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut s.connection().await)
            .await
            .unwrap();
    }
    let n = Names::new(&fx.servers()[0]);
    let (redis, mut bus) = configs(&fx.servers()[0], &n);
    let redis = redis
        .with_url("redis://mt5-acl:s3cret@127.0.0.1:1")
        .with_sentinels(fx.master_name(), fx.sentinel_addrs());
    bus.retry.max_ms = 200;
    let p = EventProducer::connect(&redis, &bus, BusMetrics::unregistered(), CancellationToken::new())
        .await
        .unwrap()
        .with_unbounded_retries();
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let users = |list: String| {
        list.lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("user=")).map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let on_master: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut fx.servers()[0].connection().await)
        .await
        .unwrap();
    assert!(
        users(on_master).iter().any(|u| u == "mt5-acl"),
        "no connection as mt5-acl"
    );

    let old = fx.master_port().await.unwrap();
    fx.wait_replicas_in_sync(old, Duration::from_secs(5)).await.unwrap();
    fx.server_mut(0).kill().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), p.publish(&n.input, &scripted(1, &["emit"])))
        .await
        .expect("no failover within 30 s")
        .unwrap();
    let on_promoted: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut fx.servers()[1].connection().await)
        .await
        .unwrap();
    assert!(
        users(on_promoted).iter().any(|u| u == "mt5-acl"),
        "the producer did not reach the promoted replica as mt5-acl"
    );

    let wrong = redis.clone().with_url("redis://mt5-acl:wrong@127.0.0.1:1");
    let err = EventProducer::connect(&wrong, &bus, BusMetrics::unregistered(), CancellationToken::new())
        .await
        .expect_err("a wrong password was accepted");
    assert!(
        !err.is_unavailable(),
        "a wrong password taken for an unavailable Redis: {err}"
    );
}
