//! Scenario 3: a partition between the services and Redis. Every `mt5-hub` process (the load
//! publisher and two filters) reaches Redis through the fault proxy; the proxy is disabled for
//! 10 s under load (its connections closed, new ones refused), then enabled again.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::harness::Load;
use mt5_chaos::proxy::control::ProxiedLink;
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// How long the partition lasts.
const PARTITION: Duration = Duration::from_secs(10);

/// Publisher (idempotency keys, 300 ev/s, 2400 events) and two filters, all through the proxy;
/// the proxy disabled for 10 s after 2 s of flow. Proves the fault landed (the proxy dropped
/// the open connections, and no effect was written during the partition) and that the services
/// came back by themselves: lost 0, duplicated effects 0, PEL drained; reports the time from the
/// end of the partition to the first new effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_partition_loses_and_duplicates_nothing() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let link = ProxiedLink::start("partition", &format!("127.0.0.1:{}", fx.port()))
        .await
        .expect("the fault proxy in front of Redis");
    // The services go through the proxy; the checker reads Redis directly.
    let (sc, checker) = common::proxied_scenario("partition", &fx, &link);

    let mut filters = common::start_filters(&sc, &["f1", "f2"]).await;
    let history = sc.history_path("load");
    let load =
        Load::news(300.0, 2400, history.clone()).with_idempotency_key_prefix(format!("partition-{}", fx.prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let flowing = checker.output_len().await.unwrap();
    assert!(flowing > 0, "nothing flowed before the partition");
    let stats_before = link.stats().await.unwrap();
    let conns_before = connections_received(&fx).await;

    link.toxiproxy().disable(link.name()).await.expect("disable the proxy");
    let cut_at = Instant::now();
    // Replies already on their way may still land just after the cut.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frozen = checker.output_len().await.unwrap();
    tokio::time::sleep_until((cut_at + PARTITION - Duration::from_millis(300)).into()).await;
    let frozen_end = checker.output_len().await.unwrap();
    assert_eq!(
        frozen, frozen_end,
        "effects were written during the partition: the proxy did not cut the services off"
    );
    tokio::time::sleep_until((cut_at + PARTITION).into()).await;
    // The clock of the recovery starts with the enable request: re-listening is part of it.
    let healed_at = Instant::now();
    let partition = cut_at.elapsed();
    link.toxiproxy().enable(link.name()).await.expect("enable the proxy");

    // Recovered when the filters write new effects again.
    let recovery = loop {
        if checker.output_len().await.unwrap() > frozen_end {
            break healed_at.elapsed();
        }
        assert!(
            healed_at.elapsed() < Duration::from_secs(20),
            "nothing flowed after the partition ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    common::stop_all(&mut filters).await;
    let stats_after = link.stats().await.unwrap();
    let reconnects = connections_received(&fx).await.saturating_sub(conns_before);
    link.close().await.unwrap();

    let dropped = match (stats_before, stats_after) {
        (Some(b), Some(a)) => Some(a.dropped.saturating_sub(b.dropped)),
        _ => None,
    };
    let dropped_text = dropped.map_or_else(|| "n/a (external Toxiproxy)".to_string(), |d| d.to_string());
    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_faults(format!(
            "proxy disabled {:.1} s under load (publisher + 2 filters): {dropped_text} connections dropped, {reconnects} reconnects to Redis",
            partition.as_secs_f64()
        ))
        .with_recovery(recovery);
    report::record("3 partition", &verdict).unwrap();
    // The fault landed: the proxy cut the open connections, and the services had to reconnect.
    if let Some(d) = dropped {
        assert!(d > 0, "the proxy dropped no connection");
    }
    assert!(reconnects > 0, "no service reconnected to Redis after the partition");
    verdict.assert_zero_loss();
}

/// Redis' `total_connections_received`: every reconnect through the proxy counts once.
async fn connections_received(fx: &mt5_fixtures::RedisFixture) -> u64 {
    fx.info_field("stats", "total_connections_received")
        .await
        .unwrap()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
