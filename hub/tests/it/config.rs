//! `config check`: exit 0 for a good config, 2 with the key named for a bad one, secrets
//! redacted in `--print`.

use crate::support::{run_with, sample_config};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The defaults and the sample file are valid: "config OK", exit 0.
#[tokio::test]
async fn config_check_accepts_the_defaults_and_the_sample() {
    let run = run_with(&[], &["config", "check"], None).await;
    assert_eq!(run.ok().trim(), "config OK");
    let sample = sample_config();
    let run = run_with(&[], &["--config", &sample, "config", "check"], None).await;
    assert_eq!(run.ok().trim(), "config OK");
    let run = run_with(&env(&[("MT5_CONFIG", &sample)]), &["config", "check"], None).await;
    assert_eq!(run.ok().trim(), "config OK");
}

/// An unknown key in the file or in `MT5_X__Y` exits 2 and names the key.
#[tokio::test]
async fn config_check_rejects_an_unknown_key_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[bus.consumer]\nblok_ms = 100\n").unwrap();
    let run = run_with(&[], &["--config", path.to_str().unwrap(), "config", "check"], None).await;
    run.code(2);
    assert!(run.stderr.contains("bus.consumer.blok_ms"), "{}", run.stderr);

    let run = run_with(&env(&[("MT5_BUS__NOPE", "1")]), &["config", "check"], None).await;
    run.code(2);
    assert!(run.stderr.contains("MT5_BUS__NOPE"), "{}", run.stderr);
}

/// Sentinel mode from env overrides: `config check` says how the master will be found; without
/// sentinels it exits 2 naming `redis.sentinels`; the sentinels' password only from its env var.
#[tokio::test]
async fn config_check_explains_sentinel_mode() {
    let sentinel = [
        ("MT5_REDIS__MODE", "sentinel"),
        ("MT5_REDIS__SENTINEL_MASTER", "m1"),
        (
            "MT5_REDIS__SENTINELS",
            r#"["10.0.0.1:26379","10.0.0.2:26379","10.0.0.3:26379"]"#,
        ),
        ("MT5_REDIS_SENTINEL_PASSWORD", "s3nt-pw"),
    ];
    let run = run_with(&env(&sentinel), &["config", "check"], None).await;
    let out = run.ok();
    assert!(out.starts_with("config OK"), "{out}");
    assert!(
        out.contains("sentinel mode") && out.contains("10.0.0.1:26379, 10.0.0.2:26379, 10.0.0.3:26379"),
        "{out}"
    );
    assert!(
        out.contains("MT5_REDIS_SENTINEL_PASSWORD") && !out.contains("s3nt-pw"),
        "{out}"
    );
    let run = run_with(&env(&sentinel[..1]), &["config", "check"], None).await;
    run.code(2);
    assert!(run.stderr.contains("redis.sentinels"), "{}", run.stderr);
    let run = run_with(
        &env(&[("MT5_REDIS__SENTINEL_PASSWORD", "s3nt-pw")]),
        &["config", "check"],
        None,
    )
    .await;
    run.code(2);
    assert!(
        run.stderr.contains("MT5_REDIS_SENTINEL_PASSWORD") && !run.stderr.contains("s3nt-pw"),
        "{}",
        run.stderr
    );
}

/// Out-of-range values, bad URLs and a missing file exit 2 naming the field or file.
#[tokio::test]
async fn config_check_rejects_invalid_values_with_exit_2() {
    let run = run_with(
        &env(&[("MT5_BUS__CONSUMER__BLOCK_MS", "0")]),
        &["config", "check"],
        None,
    )
    .await;
    run.code(2);
    assert!(run.stderr.contains("bus.consumer.block_ms"), "{}", run.stderr);
    let run = run_with(
        &env(&[("MT5_REDIS_URL", "redis-sentinel://h:26379/m")]),
        &["config", "check"],
        None,
    )
    .await;
    run.code(2);
    assert!(
        run.stderr.contains("redis.url") && run.stderr.contains("Sentinel"),
        "{}",
        run.stderr
    );
    let run = run_with(&[], &["--config", "/nonexistent/mt5.toml", "config", "check"], None).await;
    run.code(2);
    assert!(run.stderr.contains("/nonexistent/mt5.toml"), "{}", run.stderr);
}

/// `--print` shows the effective config (env overrides applied) and never a password.
#[tokio::test]
async fn config_check_print_shows_overrides_and_redacts_secrets() {
    let run = run_with(
        &env(&[
            ("MT5_REDIS_URL", "redis://ops:url-secret@db:6379/0"),
            ("MT5_REDIS_PASSWORD", "env-secret"),
            ("MT5_BUS__CONSUMER__BLOCK_MS", "500"),
            ("MT5_HTTP_ADDR", "0.0.0.0:9100"),
        ]),
        &["config", "check", "--print"],
        None,
    )
    .await;
    let out = run.ok();
    assert!(!out.contains("url-secret") && !out.contains("env-secret"), "{out}");
    assert!(out.contains("redis://ops:***@db:6379/0"), "{out}");
    assert!(out.contains("block_ms = 500"), "{out}");
    assert!(out.contains("addr = \"0.0.0.0:9100\""), "{out}");
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
}

/// clap's usage errors exit 2 too.
#[tokio::test]
async fn usage_errors_exit_2() {
    run_with(&[], &["streams", "nope"], None).await.code(2);
    run_with(&[], &["publish", "--stream", "s", "--rate", "5"], None)
        .await
        .code(2);
}

/// `config check --print` shows the news sections and never the EODHD key; the key in the file
/// is refused (exit 2) naming `EODHD_API_KEY`.
#[tokio::test]
async fn config_check_print_redacts_the_eodhd_key() {
    let run = run_with(
        &env(&[
            ("EODHD_API_KEY", "eodhd-s3cr3t-key"),
            ("MT5_EODHD_BASE_URL", "http://127.0.0.1:9999"),
        ]),
        &["config", "check", "--print"],
        None,
    )
    .await;
    let out = run.ok();
    assert!(!out.contains("eodhd-s3cr3t-key"), "{out}");
    assert!(
        out.contains("[news.eodhd]") && out.contains("api_key = \"***\""),
        "{out}"
    );
    assert!(out.contains("base_url = \"http://127.0.0.1:9999\""), "{out}");
    assert!(out.contains("[news.fetcher]") && out.contains("[news.filter]"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.toml");
    std::fs::write(&path, "[news.eodhd]\napi_key = \"f1le-s3cr3t\"\n").unwrap();
    let run = run_with(&[], &["--config", path.to_str().unwrap(), "config", "check"], None).await;
    run.code(2);
    assert!(
        run.stderr.contains("EODHD_API_KEY") && !run.stderr.contains("f1le-s3cr3t"),
        "{}",
        run.stderr
    );
}
