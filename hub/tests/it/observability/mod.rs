//! Observability, verified live: real Redis, `mt5-hub run` (fetcher + filter against the mock
//! EODHD) and `mt5-hub alert-relay`, Debian's redis_exporter, Prometheus scraping them every
//! second with the shipped alert rules (one copied with a short `for`), Alertmanager with 1 s
//! grouping, and a mock DingTalk that checks signatures. Also: `promtool check metrics` on each
//! service's live `/metrics`, and every Grafana panel query against the live Prometheus.

mod external;

use mt5_fixtures::redis;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mt5_fixtures::eodhd::MockEodhd;
use mt5_fixtures::redis::AsyncCommands as _;
use serde_json::Value;

use self::external::{binary, free_port, External};
use crate::alert_relay::{relay_env, SECRET, TOKEN, WEBHOOK_PATH};
use crate::support::{Hub, Service};
use mt5_fixtures::dingtalk::MockDingTalk;

/// The request that carried `message` was signed with the robot's secret (the mock refuses
/// unsigned ones, so this double-checks the recorded request itself).
fn assert_signed(dingtalk: &MockDingTalk, message: &Value) {
    let req = dingtalk
        .requests()
        .into_iter()
        .find(|r| &r.body == message)
        .expect("the message was received");
    assert!(req.signed, "unsigned: {:?}", req.params);
    dingtalk.verify_received(&req).unwrap();
}

/// The production stream and group names: the dashboards' queries select streams by them, and
/// this test's Redis is its own.
const RAW: &str = "mt5:events:news_raw";
const FILTERED: &str = "mt5:events:news_filtered";
const FILTER_GROUP: &str = "news-filter-group";

/// The repository root (hub/..).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `configs/prometheus/alerts.yml` with `RedisPELTooHigh` made testable: `pending > 5` for 2 s
/// instead of `> 100` for 5 m. Every other rule is loaded unchanged.
fn test_rules() -> String {
    let rules = std::fs::read_to_string(repo().join("configs/prometheus/alerts.yml")).unwrap();
    let start = rules.find("- alert: RedisPELTooHigh").expect("the rule exists");
    let end = start + rules[start..].find("annotations:").unwrap();
    let block = &rules[start..end];
    let patched = block
        .replace("(mt5_stream_group_pending) > 100", "(mt5_stream_group_pending) > 5")
        .replace("for: 5m", "for: 2s");
    assert_ne!(block, patched, "the rule copy changed");
    assert!(patched.contains("> 5") && patched.contains("for: 2s"), "{patched}");
    format!("{}{}{}", &rules[..start], patched, &rules[end..])
}

/// One Prometheus instant query; the `data.result` array.
async fn query(prom: &External, expr: &str) -> Vec<Value> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.base()))
        .query(&[("query", expr)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["status"], "success", "{expr}: {resp}");
    resp["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Pipes `text` into `promtool check metrics`; returns (success, output).
fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

/// Every `expr` of every panel of the shipped dashboards.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = repo().join("configs/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dash["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                out.push((
                    format!(
                        "{} / {}",
                        dash["title"].as_str().unwrap(),
                        panel["title"].as_str().unwrap()
                    ),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    assert!(out.len() >= 15, "both dashboards have their panels: {}", out.len());
    out
}

/// The whole alert path, live: a stalled consumer holds pending entries, Prometheus fires the
/// (short-`for`) RedisPELTooHigh, Alertmanager groups it and calls the relay, and a signed
/// DingTalk message with the alert's name arrives; after the entries are acknowledged a
/// resolved message follows. On the way: `promtool check metrics` passes on every service's
/// live scrape, and every Grafana panel query returns data from the live Prometheus.
#[tokio::test]
async fn alerts_flow_from_prometheus_through_alertmanager_to_dingtalk() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let mut conn = hub.conn().await;

    // A stalled consumer ("ghost", no heartbeat, never acknowledges) holds 10 entries.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(RAW)
        .arg(FILTER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    for i in 0..10 {
        let _: String = conn
            .xadd(RAW, "*", &[("type", "stalled.v1"), ("n", &i.to_string())])
            .await
            .unwrap();
    }
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(FILTER_GROUP)
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(RAW)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(read, redis::Value::Array(_)));
    let stalled_at = Instant::now();

    // The services: `run` (fetcher + filter; the ghost is not reclaimed within the test) and the relay.
    // The fixture's Redis with the production names (defaults), the mock EODHD, fast stats.
    let mut env: Vec<(String, String)> = vec![
        ("MT5_REDIS_URL".to_string(), hub.fx.url()),
        ("MT5_EODHD_BASE_URL".to_string(), mock.uri()),
        ("EODHD_API_KEY".to_string(), mock.key()),
        ("MT5_NEWS__FETCHER__LOOKBACK_DAYS".to_string(), "3".to_string()),
    ];
    env.extend(
        [
            ("MT5_HTTP__STATS_INTERVAL_MS", "200"),
            ("MT5_BUS__CONSUMER__HEARTBEAT_TTL_MS", "600000"),
            ("MT5_BUS__CONSUMER__HEARTBEAT_INTERVAL_MS", "1000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let run = Service::start(&env, &["run", "--consumer", "live"]).await;
    let dingtalk = MockDingTalk::start(TOKEN, Some(SECRET)).await;
    let relay = Service::start(&relay_env(&dingtalk, true), &["alert-relay"]).await;

    // redis_exporter with the stream checks on.
    let exporter_port = free_port();
    let mut exporter = External::start(
        "redis_exporter",
        &binary("prometheus-redis-exporter", "prometheus-redis-exporter"),
        &[
            format!("-redis.addr={}", hub.fx.url()),
            format!("-web.listen-address=127.0.0.1:{exporter_port}"),
            format!("-check-single-streams={RAW},{FILTERED},mt5:events:deadletter"),
        ],
        dir.path(),
        exporter_port,
    );
    exporter.wait_ready("/metrics", Duration::from_secs(20)).await;

    // Alertmanager: the shipped test config, pointed at the relay.
    let am_port = free_port();
    let am_template = std::fs::read_to_string(repo().join("configs/alertmanager/alertmanager.test.yml")).unwrap();
    let am_config = am_template.replace("RELAY_URL", &relay.url(WEBHOOK_PATH));
    assert_ne!(am_config, am_template, "the test config has a RELAY_URL placeholder");
    std::fs::write(dir.path().join("alertmanager.yml"), am_config).unwrap();
    let mut alertmanager = External::start(
        "alertmanager",
        &binary("prometheus-alertmanager", "prometheus-alertmanager"),
        &[
            format!("--config.file={}", dir.path().join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".to_string(),
        ],
        dir.path(),
        am_port,
    );
    alertmanager.wait_ready("/-/ready", Duration::from_secs(30)).await;

    // Prometheus: 1 s scrapes and evaluations, the test copy of the rules.
    std::fs::write(dir.path().join("alerts.yml"), test_rules()).unwrap();
    let prom_port = free_port();
    let prom_config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: mt5-hub
    static_configs:
      - targets: ["{run}"]
  - job_name: mt5-alert-relay
    static_configs:
      - targets: ["{relay}"]
  - job_name: redis
    static_configs:
      - targets: ["127.0.0.1:{exporter_port}"]
"#,
        run = run.addr,
        relay = relay.addr,
    );
    std::fs::write(dir.path().join("prometheus.yml"), prom_config).unwrap();
    let mut prometheus = External::start(
        "prometheus",
        &binary("prometheus", "prometheus"),
        &[
            format!("--config.file={}", dir.path().join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.path().join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        dir.path(),
        prom_port,
    );
    prometheus.wait_ready("/-/ready", Duration::from_secs(30)).await;

    // Firing: a signed DingTalk message naming the alert.
    let firing = dingtalk
        .wait_for(Duration::from_secs(60), |text| {
            text.contains("RedisPELTooHigh") && !text.to_lowercase().contains("resolved")
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no firing RedisPELTooHigh message at DingTalk within 60 s.\nprometheus:\n{}\nalertmanager:\n{}\nrelay:\n{}",
                prometheus.log_tail(),
                alertmanager.log_tail(),
                relay.stderr()
            )
        });
    let fire_delay = stalled_at.elapsed();
    assert_signed(&dingtalk, &firing);

    // Every service's live scrape passes promtool's lint.
    for (name, svc) in [("run", &run), ("alert-relay", &relay)] {
        let (status, body) = svc.get("/metrics").await;
        assert_eq!(status, 200);
        let (ok, msg) = promtool_check_metrics(&body);
        assert!(ok, "promtool check metrics on {name}: {msg}");
    }

    // Every dashboard query returns data from the live Prometheus (the rate windows need a few
    // scrapes; the fetcher, the filter and the relay have all produced samples by now).
    let queries = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for (panel, expr) in &queries {
            if query(&prometheus, expr).await.is_empty() {
                empty.push(format!("{panel}: {expr}"));
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));

    // Recovery: the stalled entries are acknowledged; a resolved message follows.
    let ids: Vec<String> = hub
        .entries(RAW)
        .await
        .into_iter()
        .filter(|(_, f)| f.get("type").map(String::as_str) == Some("stalled.v1"))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 10);
    let acked: u64 = redis::cmd("XACK")
        .arg(RAW)
        .arg(FILTER_GROUP)
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 10);
    let recovered_at = Instant::now();
    let resolved = dingtalk
        .wait_for(Duration::from_secs(60), |text| {
            text.contains("RedisPELTooHigh") && text.to_lowercase().contains("resolved")
        })
        .await
        .unwrap_or_else(|| panic!("no resolved message within 60 s; relay:\n{}", relay.stderr()));
    assert_signed(&dingtalk, &resolved);
    let resolve_delay = recovered_at.elapsed();
    println!(
        "alert delivery: RedisPELTooHigh firing at DingTalk {:.1} s after the consumer stalled \
         (rule `for` 2 s, scrape/eval 1 s, group_wait 1 s); resolved {:.1} s after recovery; \
         {} dashboard queries returned data",
        fire_delay.as_secs_f64(),
        resolve_delay.as_secs_f64(),
        queries.len()
    );

    let (code, _) = relay.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0);
    let (code, _) = run.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
}
