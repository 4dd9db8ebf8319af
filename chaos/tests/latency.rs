//! Scenario 4: 300 ms latency (± 100 ms jitter) on the Redis link of every `mt5-hub` process:
//! what it does to the end-to-end latency, with the zero-loss invariant unrelaxed.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::harness::Load;
use mt5_chaos::proxy::control::{ProxiedLink, Stream, Toxic};
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// The latency added to every reply.
const LATENCY_MS: u32 = 300;
/// Its jitter (±).
const JITTER_MS: u32 = 100;
/// The load: events per second.
const RATE: f64 = 25.0;
/// The load: events.
const COUNT: u64 = 300;

/// A latency toxic (300 ± 100 ms on every reply, the downstream of the Redis link) on from the
/// start; publisher (idempotency keys, batches of 10, 25 ev/s, 300 events) and two filters
/// through it. Proves the fault landed (a `PING` through the proxy takes at least the latency
/// minus the jitter, the e2e p50 is above it) and the invariant holds; reports e2e
/// p50/p95/p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_the_redis_link_slows_but_loses_nothing() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let link = ProxiedLink::start("latency", &format!("127.0.0.1:{}", fx.port()))
        .await
        .expect("the fault proxy in front of Redis");
    link.toxiproxy()
        .add_toxic(
            link.name(),
            Stream::Downstream,
            Toxic::Latency {
                latency_ms: LATENCY_MS,
                jitter_ms: JITTER_MS,
            },
            1.0,
        )
        .await
        .expect("add the latency toxic");
    let ping = ping_through(&link.redis_url()).await;
    assert!(
        ping >= Duration::from_millis(u64::from(LATENCY_MS - JITTER_MS)),
        "a PING through the proxy took {ping:?}: the latency toxic is not on"
    );

    // The services go through the proxy; the checker reads Redis directly.
    let (sc, checker) = common::proxied_scenario("latency", &fx, &link);
    let mut filters = common::start_filters(&sc, &["f1", "f2"]).await;
    let history = sc.history_path("load");
    // One publish batch per round trip: batches of 10 keep up with 25 ev/s at 2-3 round trips
    // per second. 25 ev/s is below what two filters handle at this latency (about 40 ev/s with
    // reads of 50), so the e2e figures show the latency's cost, not a growing backlog.
    let load = Load::news(RATE, COUNT, history.clone())
        .with_idempotency_key_prefix(format!("latency-{}", fx.prefix()))
        .with_batch(10);
    let started = Instant::now();
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();
    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    let published_in = started.elapsed();
    let drained_in = checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    common::stop_all(&mut filters).await;
    let stats = link.stats().await.unwrap();
    link.close().await.unwrap();

    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_faults(format!(
            "latency {LATENCY_MS} ± {JITTER_MS} ms on every reply (PING {} ms){}",
            ping.as_millis(),
            stats.map_or_else(String::new, |s| format!(", {} connections", s.accepted))
        ))
        .with_recovery(drained_in);
    eprintln!(
        "chaos 4 latency: load published in {:.1} s, drained {:.1} s after",
        published_in.as_secs_f64(),
        drained_in.as_secs_f64()
    );
    report::record("4 latency", &verdict).unwrap();
    let lat = verdict.latency.expect("no effect has a latency");
    assert!(
        lat.p50 >= u64::from(LATENCY_MS - JITTER_MS),
        "e2e p50 {} ms is below the injected latency: the toxic did not land",
        lat.p50
    );
    verdict.assert_zero_loss();
}

/// The round trip of one `PING` on a fresh connection through `url` (after the handshake).
async fn ping_through(url: &str) -> Duration {
    let mut cfg = mt5_bus::RedisConfig::default().with_url(url);
    cfg.connect_timeout_ms = 5000;
    cfg.response_timeout_ms = 5000;
    let mut conn = mt5_bus::Redis::new(&cfg).unwrap().connect().await.unwrap();
    let t = Instant::now();
    mt5_bus::query::ping(&mut conn).await.unwrap();
    t.elapsed()
}
