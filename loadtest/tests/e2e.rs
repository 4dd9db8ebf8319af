//! The news pipeline end to end under a steady load (CI-sized): real `mt5-hub publish` and two
//! `filter` processes on Redis with `appendfsync always`; checked for loss and duplicates, its
//! figures (rates, e2e latency) printed and written to `target/loadtest/report.md`.

use mt5_chaos::harness::{hub_bin, Streams};
use mt5_fixtures::{redis, Appendfsync, RedisFixture, RedisOptions};
use mt5_loadtest::e2e::{self, Load};
use mt5_loadtest::report;

/// 1000 events/s for 6 s through two filters: nothing lost, nothing duplicated, nothing left
/// pending, every event timed from its µs publish stamp, and the run's streams deleted
/// afterwards. The latency's size is reported, not asserted (a shared machine's figure); how
/// the two measures relate is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_at_1000_per_second_loses_nothing() {
    if let Err(e) = hub_bin() {
        panic!("{e}");
    }
    let fx = RedisFixture::start_with(RedisOptions::default().with_appendfsync(Appendfsync::Always))
        .await
        .expect("a Redis fixture");
    let load = Load {
        rate: 1000.0,
        count: 6000,
        filters: 2,
        batch: None,
    };
    let prefix = fx.prefix();
    let r = e2e::run("loadtest-e2e", &fx.url(), &prefix, &load)
        .await
        .expect("the e2e run");
    eprintln!("loadtest e2e: {}", r.line());
    report::record(&report::e2e_row("e2e 1000/s, 2 filters (cargo test)", &load, &r)).unwrap();
    assert_eq!(r.published, load.count, "{}", r.line());
    assert_eq!((r.lost, r.duplicates, r.pending), (0, 0, 0), "{}", r.line());
    // Every output carried the publisher's µs stamp, and the tail reader timed each one.
    assert_eq!((r.tail.timed, r.tail.untimed), (load.count, 0), "{}", r.line());
    let us = r.tail.e2e_us;
    let id_max_us = r.e2e.max * 1000;
    for (name, v, id_ms) in [
        ("p50", us.p50, r.e2e.p50),
        ("p95", us.p95, r.e2e.p95),
        ("p99", us.p99, r.e2e.p99),
    ] {
        assert!(v > 0, "e2e {name} is {v} µs: {}", r.line());
        // The stamp precedes the raw XADD and the read follows the filtered XADD, so each µs
        // figure is at least its id figure less the ids' 1 ms truncation.
        assert!(
            v + 1000 >= id_ms * 1000,
            "e2e {name} {v} µs < {id_ms} ms − 1 ms: {}",
            r.line()
        );
    }
    // Only the sender's and the reader's own delays make a µs figure larger than its id figure
    // (+1 ms). Those delays are the harness's, on cores it shares with the pipeline: a loaded
    // debug run put p99 above the id maximum (75.4 ms against 69 ms), so only the median is
    // held to the id maximum + 1 ms.
    assert!(
        us.p50 <= id_max_us + 1000,
        "e2e p50 {} µs > id max + 1 ms: {}",
        us.p50,
        r.line()
    );
    // The run deleted its streams, so runs repeated on one Redis do not fill it.
    let s = Streams::under(&prefix);
    let left: u64 = redis::cmd("EXISTS")
        .arg(&s.raw)
        .arg(&s.filtered)
        .arg(&s.deadletter)
        .query_async(&mut fx.connection().await)
        .await
        .unwrap();
    assert_eq!(left, 0, "the run left its streams behind");
}
