//! Helpers shared by the chaos scenarios (each scenario file is its own test binary and uses a
//! part of them).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use mt5_chaos::checker::Checker;
use mt5_chaos::harness::{hub_bin, HubProcess, Scenario};
use mt5_chaos::proxy::control::ProxiedLink;
use mt5_fixtures::{Appendfsync, Backend, RedisFixture, RedisOptions, SentinelFixture};

/// A `redis-server` process (fast SIGKILL and restart on the same data dir) with `appendfsync`.
pub async fn process_redis(appendfsync: Appendfsync) -> RedisFixture {
    RedisFixture::start_with(
        RedisOptions::default()
            .with_backend(Backend::Process)
            .with_appendfsync(appendfsync),
    )
    .await
    .expect("start redis-server")
}

/// The scenario `name` on `fx`, after checking the `mt5-hub` binary is built.
pub fn scenario(name: &str, fx: &RedisFixture) -> Scenario {
    if let Err(e) = hub_bin() {
        panic!("{e}");
    }
    Scenario::new(name, &fx.url(), &fx.prefix()).expect("scenario dir")
}

/// The scenario `name` whose services reach `fx` through `link` (the fault proxy), and a
/// checker that reads Redis directly, around the faults.
pub fn proxied_scenario(name: &str, fx: &RedisFixture, link: &ProxiedLink) -> (Scenario, Checker) {
    if let Err(e) = hub_bin() {
        panic!("{e}");
    }
    let sc = Scenario::new(name, &link.redis_url(), &fx.prefix()).expect("scenario dir");
    let checker = Checker::new(&fx.url(), sc.streams.clone());
    (sc, checker)
}

/// Starts one `filter` per name and waits until each serves HTTP.
pub async fn start_filters(sc: &Scenario, names: &[&str]) -> Vec<HubProcess> {
    let mut filters = Vec::new();
    for name in names {
        let f = sc.spawn_filter(name).await.expect("spawn a filter");
        ready(&f).await;
        filters.push(f);
    }
    filters
}

/// Waits until `p` serves HTTP (it has parsed its config and started).
pub async fn ready(p: &HubProcess) {
    p.http_addr(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{} did not start: {e}", p.label()));
}

/// The end of a run under load across a fault: the publisher finished cleanly within
/// `publisher_within`, the group drained, no filter exited across `fault`, then every filter
/// stopped.
pub async fn finish_load(
    publisher: &mut HubProcess,
    publisher_within: Duration,
    checker: &Checker,
    filters: &mut [HubProcess],
    fault: &str,
) {
    let status = publisher.wait_exit(publisher_within).await.unwrap();
    assert!(status.success(), "publisher: {}", publisher.stderr_tail(10));
    checker.wait_drained(Duration::from_secs(30)).await.unwrap();
    for f in filters.iter_mut() {
        let status = f.try_status().unwrap();
        assert!(
            status.is_none(),
            "{} exited across the {fault}: {}",
            f.label(),
            f.stderr_tail(10)
        );
    }
    stop_all(filters).await;
}

/// SIGTERMs every process, asserting nothing hangs.
pub async fn stop_all(procs: &mut [HubProcess]) {
    for p in procs.iter_mut() {
        let _ = p.sigterm_and_wait(Duration::from_secs(10)).await;
    }
}

/// The scenario `name` on the sentinel topology `fx`: every service in sentinel mode with
/// `bus.durability = durability` (the URL points at a closed port: sentinel mode ignores it),
/// and a checker that reads the sentinels' current master.
pub fn sentinel_scenario(name: &str, fx: &SentinelFixture, durability: &str) -> (Scenario, Checker) {
    if let Err(e) = hub_bin() {
        panic!("{e}");
    }
    let sentinels = fx.sentinel_addrs();
    let list = format!(
        "[{}]",
        sentinels.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",")
    );
    let sc = Scenario::new(name, "redis://127.0.0.1:1", &fx.servers()[0].prefix())
        .expect("scenario dir")
        .with_env("MT5_REDIS__MODE", "sentinel")
        .with_env("MT5_REDIS__SENTINEL_MASTER", fx.master_name())
        .with_env("MT5_REDIS__SENTINELS", list)
        .with_env("MT5_BUS__DURABILITY", durability);
    let checker = Checker::new(&fx.servers()[0].url(), sc.streams.clone()).with_sentinels(fx.master_name(), &sentinels);
    (sc, checker)
}
