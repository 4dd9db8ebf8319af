//! Scenario 1: a filter consumer SIGKILLed mid-batch, repeatedly, under steady load; the
//! survivors reclaim its pending entries.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::Load;
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// Kills that must land (the victim held pending entries when killed).
const KILLS: usize = 3;
/// Attempts at catching the victim with entries in flight, per kill.
const CATCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Events published at 400 ev/s: 20 s of load, so the third kill still finds traffic after two
/// reclaims (each waits out the victim's heartbeat TTL; with 12 s of load the later kills found
/// the stream idle and missed).
const LOAD_EVENTS: u64 = 8000;
/// The victim's handler waits this long per entry (the `filter-delay` hook), so a read of 40
/// entries is held for about 80 ms instead of a few: at full speed the victim held entries for
/// so short a time that on a loaded 2-vCPU machine most 3 s catch windows missed it (2 of 3 runs
/// failed here at the stop-18 commit too).
const VICTIM_DELAY: &str = "filter-delay=return(2)";

/// Three `filter` processes under 400 ev/s for 20 s (long enough to retry a kill that found the
/// victim idle); one of them, slowed to 2 ms per entry so its reads stay in flight long enough
/// to be caught, SIGKILLed three times while it holds pending entries (and replaced by a fresh,
/// equally slow consumer each time). Proves each kill landed
/// (the victim's PEL was non-empty after its death), that survivors reclaimed (`mt5_reclaimed_total`
/// > 0), and the zero-loss invariant: lost 0, duplicated effects 0, PEL drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumers_entries_are_reclaimed_without_loss_or_duplicates() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let sc = common::scenario("consumer_crash", &fx);
    let checker = Checker::for_scenario(&sc);

    let mut survivors = vec![
        sc.spawn_filter("survivor-1").await.unwrap(),
        sc.spawn_filter("survivor-2").await.unwrap(),
    ];
    let mut victim = sc
        .spawn_filter_with("victim-0", &[("FAILPOINTS", VICTIM_DELAY)])
        .await
        .unwrap();
    for p in survivors.iter().chain([&victim]) {
        common::ready(p).await;
    }
    let history = sc.history_path("load");
    let mut publisher = sc
        .spawn_publisher(&Load::news(400.0, LOAD_EVENTS, history.clone()).with_batch(40))
        .await
        .unwrap();

    let mut landed: Vec<(String, u64)> = Vec::new();
    let mut recoveries = Vec::new();
    let mut generation = 0;
    let deadline = Instant::now() + Duration::from_secs(22);
    while landed.len() < KILLS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(700)).await;
        // Kill as soon as the victim holds entries (a read in progress: mid-batch).
        let name = victim.label().to_string();
        let caught = Instant::now();
        while caught.elapsed() < CATCH_TIMEOUT {
            if checker
                .pending_by_consumer()
                .await
                .unwrap()
                .get(&name)
                .copied()
                .unwrap_or(0)
                > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        victim.sigkill().await.unwrap();
        let killed_at = Instant::now();
        // Its PEL as it died: nothing can change it until a survivor claims it (after the
        // heartbeat TTL).
        let held = checker
            .pending_by_consumer()
            .await
            .unwrap()
            .get(&name)
            .copied()
            .unwrap_or(0);
        generation += 1;
        let next = sc
            .spawn_filter_with(&format!("victim-{generation}"), &[("FAILPOINTS", VICTIM_DELAY)])
            .await
            .unwrap();
        if held > 0 {
            landed.push((name.clone(), held));
            // Recovered when a survivor has claimed everything the victim held.
            loop {
                let pel: HashMap<String, u64> = checker.pending_by_consumer().await.unwrap();
                if pel.get(&name).copied().unwrap_or(0) == 0 {
                    recoveries.push(killed_at.elapsed());
                    break;
                }
                assert!(
                    killed_at.elapsed() < Duration::from_secs(15),
                    "the victim's entries were never reclaimed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        victim = next;
        common::ready(&victim).await;
    }

    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    let mut reclaimed = 0.0;
    for s in &survivors {
        reclaimed += s.metrics().await.unwrap().sum("mt5_reclaimed_total", &[]);
    }
    reclaimed += victim.metrics().await.unwrap().sum("mt5_reclaimed_total", &[]);
    survivors.push(victim);
    common::stop_all(&mut survivors).await;

    let recovery = recoveries.iter().max().copied().unwrap_or_default();
    let held: Vec<String> = landed.iter().map(|(n, h)| format!("{n}:{h}")).collect();
    let verdict = checker
        .check(&[history])
        .await
        .unwrap()
        .with_faults(format!(
            "{} consumer SIGKILLs mid-batch (pending held {}), {reclaimed} reclaimed",
            landed.len(),
            held.join(" ")
        ))
        .with_recovery(recovery);
    report::record("1 consumer_crash", &verdict).unwrap();
    assert_eq!(
        landed.len(),
        KILLS,
        "kills that caught the victim with pending entries: {landed:?}"
    );
    assert!(reclaimed > 0.0, "no survivor reclaimed anything");
    verdict.assert_zero_loss();
}
