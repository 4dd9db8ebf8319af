//! The long-running commands (`filter`, `run`): their HTTP endpoints, readiness while Redis is
//! down, and a clean exit on SIGTERM.

use mt5_fixtures::redis;
use std::time::Duration;

use mt5_fixtures::eodhd::MockEodhd;

use crate::support::{run_with, Hub, Service};

/// `filter --consumer x` filters what the fetcher published, serves `/metrics` with the filter
/// and bus counters, `/healthz` and `/readyz`, and exits 0 on SIGTERM with its heartbeat gone.
#[tokio::test]
async fn filter_serves_metrics_health_and_readiness_and_exits_0_on_sigterm() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env = hub.news_env(&mock);
    run_with(&env, &["fetch", "--once"], None).await.ok();
    let published = hub.xlen(&hub.input).await;

    let svc = Service::start(&env, &["filter", "--consumer", "x"]).await;
    assert_eq!(svc.get("/healthz").await, (200, "ok\n".to_string()));
    let (_, ready) = svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200).await;
    assert!(ready.contains("ready"), "{ready}");
    let (_, metrics) = svc
        .wait_for("/metrics", Duration::from_secs(30), |_, body| {
            let processed: f64 = body
                .lines()
                .filter(|l| l.starts_with("mt5_events_processed_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            processed as u64 >= published && body.contains("mt5_news_filter_total{")
        })
        .await;
    assert!(metrics.contains("mt5_news_filter_total{decision="), "{metrics}");
    assert!(metrics.contains("mt5_stream_length{"), "{metrics}");
    assert!(
        hub.xlen(&hub.filtered()).await > 0,
        "some sample news pass the default filter: {metrics}"
    );

    let (code, _) = svc.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
    let heartbeat = format!("mt5:heartbeat:{}:{}:x", hub.input, crate::support::GROUP);
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&heartbeat)
        .query_async(&mut hub.conn().await)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the heartbeat is deleted on a graceful exit");
}

/// `/readyz` answers 503 with a reason while Redis is down (`/healthz` stays 200) and 200
/// again once it is back; the service neither exits nor needs a restart.
#[tokio::test]
async fn readyz_is_503_while_redis_is_down() {
    let mut hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env = hub.news_env(&mock);
    let svc = Service::start(&env, &["filter"]).await;
    svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200).await;

    hub.fx.stop().await.unwrap();
    let (_, reason) = svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 503).await;
    assert!(reason.contains("unreachable"), "{reason}");
    assert_eq!(svc.get("/healthz").await.0, 200);
    let (status, _) = svc.get("/metrics").await;
    assert_eq!(status, 200, "a scrape does not fail while Redis is down");

    hub.fx.restart().await.unwrap();
    svc.wait_for("/readyz", Duration::from_secs(30), |s, _| s == 200).await;
    let (code, _) = svc.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
}

/// `/readyz` is 503 naming the group while a configured group does not exist.
#[tokio::test]
async fn readyz_names_a_missing_group() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let mut env = hub.news_env(&mock);
    let missing = format!("{}:nogroup", hub.fx.prefix());
    env.retain(|(k, _)| k != "MT5_BUS__GROUPS");
    env.push((
        "MT5_BUS__GROUPS".to_string(),
        format!(
            r#"[{{stream = "{}", group = "g"}}, {{stream = "{missing}", group = "ghost"}}]"#,
            hub.input
        ),
    ));
    let svc = Service::start(&env, &["filter"]).await;
    // The consumer creates its own group `g` when it connects; `ghost` never appears.
    svc.wait_for("/readyz", Duration::from_secs(20), |s, body| {
        assert_eq!(s, 503, "{body}");
        body.contains("ghost")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(svc.get("/readyz").await.0, 503);
    let (code, _) = svc.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
}

/// `run` fetches, filters and serves HTTP in one process, and exits 0 on SIGTERM.
#[tokio::test]
async fn run_fetches_and_filters_in_one_process_and_exits_0_on_sigterm() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env = hub.news_env(&mock);
    let svc = Service::start(&env, &["run", "--consumer", "all-in-one"]).await;
    svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200).await;
    let (_, metrics) = svc
        .wait_for("/metrics", Duration::from_secs(30), |_, body| {
            body.contains("mt5_news_filter_total{") && body.contains("mt5_events_published_total{")
        })
        .await;
    assert!(metrics.contains("mt5_news_fetch_total{"), "{metrics}");
    assert!(hub.xlen(&hub.input).await > 0);
    let (code, _) = svc.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
}
