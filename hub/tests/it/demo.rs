//! `mt5-hub demo`: the embedded default run, on its own temporary Redis or on a configured one.

use mt5_fixtures::redis;
use std::time::Duration;

use mt5_fixtures::{docker_opted_out, redis_image, RedisFixture};
use serde_json::Value;

use crate::support::{command, Run};

/// Runs `mt5-hub demo <args>` with a clean `MT5_*` environment plus `env`, no EODHD key (so
/// the bundled samples are served) and no config file.
async fn demo(env: &[(String, String)], args: &[&str]) -> Run {
    let mut argv = vec!["demo"];
    argv.extend_from_slice(args);
    let mut cmd = command(env, &argv);
    cmd.env_remove("EODHD_API_KEY").env_remove("MT5_CONFIG");
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the demo finishes within 90 s")
        .expect("the mt5-hub binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}

/// Whether something accepts connections on the loopback port.
fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// The port of `redis://127.0.0.1:<port>` in `text`.
fn local_port(text: &str) -> u16 {
    let rest = text
        .split("redis://127.0.0.1:")
        .nth(1)
        .unwrap_or_else(|| panic!("no local Redis URL in:\n{text}"));
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// With no Redis configured the demo starts its own `redis-server`, runs the sample news
/// through fetch and filter, prints the table and the summary, exits 0, and leaves no Redis
/// behind.
#[tokio::test]
async fn demo_runs_on_a_temporary_redis_and_removes_it() {
    let run = demo(&[], &[]).await;
    let out = run.ok();
    for needle in [
        "TICKER",
        "SENTIMENT",
        "TITLE",
        "REASON",
        "Summary",
        "fetched",
        "published",
        "passed",
        "rejected",
        "dead-lettered",
        "e2e latency",
        "p95",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }
    assert!(out
        .lines()
        .any(|l| l.starts_with("AAPL.US  +") || l.starts_with("AAPL.US  -")));
    let port = local_port(out);
    assert!(!port_open(port), "the demo's redis-server on {port} is still running");
    assert!(run.stderr.contains("fetched"), "progress on stderr:\n{}", run.stderr);
}

/// The JSON report's counts add up: everything fetched was published (a fresh Redis has no
/// duplicates), some news passed, every filtered item has a latency.
#[tokio::test]
async fn demo_json_counts_add_up() {
    let run = demo(&[], &["--json"]).await;
    let v = run.json();
    assert_eq!(v["redis"], "local");
    assert_eq!(v["source"], "sample");
    let (fetched, published, duplicates) = (count(&v, "fetched"), count(&v, "published"), count(&v, "duplicates"));
    assert!(fetched > 0);
    assert_eq!(duplicates, 0);
    assert_eq!(published, fetched - duplicates);
    let passed = count(&v, "passed");
    assert!(passed > 0, "{v}");
    assert_eq!(
        passed + count(&v, "rejected") + count(&v, "dead_lettered"),
        published,
        "{v}"
    );
    let news = v["news"].as_array().unwrap();
    assert_eq!(news.len() as u64, passed);
    assert!(news
        .iter()
        .all(|n| n["latency_ms"].is_u64() && !n["reason"].as_str().unwrap().is_empty()));
    assert!(v["latency_ms"]["p95"].is_u64());
    let port = local_port(v["redis_url"].as_str().unwrap());
    assert!(!port_open(port), "the demo's redis-server on {port} is still running");
}

/// With `MT5_REDIS_URL` set the demo uses that Redis (its configured streams), and a second run
/// publishes nothing new: the fetcher's idempotency keys catch every article.
#[tokio::test]
async fn demo_uses_the_configured_redis() {
    let fx = RedisFixture::start()
        .await
        .unwrap_or_else(|e| panic!("a Redis fixture is needed: {e}"));
    let env = vec![("MT5_REDIS_URL".to_string(), fx.url())];
    let first = demo(&env, &["--json"]).await;
    let v = first.json();
    assert_eq!(v["redis"], "configured");
    assert!(first.stderr.contains("Using the configured Redis"), "{}", first.stderr);
    let published = count(&v, "published");
    assert!(published > 0);
    let mut conn = fx.connection().await;
    let raw: u64 = redis::cmd("XLEN")
        .arg("mt5:events:news_raw")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw, published);
    let filtered: u64 = redis::cmd("XLEN")
        .arg("mt5:events:news_filtered")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(filtered, count(&v, "passed"));

    let second = demo(&env, &["--json"]).await.json();
    assert_eq!(count(&second, "published"), 0, "{second}");
    assert_eq!(count(&second, "duplicates"), count(&second, "fetched"));
    assert_eq!(count(&second, "passed"), 0);
}

/// With `MT5_REDIS_SERVER=none` (no `redis-server`) and Docker answering, the demo runs Redis in
/// a container of `MT5_REDIS_IMAGE`, says so on stderr, reports `"redis": "container"`, and the
/// container is gone when it exits. On a machine with `MT5_NO_DOCKER=1` it passes without
/// running.
#[tokio::test]
async fn demo_runs_redis_in_docker_without_redis_server() {
    if docker_opted_out() {
        eprintln!("MT5_NO_DOCKER=1: the demo's Docker path is not tested here");
        return;
    }
    let env = vec![
        ("MT5_REDIS_SERVER".to_string(), "none".to_string()),
        ("MT5_REDIS_IMAGE".to_string(), redis_image()),
    ];
    let run = demo(&env, &["--json"]).await;
    assert!(
        run.code == 0,
        "the demo failed on the Docker path (image {}; build one with ci/redis-image.sh and set MT5_REDIS_IMAGE): {}",
        redis_image(),
        run.stderr
    );
    let v = run.json();
    assert_eq!(v["redis"], "container");
    assert!(count(&v, "passed") > 0, "{v}");
    assert!(
        run.stderr.contains("MT5_REDIS_SERVER=none") && run.stderr.contains("with Docker"),
        "{}",
        run.stderr
    );
    let port = local_port(v["redis_url"].as_str().unwrap());
    assert!(
        !port_open(port),
        "the demo's Redis container on {port} is still running"
    );
}

/// With neither a `redis-server` (`MT5_REDIS_SERVER=none`) nor a docker CLI (an empty `PATH`),
/// the demo exits 1 saying what to install, or which Redis to point it at.
#[tokio::test]
async fn demo_without_redis_server_or_docker_says_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let env = vec![
        ("MT5_REDIS_SERVER".to_string(), "none".to_string()),
        ("PATH".to_string(), empty.path().display().to_string()),
    ];
    let run = demo(&env, &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    for needle in [
        "redis-server",
        "docker CLI is not installed",
        "apt-get install redis-server",
        "MT5_REDIS_URL",
    ] {
        assert!(run.stderr.contains(needle), "{needle:?} missing from:\n{}", run.stderr);
    }
}
