//! Every EODHD fault class and what the client does with it.

use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use mt5_bus::Secret;
use mt5_fixtures::eodhd::Fault;
use mt5_fixtures::MockEodhd;
use mt5_news::{
    CircuitBreakerConfig, CircuitState, EodhdClient, EodhdConfig, EodhdRetryConfig, Error, NewsMetrics, NewsQuery,
    QuotaConfig,
};
use tokio_util::sync::CancellationToken;

use super::support::{client, config_for, LogCapture};

fn aapl() -> NewsQuery {
    NewsQuery::symbol("AAPL.US").with_limit(10)
}

/// A rejected key (401 `Unauthenticated`) is permanent: one request, no retries, one error log
/// line; later calls fail fast without a request until the failure is cleared.
#[tokio::test]
async fn bad_key_is_not_retried_and_later_calls_fail_fast() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockEodhd::start().await;
    let cfg = config_for(&mock).with_api_key(Secret::new("wrong-key-0000"));
    let c = client(&cfg);
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { status: 401, .. }), "{err:?}");
    assert!(!err.is_transient() && err.is_auth());
    assert_eq!(mock.request_count(), 1);
    for _ in 0..3 {
        let again = c.news_all(&aapl(), 5).await.unwrap_err();
        assert!(matches!(again, Error::Unauthorized { .. }), "{again:?}");
    }
    assert_eq!(mock.request_count(), 1, "no retry storm");
    assert!(c.auth_failed());
    assert_eq!(c.metrics().count("unauthorized"), 4);
    let errors: Vec<String> = logs
        .matching("rejected the API key")
        .into_iter()
        .filter(|l| l.starts_with("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once: {:#?}", logs.lines());

    c.clear_auth_failure();
    c.news(&aapl()).await.unwrap_err();
    assert_eq!(mock.request_count(), 2, "cleared: asks again");
}

/// The `Unauthenticated` fault with the right key is the same permanent class.
#[tokio::test]
async fn unauthenticated_fault_is_permanent() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::Unauthenticated);
    let c = client(&config_for(&mock));
    assert!(c.news(&aapl()).await.unwrap_err().is_auth());
    mock.clear_fault();
    assert!(c.news(&aapl()).await.unwrap_err().is_auth(), "remembered");
    assert_eq!(mock.request_count(), 1);
}

/// A 403 (plan or ticker not allowed) is permanent for the query but not remembered: the next
/// query is sent.
#[tokio::test]
async fn forbidden_is_permanent_but_not_remembered() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(Fault::Forbidden, 1);
    let c = client(&config_for(&mock));
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }) && !err.is_transient(), "{err:?}");
    assert_eq!(mock.request_count(), 1);
    c.news(&aapl()).await.unwrap();
    assert!(!c.auth_failed());
}

/// A 402 pauses fetching until the next 00:00 GMT: the error and `paused_until()` carry the
/// reset, later calls send nothing, and the quota gauge reads 0.
#[tokio::test]
async fn quota_exhausted_pauses_until_midnight_gmt() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::QuotaExhausted);
    let c = client(&config_for(&mock));
    let before = Utc::now();
    let err = c.news(&aapl()).await.unwrap_err();
    let resets_at = err.paused_until().expect("a reset time");
    assert!(
        resets_at > before && resets_at - before <= chrono::Duration::hours(24),
        "{resets_at}"
    );
    assert_eq!((resets_at.hour(), resets_at.minute(), resets_at.second()), (0, 0, 0));
    assert_eq!(c.paused_until(), Some(resets_at));
    assert_eq!(c.metrics().quota_remaining.get(), 0);
    assert_eq!(mock.request_count(), 1, "a 402 is not retried");

    mock.clear_fault();
    let again = c.news_all(&aapl(), 3).await.unwrap_err();
    assert_eq!(again.paused_until(), Some(resets_at));
    assert_eq!(mock.request_count(), 1, "paused: nothing sent");
    assert_eq!(c.metrics().count("quota_exhausted"), 2);
    let errors: Vec<String> = logs
        .matching("quota is exhausted")
        .into_iter()
        .filter(|l| l.starts_with("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "logged once: {:#?}", logs.lines());
}

/// The server's quota running out mid-day: the `X-RateLimit-Remaining` header feeds the gauge,
/// then the 402 pauses.
#[tokio::test]
async fn spent_server_quota_is_read_from_headers_then_pauses() {
    let mock = MockEodhd::start().await;
    mock.set_quota(100_000, 25);
    let c = client(&config_for(&mock));
    assert_eq!(c.quota_limit(), None, "no reply yet");
    c.news(&aapl()).await.unwrap();
    assert_eq!(c.quota_limit(), Some(100_000));
    assert_eq!(c.quota_remaining(), 15);
    assert_eq!(c.metrics().quota_remaining.get(), 15);
    c.news(&aapl()).await.unwrap();
    assert_eq!(c.quota_remaining(), 5);
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::QuotaExhausted { .. }), "{err:?}");
    assert!(c.paused_until().is_some());
    assert_eq!(mock.request_count(), 3);
}

/// The local daily budget (`daily_quota`, `calls_per_request` per request) pauses fetching
/// before the server has to refuse.
#[tokio::test]
async fn local_budget_pauses_before_the_server_refuses() {
    let mock = MockEodhd::start().await;
    let quota = QuotaConfig::default().with_daily_quota(20).with_calls_per_request(10);
    let c = client(&config_for(&mock).with_quota(quota));
    c.news(&aapl()).await.unwrap();
    c.news(&aapl()).await.unwrap();
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(err.paused_until().is_some(), "{err:?}");
    assert_eq!(mock.request_count(), 2);
}

/// A 429 with `Retry-After: 1` waits at least that second, then the retry succeeds.
#[tokio::test]
async fn rate_limited_with_retry_after_waits_then_succeeds() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(
        Fault::RateLimited {
            retry_after_secs: Some(1),
        },
        1,
    );
    let c = client(&config_for(&mock));
    let started = Instant::now();
    let page = c.news(&aapl()).await.unwrap();
    assert_eq!(page.received, 10);
    assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
    let reqs = mock.requests();
    assert_eq!(reqs.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
    assert!(reqs[1].received_at - reqs[0].received_at >= Duration::from_millis(990));
    assert_eq!((c.metrics().count("rate_limited"), c.metrics().count("ok")), (1, 1));
}

/// A `Retry-After` exactly at `max_retry_after_ms` is still waited for: only a longer one is
/// given up on.
#[tokio::test]
async fn a_retry_after_at_the_cap_is_waited_for() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(
        Fault::RateLimited {
            retry_after_secs: Some(1),
        },
        1,
    );
    let cfg = config_for(&mock);
    let retry = cfg.retry.clone().with_max_retry_after_ms(1_000);
    let c = client(&cfg.with_retry(retry));
    let page = c.news(&aapl()).await.unwrap();
    assert_eq!(page.received, 10);
    assert_eq!(mock.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [429, 200]);
}

/// A 429 without `Retry-After` backs off and retries; a `Retry-After` beyond the cap is
/// returned at once as a transient `RateLimited`.
#[tokio::test]
async fn rate_limited_without_or_beyond_the_cap() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(Fault::RateLimited { retry_after_secs: None }, 2);
    let c = client(&config_for(&mock));
    c.news(&aapl()).await.unwrap();
    assert_eq!(mock.request_count(), 3);

    mock.set_fault(Fault::RateLimited {
        retry_after_secs: Some(120),
    });
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(120)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(mock.request_count(), 4);
    assert_eq!(
        c.circuit_state(),
        CircuitState::Closed,
        "429 means the upstream is alive"
    );
}

/// A burst of three 500s is retried with backoff and the fourth attempt succeeds.
#[tokio::test]
async fn server_error_burst_is_retried_then_succeeds() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(Fault::ServerError { status: 500 }, 3);
    let c = client(&config_for(&mock));
    let started = Instant::now();
    let page = c.news(&aapl()).await.unwrap();
    assert_eq!(page.articles.len(), 10);
    assert!(
        started.elapsed() >= Duration::from_millis(70),
        "backoff 10 + 20 + 40 ms"
    );
    assert_eq!(
        mock.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert_eq!(c.metrics().count("server_error"), 3);
}

/// A 5xx that never ends gives up after exactly `max_attempts` requests, with the last
/// error, transient.
#[tokio::test]
async fn persistent_server_errors_give_up_after_bounded_attempts() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::ServerError { status: 502 });
    let cfg = config_for(&mock).with_retry(EodhdRetryConfig::default().with_delays(5, 20, 0.5).with_max_attempts(3));
    let c = client(&cfg);
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::Server { status: 502, .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(mock.request_count(), 3);
}

/// A reply slower than the timeout is a transient `Timeout`, retried within the bound and
/// counted.
#[tokio::test]
async fn slow_responses_time_out_as_transient() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::Slow {
        delay: Duration::from_millis(1_500),
    });
    let cfg = config_for(&mock).with_timeout_ms(200).with_retry(
        EodhdRetryConfig::default()
            .with_delays(10, 10, 0.0)
            .with_max_attempts(2),
    );
    let c = client(&cfg);
    let started = Instant::now();
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { timeout } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "did not wait for the slow reply"
    );
    assert_eq!(c.metrics().count("timeout"), 2);
    assert_eq!(mock.request_count(), 2);

    mock.clear_fault();
    c.news(&aapl()).await.unwrap();
}

/// A body cut off in the middle is an `InvalidResponse`: counted, not retried within the call.
#[tokio::test]
async fn invalid_json_is_an_invalid_response() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(Fault::InvalidJson, 1);
    let c = client(&config_for(&mock));
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { status: 200, .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(mock.request_count(), 1);
    assert_eq!(c.metrics().count("invalid_response"), 1);
    c.news(&aapl()).await.unwrap();
}

/// An HTML error page served with status 200 is an `InvalidResponse` naming the content type.
#[tokio::test]
async fn html_page_with_status_200_is_an_invalid_response() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::HtmlOk);
    let c = client(&config_for(&mock));
    let err = c.news(&aapl()).await.unwrap_err();
    match &err {
        Error::InvalidResponse {
            status: 200,
            content_type: Some(ct),
            detail,
        } => {
            assert!(ct.starts_with("text/html"), "{ct}");
            assert!(detail.contains("HTML"), "{detail}");
        }
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
    assert_eq!(mock.request_count(), 1);
}

/// A walk skips a page with an invalid body, reads the following pages, and reports the batch
/// incomplete; a walk where every page is invalid fails.
#[tokio::test]
async fn invalid_page_is_skipped_and_the_walk_goes_on() {
    let mock = MockEodhd::start().await;
    mock.set_fault_times(Fault::InvalidJson, 1);
    let c = client(&config_for(&mock));
    let batch = c.news_all(&aapl(), 10).await.unwrap();
    assert_eq!(batch.skipped.len(), 1);
    assert_eq!(batch.skipped[0].offset, 0);
    assert_eq!(batch.pages, 2);
    assert_eq!(batch.articles.len(), 14);
    assert!(batch.reached_end && !batch.is_complete());

    mock.set_fault(Fault::HtmlOk);
    let err = c.news_all(&aapl(), 2).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}

/// A dead upstream opens the breaker after the threshold: further calls fail fast without a
/// request; after the cool-down a probe goes through and a success closes it. The gauge
/// follows (2 open, 0 closed).
#[tokio::test]
async fn breaker_opens_on_a_dead_upstream_and_recovers() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::ServerError { status: 503 });
    let cfg = config_for(&mock)
        .with_retry(EodhdRetryConfig::default().with_delays(5, 5, 0.0).with_max_attempts(1))
        .with_circuit_breaker(
            CircuitBreakerConfig::default()
                .with_failure_threshold(3)
                .with_cooldown_ms(300)
                .with_half_open_probes(1),
        );
    let c = client(&cfg);
    for _ in 0..3 {
        assert!(matches!(c.news(&aapl()).await, Err(Error::Server { status: 503, .. })));
    }
    assert_eq!(c.circuit_state(), CircuitState::Open);
    assert_eq!(c.metrics().circuit_state.get(), 2);
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(
        matches!(err, Error::CircuitOpen { .. }) && err.is_transient(),
        "{err:?}"
    );
    assert_eq!(mock.request_count(), 3, "an open circuit sends nothing");
    assert_eq!(c.metrics().count("circuit_open"), 1);

    mock.clear_fault();
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(c.circuit_state(), CircuitState::HalfOpen);
    c.news(&aapl()).await.unwrap();
    assert_eq!(c.circuit_state(), CircuitState::Closed);
    assert_eq!(c.metrics().circuit_state.get(), 0);
}

/// A connection refused is a transient `Connect` error, retried within the bound.
#[tokio::test]
async fn connection_refused_is_transient() {
    let mock = MockEodhd::start().await;
    // A port that was just free: nothing listens there.
    let port = mt5_fixtures::free_port().unwrap();
    let cfg = config_for(&mock)
        .with_base_url(format!("http://127.0.0.1:{port}"))
        .with_retry(EodhdRetryConfig::default().with_delays(5, 5, 0.0).with_max_attempts(2));
    let c = client(&cfg);
    let err = c.news(&aapl()).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(c.metrics().count("connect_error"), 2);
}

/// Shutdown ends a retry wait at once with `Cancelled`.
#[tokio::test]
async fn cancellation_ends_a_retry_wait() {
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::ServerError { status: 500 });
    let cancel = CancellationToken::new();
    let cfg = config_for(&mock).with_retry(EodhdRetryConfig::default().with_delays(30_000, 30_000, 0.0));
    let c = EodhdClient::new(&cfg, NewsMetrics::unregistered(), cancel.clone()).unwrap();
    let started = Instant::now();
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    };
    let q = aapl();
    let (res, ()) = tokio::join!(c.news(&q), canceller);
    assert!(matches!(res, Err(Error::Cancelled)), "{res:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(mock.request_count(), 1);
}

/// A reply body is read up to 32 MiB: a JSON body of exactly that size is read, one byte more
/// is an invalid response (the rest is never buffered).
#[tokio::test]
async fn a_body_is_read_up_to_32_mib_and_no_further() {
    const MAX: usize = 32 * 1024 * 1024;
    let padded_empty_array = |len: usize| {
        let mut body = vec![b' '; len];
        body[0] = b'[';
        body[len - 1] = b']';
        body
    };
    for (len, fits) in [(MAX, true), (MAX + 1, false)] {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_raw(padded_empty_array(len), "application/json"),
            )
            .mount(&server)
            .await;
        let cfg = EodhdConfig::default()
            .with_base_url(server.uri())
            .with_api_key(Secret::new("k"))
            .with_timeout_ms(30_000);
        let result = client(&cfg).news(&aapl()).await;
        if fits {
            assert_eq!(result.unwrap().received, 0, "{len} bytes");
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(&err, Error::InvalidResponse { detail, .. } if detail.contains("body larger than 33554432 bytes")),
                "{len} bytes: {err:?}"
            );
        }
    }
}

/// The client answers with the configuration it was built with.
#[tokio::test]
async fn the_client_runs_with_the_config_it_was_given() {
    let mock = MockEodhd::start().await;
    let cfg = config_for(&mock).with_timeout_ms(1_234);
    assert_eq!(client(&cfg).config(), &cfg);
}
