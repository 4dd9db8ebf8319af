//! Scenario 6: poison entries mixed into good traffic: each one kills every consumer that
//! handles it, until its delivery count passes `max_deliveries` and it is dead-lettered; the good
//! traffic keeps flowing.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{HubProcess, Load, Scenario};
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// The poison marker the filters' `filter-poison` hook aborts on.
const MARKER: &str = "CHAOS-POISON";
/// Filters kept alive by the supervisor.
const FILTERS: usize = 2;
/// Events, and every how many one is a poison.
const COUNT: u64 = 2400;
const POISON_EVERY: u64 = 750;

async fn spawn(sc: &Scenario, n: usize) -> HubProcess {
    let failpoints = format!("filter-poison=return({MARKER})");
    sc.spawn_filter_with(&format!("filter-{n}"), &[("FAILPOINTS", failpoints.as_str())])
        .await
        .unwrap()
}

/// Two filters with the `filter-poison` hook under 300 ev/s, every 800th event a poison. A
/// supervisor restarts every filter the poison aborts (under a new consumer name, like a new pod).
/// Proves the poison landed (filters aborted, at least `max_deliveries` times per poison), that
/// each poison is dead-lettered as `max_deliveries` and nothing else is dead-lettered, and that
/// every good event was filtered exactly once with the PEL drained, and the e2e p95 of good
/// events stays under a second (no head-of-line blocking). Events are published in batches of 20
/// so a poison sits mid-batch: this found entries read in one batch with a poison being
/// dead-lettered with it (fixed by re-reading already-delivered entries one at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_are_dead_lettered_and_the_rest_flows() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let sc = common::scenario("poison", &fx);
    let checker = Checker::for_scenario(&sc);
    let max_deliveries = sc.timings.max_deliveries;
    let mut spawned = 0;
    let mut filters = Vec::new();
    for _ in 0..FILTERS {
        spawned += 1;
        let f = spawn(&sc, spawned).await;
        common::ready(&f).await;
        filters.push(f);
    }
    let history = sc.history_path("load");
    let mut publisher = sc
        .spawn_publisher(
            &Load::news(300.0, COUNT, history.clone())
                .with_poison(POISON_EVERY, MARKER)
                .with_batch(20),
        )
        .await
        .unwrap();

    // The supervisor: restart aborted filters until the load is done and the group drained.
    let started = Instant::now();
    let mut aborts = 0;
    let mut publisher_done = false;
    loop {
        for f in filters.iter_mut() {
            if let Some(status) = f.try_status().unwrap() {
                assert!(
                    f.stderr().contains("fault injection: abort on poison entry"),
                    "{} exited ({status}) without the poison hook: {}",
                    f.label(),
                    f.stderr_tail(10)
                );
                aborts += 1;
                spawned += 1;
                *f = spawn(&sc, spawned).await;
            }
        }
        if !publisher_done {
            if let Some(status) = publisher.try_status().unwrap() {
                assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
                publisher_done = true;
            }
        }
        if publisher_done && checker.is_drained().await.unwrap() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "not drained after 45 s (aborts {aborts}, pending {})",
            checker.pending().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = started.elapsed();
    common::stop_all(&mut filters).await;

    let poisons = COUNT / POISON_EVERY;
    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_faults(format!(
            "{poisons} poison entries (abort hook), {aborts} filter aborts, max_deliveries {max_deliveries}"
        ))
        .with_recovery(recovery);
    report::record("6 poison", &verdict).unwrap();
    assert!(
        aborts as u64 >= poisons * max_deliveries,
        "each poison should kill {max_deliveries} consumers: {aborts} aborts"
    );
    assert_eq!(
        verdict.dead_lettered_with("max_deliveries"),
        poisons,
        "{}",
        verdict.line()
    );
    assert_eq!(
        verdict.dead_lettered_total(),
        poisons,
        "good events were dead-lettered: {}",
        verdict.line()
    );
    assert_eq!(verdict.processed, verdict.published - poisons, "{}", verdict.line());
    // No head-of-line blocking: good events flow while a poison bounces between consumers.
    let p95 = verdict.latency.map_or(u64::MAX, |l| l.p95);
    assert!(
        p95 < 1000,
        "good events were held up behind the poisons: {}",
        verdict.line()
    );
    verdict.assert_zero_loss();
}
