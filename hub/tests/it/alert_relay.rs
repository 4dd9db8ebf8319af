//! `alert-relay`: Alertmanager webhooks to a mock DingTalk robot that checks the token and the
//! signature. No Redis is involved: the relay's `/readyz` does not depend on it.

use std::time::Duration;

use mt5_fixtures::dingtalk::{MockDingTalk, ERRCODE_RATE_LIMITED, ERRCODE_SIGN};
use serde_json::{json, Value};

use crate::support::{closed_port, run_with, Service};

/// The webhook path Alertmanager posts to.
pub(crate) const WEBHOOK_PATH: &str = "/alertmanager";
/// The access token the tests configure.
pub(crate) const TOKEN: &str = "tok-5d1f0a9e77c3";
/// The signing secret the tests configure.
pub(crate) const SECRET: &str = "SEC7e2b9c4d1f0a58e6b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0";

/// Env for `alert-relay` against `mock` (with the secret when `signed`), with fast retries and
/// a Redis URL nothing listens on (the relay must not need it).
pub(crate) fn relay_env(mock: &MockDingTalk, signed: bool) -> Vec<(String, String)> {
    let mut env = vec![
        ("MT5_DINGTALK_URL".to_string(), mock.url()),
        ("DINGTALK_ACCESS_TOKEN".to_string(), TOKEN.to_string()),
        (
            "MT5_REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{}", closed_port()),
        ),
        ("MT5_ALERTS__RETRY_INITIAL_MS".to_string(), "20".to_string()),
        ("MT5_ALERTS__RETRY_MAX_MS".to_string(), "50".to_string()),
        ("MT5_ALERTS__MAX_ATTEMPTS".to_string(), "3".to_string()),
        ("MT5_ALERTS__DELIVERY_TIMEOUT_MS".to_string(), "10000".to_string()),
    ];
    if signed {
        env.push(("DINGTALK_SECRET".to_string(), SECRET.to_string()));
    }
    env
}

/// A version 4 payload for one alert.
fn payload(status: &str, alertname: &str, severity: &str) -> Value {
    let ends_at = if status == "resolved" {
        "2026-01-02T04:00:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{alertname}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": format!("dingtalk-{severity}"),
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname, "severity": severity, "stream": "mt5:events:news_raw"},
        "commonAnnotations": {"summary": "Pending entries above 100"},
        "externalURL": "http://alertmanager.test:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "severity": severity, "stream": "mt5:events:news_raw"},
            "annotations": {"summary": "Pending entries above 100", "description": "250 pending entries."},
            "startsAt": "2026-01-02T03:04:05Z",
            "endsAt": ends_at,
            "generatorURL": "http://prometheus.test:9090/graph?g0.expr=x",
            "fingerprint": "c0ffee0123456789"
        }]
    })
}

/// POSTs `body` to the webhook; status and JSON answer.
async fn post(svc: &Service, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(svc.url(WEBHOOK_PATH))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {WEBHOOK_PATH}: {e}\nstderr:\n{}", svc.stderr()));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// One `mt5_alerts_relayed_total` sample.
fn relayed(metrics: &str, outcome: &str) -> u64 {
    let prefix = format!("mt5_alerts_relayed_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}in:\n{metrics}"))
}

/// A firing and then a resolved notification each arrive as one signed markdown message
/// naming the alert, with the critical @-mention; the relay answers 200 and counts them;
/// `/readyz` is ready without any Redis.
#[tokio::test]
async fn firing_then_resolved_arrive_signed_with_the_alert_name() {
    let mock = MockDingTalk::start(TOKEN, Some(SECRET)).await;
    let mut env = relay_env(&mock, true);
    env.push((
        "MT5_ALERTS__MENTIONS__CRITICAL__MOBILES".to_string(),
        r#"["13800000000"]"#.to_string(),
    ));
    let svc = Service::start(&env, &["alert-relay"]).await;
    assert_eq!(svc.get("/readyz").await.0, 200, "ready without Redis");
    assert_eq!(svc.get("/healthz").await.0, 200);

    let (status, answer) = post(&svc, payload("firing", "RedisPELTooHigh", "critical").to_string()).await;
    assert_eq!(status, 200, "{answer}\nstderr:\n{}", svc.stderr());
    assert_eq!(answer["status"], "delivered");
    let firing = mock
        .wait_for(Duration::from_secs(5), |t| {
            t.contains("RedisPELTooHigh") && t.contains("FIRING")
        })
        .await
        .expect("the firing message arrives");
    assert_eq!(firing["msgtype"], "markdown");
    assert_eq!(firing["markdown"]["title"], "[FIRING:1] RedisPELTooHigh");
    let text = firing["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("Pending entries above 100") && text.contains("@13800000000"),
        "{text}"
    );
    assert!(
        text.contains("http://prometheus.test:9090/graph") && text.contains("http://alertmanager.test:9093"),
        "{text}"
    );
    assert_eq!(firing["at"]["atMobiles"], json!(["13800000000"]));

    let (status, answer) = post(&svc, payload("resolved", "RedisPELTooHigh", "critical").to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let resolved = mock
        .wait_for(Duration::from_secs(5), |t| {
            t.contains("RedisPELTooHigh") && t.contains("RESOLVED")
        })
        .await
        .expect("the resolved message arrives");
    assert_eq!(
        resolved["at"]["atMobiles"],
        json!([]),
        "resolved notifications do not page"
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "one message per notification");
    for r in &requests {
        assert!(r.signed, "{:?}", r.params.keys());
        mock.verify_received(r).unwrap();
        assert_eq!(r.params.get("access_token").map(String::as_str), Some(TOKEN));
    }
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(relayed(&metrics, "sent"), 2);
    assert_eq!(relayed(&metrics, "failed"), 0);
    let (code, _) = svc.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0);
}

/// DingTalk's `errcode != 0` is a failure: an unsigned relay against a signing robot gets
/// 310000 and answers 5xx (so Alertmanager retries) counting `failed`; a throttled robot
/// (130101) is not retried into the throttle: 5xx at once, and the next notification waits
/// for the pause (`throttle_pause_ms`); a 503 once is retried and delivered.
#[tokio::test]
async fn dingtalk_errors_are_answered_5xx_and_counted_as_failures() {
    let mock = MockDingTalk::start(TOKEN, Some(SECRET)).await;
    let svc = Service::start(&relay_env(&mock, false), &["alert-relay"]).await;
    let (status, answer) = post(&svc, payload("firing", "NewsAPIFailureRate", "warning").to_string()).await;
    assert_eq!(status, 502, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(&ERRCODE_SIGN.to_string()),
        "{answer}"
    );
    assert_eq!(mock.requests().len(), 1, "a refusal is not retried by the relay");
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(relayed(&metrics, "failed"), 1);
    svc.terminate(Duration::from_secs(10)).await;

    let mock = MockDingTalk::start(TOKEN, Some(SECRET)).await;
    let pause = Duration::from_millis(1500);
    let mut env = relay_env(&mock, true);
    env.push((
        "MT5_ALERTS__THROTTLE_PAUSE_MS".to_string(),
        pause.as_millis().to_string(),
    ));
    let svc = Service::start(&env, &["alert-relay"]).await;
    mock.errcode_next(1, ERRCODE_RATE_LIMITED);
    let (status, answer) = post(&svc, payload("firing", "NewsAPIFailureRate", "warning").to_string()).await;
    assert!((500..600).contains(&status), "{status} {answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains(&ERRCODE_RATE_LIMITED.to_string()),
        "{answer}"
    );
    assert_eq!(mock.requests().len(), 1, "a throttled robot is not retried at once");
    let throttled_at = mock.requests()[0].received_at;
    mock.fail_next(1, 503);
    let (status, answer) = post(&svc, payload("firing", "NewsAPIFailureRate", "warning").to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let requests = mock.requests();
    assert_eq!(requests.len(), 3, "after the pause: a 503, then delivered");
    let waited = requests[1].received_at.duration_since(throttled_at);
    assert!(
        waited >= pause - Duration::from_millis(100),
        "sent {waited:?} after the throttle"
    );
    assert_eq!(mock.messages().len(), 1);
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(relayed(&metrics, "failed"), 1);
    assert_eq!(relayed(&metrics, "retried"), 1);
    assert_eq!(relayed(&metrics, "sent"), 1);
    let (code, _) = svc.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, 0);
}

/// Neither the token nor the secret appears in the logs, at debug level, through deliveries,
/// refusals and connection errors (whose reqwest errors would carry the URL).
#[tokio::test]
async fn the_token_and_secret_never_reach_stderr() {
    let mock = MockDingTalk::start(TOKEN, Some(SECRET)).await;
    let mut env = relay_env(&mock, true);
    env.push(("MT5_LOG".to_string(), "debug".to_string()));
    let svc = Service::start(&env, &["alert-relay"]).await;
    assert_eq!(post(&svc, payload("firing", "A", "critical").to_string()).await.0, 200);
    mock.set_errcode(ERRCODE_SIGN);
    assert_eq!(post(&svc, payload("firing", "B", "critical").to_string()).await.0, 502);
    let (_, metrics) = svc.get("/metrics").await;
    let first_logs = svc.stderr();
    svc.terminate(Duration::from_secs(10)).await;

    // Nothing listens at the robot's URL: connection errors, retried.
    let mut env = relay_env(&mock, true);
    env.retain(|(k, _)| k != "MT5_DINGTALK_URL");
    env.push((
        "MT5_DINGTALK_URL".to_string(),
        format!("http://127.0.0.1:{}/robot/send", closed_port()),
    ));
    env.push(("MT5_LOG".to_string(), "debug".to_string()));
    let down = Service::start(&env, &["alert-relay"]).await;
    let (status, answer) = post(&down, payload("firing", "C", "critical").to_string()).await;
    assert_eq!(status, 502, "{answer}");
    let logs = format!("{first_logs}\n{}\n{answer}\n{metrics}", down.stderr());
    down.terminate(Duration::from_secs(10)).await;
    assert!(
        logs.contains("Delivered to DingTalk"),
        "debug logs were written:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "the token leaked:\n{logs}");
    assert!(!logs.contains(SECRET), "the secret leaked:\n{logs}");
    assert!(!logs.contains("access_token="), "a send URL was logged:\n{logs}");
}

/// A body that is not a version 4 payload gets 400 with a JSON error, is counted `invalid`, and
/// sends nothing.
#[tokio::test]
async fn an_unparsable_payload_is_answered_400_with_a_json_error() {
    let mock = MockDingTalk::start(TOKEN, None).await;
    let svc = Service::start(&relay_env(&mock, false), &["alert-relay"]).await;
    let (status, answer) = post(&svc, "{not json").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["status"], "error");
    assert!(
        answer["error"].as_str().unwrap().contains("invalid webhook payload"),
        "{answer}"
    );
    let mut v3 = payload("firing", "A", "info");
    v3["version"] = json!("3");
    let (status, answer) = post(&svc, v3.to_string()).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("version"), "{answer}");
    // Unsigned works against a robot without a secret.
    assert_eq!(post(&svc, payload("firing", "A", "info").to_string()).await.0, 200);
    let (_, metrics) = svc.get("/metrics").await;
    assert_eq!(relayed(&metrics, "invalid"), 2);
    assert_eq!(mock.requests().len(), 1);
    svc.terminate(Duration::from_secs(10)).await;
}

/// Without `DINGTALK_ACCESS_TOKEN` the relay refuses to start (exit 2), naming the variable;
/// the token in the config file is refused without being echoed.
#[tokio::test]
async fn the_relay_needs_the_token_from_its_env() {
    let run = run_with(&[], &["alert-relay"], None).await;
    run.code(2);
    assert!(run.stderr.contains("DINGTALK_ACCESS_TOKEN"), "{}", run.stderr);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, "[alerts]\naccess_token = \"f1le-t0k3n\"\n").unwrap();
    let run = run_with(&[], &["--config", path.to_str().unwrap(), "alert-relay"], None).await;
    run.code(2);
    assert!(
        run.stderr.contains("DINGTALK_ACCESS_TOKEN") && !run.stderr.contains("f1le-t0k3n"),
        "{}",
        run.stderr
    );
}
