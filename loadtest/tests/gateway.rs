//! The goose run against a real `mt5-hub gateway` on a real Redis: a small load (CI-sized),
//! checked for loss, duplicates and order; its figures go to `target/loadtest/report.md`.

use std::time::Duration;

use mt5_chaos::harness::{hub_bin, Scenario};
use mt5_fixtures::{Appendfsync, RedisFixture, RedisOptions};
use mt5_loadtest::gateway::{self, Load, Target};
use mt5_loadtest::report;

/// The gateway's token in this test.
const TOKEN: &str = "loadtest-token-7f3a";

/// 12 goose users (6 publishers, 6 terminals) for 6 s against a gateway on Redis with
/// `appendfsync always`: every acknowledged POST reaches every terminal once and in order, and
/// no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_terminal_gets_every_acknowledged_post_once_in_order() {
    if let Err(e) = hub_bin() {
        panic!("{e}");
    }
    let fx = RedisFixture::start_with(RedisOptions::default().with_appendfsync(Appendfsync::Always))
        .await
        .expect("a Redis fixture");
    let stream = format!("{}:gw", fx.prefix());
    let sc = Scenario::new("loadtest-gateway", &fx.url(), &fx.prefix()).expect("scenario dir");
    let lists = format!(r#"["{stream}"]"#);
    let mut gw = sc
        .spawn(
            "gateway",
            &["gateway".to_string()],
            &[
                ("MT5_GATEWAY_TOKEN", TOKEN),
                ("MT5_HTTP__GATEWAY__READ_STREAMS", &lists),
                ("MT5_HTTP__GATEWAY__WRITE_STREAMS", &lists),
                ("MT5_LOG", "warn"),
            ],
        )
        .await
        .expect("spawn the gateway");
    let addr = gw.http_addr(Duration::from_secs(20)).await.expect("the gateway serves");
    let load = Load {
        users: 12,
        run_time_s: 6,
        increase_rate: 12.0,
        ..Load::default()
    };
    let target = Target {
        url: format!("http://{addr}"),
        token: TOKEN.to_string(),
        stream,
    };
    let r = gateway::run(target, &load).await.expect("the goose run");
    eprintln!("loadtest gateway: {}", r.line());
    report::record(&report::gateway_row("gateway 12 users, 6 s (cargo test)", &r)).unwrap();
    let _ = gw.sigterm_and_wait(Duration::from_secs(15)).await;

    assert!(
        r.posts.count > 100 && r.published > 100,
        "too little load to judge: {}",
        r.line()
    );
    assert!(r.terminals >= 2, "{}", r.line());
    assert_eq!(r.posts.failed + r.polls.failed, 0, "{}", r.line());
    assert_eq!(r.published as usize, r.posts.count, "{}", r.line());
    assert_eq!((r.lost, r.duplicates, r.out_of_order), (0, 0, 0), "{}", r.line());
    assert_eq!(r.delivered, r.published * r.terminals as u64, "{}", r.line());
}
