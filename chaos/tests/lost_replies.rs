//! Scenario 5: replies lost after Redis applied the command. With every `mt5-hub` process behind
//! the fault proxy, the downstream of the Redis link (replies) is cut twice under load: once by
//! `reset_peer` (the next reply is dropped and the connection reset with a TCP RST 500 ms later),
//! once by a `timeout` toxic (replies stop, the connection is closed 1 s later). The commands
//! still reach Redis and are applied; the clients see errors and retry. Retried publishes carry
//! idempotency keys, so they must not duplicate anything.
//!
//! Known limit of the in-process proxy: noxious 1.0.4 swaps the directions of a live connection
//! when its toxics change; the proxy rebuilds the links twice to undo it (see
//! `chaos/src/proxy/backend.rs`), and a command written between the two rebuilds can still be
//! swallowed by the `timeout` toxic instead of being applied. So the `timeout` phase usually,
//! not always, yields retries that hit their key (seen: 2, 2, 2, 0); `reset_peer` runs in the
//! proxy's own front and is not affected. The scenario asserts on the total of both phases and
//! reports the figure of each.

mod common;

use std::time::{Duration, Instant};

use mt5_chaos::harness::Load;
use mt5_chaos::history::History;
use mt5_chaos::proxy::control::{ProxiedLink, Stream, Toxic};
use mt5_chaos::report;
use mt5_fixtures::Appendfsync;

/// How long each toxic stays on.
const FAULT: Duration = Duration::from_secs(2);

/// Publisher (idempotency keys, 200 ev/s, 2000 events) and two filters through the proxy; after
/// 2 s of flow a `reset_peer` toxic on the downstream for 2 s, then 2 s later a `timeout` toxic
/// on the downstream for 2 s. Proves the fault landed where it matters: retried publishes hit
/// their idempotency key (history rows with `duplicate: true`), the raw stream holds one entry
/// per published event (keys = entries), and the proxy reset connections; then lost 0,
/// duplicated effects 0, PEL drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_publishes_after_lost_replies_do_not_duplicate() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let link = ProxiedLink::start("lost-replies", &format!("127.0.0.1:{}", fx.port()))
        .await
        .expect("the fault proxy in front of Redis");
    // The services go through the proxy; the checker reads Redis directly.
    let (sc, checker) = common::proxied_scenario("lost_replies", &fx, &link);
    let mut filters = common::start_filters(&sc, &["f1", "f2"]).await;
    let history = sc.history_path("load");
    let load = Load::news(200.0, 2000, history.clone()).with_idempotency_key_prefix(format!("lost-{}", fx.prefix()));
    let mut publisher = sc.spawn_publisher(&load).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        checker.output_len().await.unwrap() > 0,
        "nothing flowed before the faults"
    );
    let stats_before = link.stats().await.unwrap();

    let mut recoveries = Vec::new();
    let mut dedupes_by_toxic = Vec::new();
    for (i, toxic) in [
        Toxic::ResetPeer { timeout_ms: 500 },
        Toxic::Timeout { timeout_ms: 1000 },
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let name = link
            .toxiproxy()
            .add_toxic(link.name(), Stream::Downstream, toxic, 1.0)
            .await
            .unwrap_or_else(|e| panic!("add {toxic:?}: {e}"));
        tokio::time::sleep(FAULT).await;
        link.toxiproxy().remove_toxic(link.name(), &name).await.unwrap();
        let healed_at = Instant::now();
        let before = checker.output_len().await.unwrap();
        recoveries.push(loop {
            if checker.output_len().await.unwrap() > before {
                break healed_at.elapsed();
            }
            assert!(
                healed_at.elapsed() < Duration::from_secs(20),
                "nothing flowed after {name} was removed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        // The publisher's retry of the batch whose reply was lost has come back by now (it
        // writes its history after every batch).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let so_far = History::read(&[&history]).unwrap().duplicates();
        let earlier: usize = dedupes_by_toxic.iter().map(|(_, n)| n).sum();
        dedupes_by_toxic.push((toxic.type_name(), so_far - earlier));
    }

    let status = publisher.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(20)).await.unwrap();
    common::stop_all(&mut filters).await;
    let stats_after = link.stats().await.unwrap();
    link.close().await.unwrap();

    let resets = match (stats_before, stats_after) {
        (Some(b), Some(a)) => Some((a.reset.saturating_sub(b.reset), a.dropped.saturating_sub(b.dropped))),
        _ => None,
    };
    let verdict = checker.check(std::slice::from_ref(&history)).await.unwrap();
    let dedupes = verdict.publish_dedupes;
    let by_toxic = dedupes_by_toxic
        .iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let keys_vs_entries = format!("{} keys, {} raw entries", verdict.published, verdict.raw_entries);
    let verdict = verdict
        .with_faults(format!(
            "replies lost: reset_peer 500 ms then timeout 1 s on the downstream, {} s each; {dedupes} retried publishes hit their key ({by_toxic}); {keys_vs_entries}{}",
            FAULT.as_secs(),
            resets.map_or_else(String::new, |(r, d)| format!("; {r} connections reset, {d} dropped"))
        ))
        .with_recovery(recoveries.iter().max().copied().unwrap_or_default());
    report::record("5 lost_replies", &verdict).unwrap();
    // The fault landed: publishes applied by Redis had their reply lost and were retried.
    assert!(
        dedupes > 0,
        "no retried publish hit its idempotency key: no reply was lost after Redis applied a publish"
    );
    if verdict.raw_entries != verdict.published {
        panic!(
            "the raw stream has a different number of entries than distinct published events \
             ({keys_vs_entries}): {}; {}",
            raw_vs_history(&fx.url(), &sc.streams.raw, &history).await,
            verdict.line()
        );
    }
    if let Some((reset, _)) = resets {
        assert!(reset > 0, "reset_peer reset no connection");
    }
    verdict.assert_zero_loss();
}

/// Why the raw stream and the history disagree: event ids with more than one raw entry (with
/// their entry ids), and recorded event ids without one.
async fn raw_vs_history(redis_url: &str, raw: &str, history: &std::path::Path) -> String {
    let mut conn = mt5_bus::Redis::from_url(redis_url).unwrap().connect().await.unwrap();
    let entries = mt5_bus::query::range(&mut conn, raw, &mt5_bus::query::RangeOptions::all())
        .await
        .unwrap();
    let mut by_id: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
    for entry in entries {
        let id = entry
            .field("id")
            .map_or_else(|| format!("<no id: {:?}>", entry.fields), str::to_string);
        by_id.entry(id).or_default().push(entry.id);
    }
    let h = History::read(&[history]).unwrap();
    let twice: Vec<String> = by_id
        .iter()
        .filter(|(_, e)| e.len() > 1)
        .map(|(id, e)| format!("{id} at {}", e.join(",")))
        .take(10)
        .collect();
    let missing: Vec<String> = h
        .lines
        .iter()
        .filter(|l| !by_id.contains_key(&l.event_id))
        .map(|l| {
            format!(
                "seq {} {} (recorded entry {}, duplicate {})",
                l.seq, l.event_id, l.entry_id, l.duplicate
            )
        })
        .take(10)
        .collect();
    format!("event ids with several raw entries: {twice:?}; recorded without a raw entry: {missing:?}")
}
