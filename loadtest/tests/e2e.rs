//! The news pipeline end to end under a steady load (CI-sized): real `mt5-hub publish` and two
//! `filter` processes on Redis with `appendfsync always`; checked for loss and duplicates, its
//! figures (rates, e2e latency) printed and written to `target/loadtest/report.md`.

use mt5_chaos::harness::{hub_bin, Streams};
use mt5_fixtures::{Appendfsync, RedisFixture, RedisOptions};
use mt5_loadtest::e2e::{self, Load};
use mt5_loadtest::report;

/// 1000 events/s for 6 s through two filters: nothing lost, nothing duplicated, nothing left
/// pending, and the run's streams deleted afterwards. The latency is reported, not asserted (a
/// shared machine's figure).
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
