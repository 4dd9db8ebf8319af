//! The API key never appears in errors, logs, metrics or `Debug` output.

use std::time::Duration;

use chrono::Utc;
use mt5_bus::Secret;
use mt5_fixtures::eodhd::{sample_articles_at, Fault};
use mt5_fixtures::MockEodhd;
use mt5_news::{EodhdClient, EodhdRetryConfig, Error, NewsMetrics, NewsQuery};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

use super::support::{config_for, LogCapture};

const KEY: &str = "sk-LIVE-4f9b2c7e1a0d";

fn rendered(e: &Error) -> String {
    let mut chain = format!("{e}\n{e:?}\n{e:#?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(&format!("\n{s}\n{s:?}"));
        source = s.source();
    }
    chain
}

/// Through every fault class (the HTML page even echoes the request URL with the key), plus a
/// refused connection and a wrong key, the key string appears in no error's `Display` or
/// `Debug` (source chain included), no captured log line of any level, no metric, and no
/// `Debug` of the client or its config.
#[tokio::test]
async fn the_key_appears_in_no_error_log_metric_or_debug_output() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockEodhd::start_with(KEY, sample_articles_at(Utc::now())).await;
    let registry = Registry::new();
    let metrics = NewsMetrics::register(&registry).unwrap();
    let cfg = config_for(&mock)
        .with_timeout_ms(150)
        .with_retry(EodhdRetryConfig::default().with_delays(5, 5, 0.0).with_max_attempts(2));
    assert_eq!(cfg.api_key.expose(), KEY);
    let client = EodhdClient::new(&cfg, metrics, CancellationToken::new()).unwrap();
    let q = NewsQuery::symbol("AAPL.US").with_limit(10);

    let mut errors = Vec::new();
    client.news_all(&q, 3).await.unwrap();
    for fault in [
        Fault::HtmlOk,
        Fault::InvalidJson,
        Fault::ServerError { status: 500 },
        Fault::RateLimited {
            retry_after_secs: Some(3600),
        },
        Fault::Forbidden,
        Fault::Slow {
            delay: Duration::from_millis(600),
        },
        Fault::QuotaExhausted,
    ] {
        mock.set_fault(fault);
        errors.push(client.news(&q).await.unwrap_err());
    }
    assert!(logs.lines().len() > 5, "the capture works");

    // A refused connection, and a wrong key (which EODHD answers with 401).
    let port = mt5_fixtures::free_port().unwrap();
    let refused = EodhdClient::new(
        &cfg.clone().with_base_url(format!("http://127.0.0.1:{port}")),
        NewsMetrics::unregistered(),
        CancellationToken::new(),
    )
    .unwrap();
    errors.push(refused.news(&q).await.unwrap_err());
    mock.clear_fault();
    let other = MockEodhd::start().await;
    let wrong = EodhdClient::new(
        &config_for(&other).with_api_key(Secret::new(KEY)),
        NewsMetrics::unregistered(),
        CancellationToken::new(),
    )
    .unwrap();
    errors.push(wrong.news(&q).await.unwrap_err());
    errors.push(wrong.news(&q).await.unwrap_err());

    let kinds: Vec<&str> = errors.iter().map(|e| e.outcome()).collect();
    assert_eq!(
        kinds,
        [
            "invalid_response",
            "invalid_response",
            "server_error",
            "rate_limited",
            "forbidden",
            "timeout",
            "quota_exhausted",
            "connect_error",
            "unauthorized",
            "unauthorized"
        ]
    );
    // The HTML page's echo of the URL was there, masked.
    assert!(
        rendered(&errors[0]).contains("api_token=***"),
        "{}",
        rendered(&errors[0])
    );
    for e in &errors {
        let text = rendered(e);
        assert!(!text.contains(KEY), "key in error: {text}");
    }
    for line in logs.lines() {
        assert!(!line.contains(KEY), "key in log line: {line}");
    }
    let mut exposition = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut exposition).unwrap();
    assert!(!String::from_utf8(exposition).unwrap().contains(KEY));
    for debug in [
        format!("{client:?}"),
        format!("{refused:?}"),
        format!("{wrong:?}"),
        format!("{cfg:?}"),
        format!("{:?}", client.config()),
    ] {
        assert!(!debug.contains(KEY), "key in Debug: {debug}");
    }
    // The key did travel: the mock saw it.
    assert!(mock.requests().iter().all(|r| r.param("api_token") == Some(KEY)));
}
