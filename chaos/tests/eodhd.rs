//! Scenario 8: EODHD faults against the mock: a 429 storm with `Retry-After`, a 5xx burst,
//! responses slower than the timeout, invalid JSON. Real `mt5-hub fetch` processes (the service,
//! whose first round runs at start and whose `/metrics` is scraped, and `fetch --once`), plus
//! an in-process fetcher for the breaker's recovery, which needs rounds of one process closer
//! together than the service's 5 to 15 minutes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mt5_bus::config::GroupSpec;
use mt5_bus::{BusConfig, BusMetrics, EventProducer, RedisConfig, Secret};
use mt5_chaos::checker::Verdict;
use mt5_chaos::harness::{Metrics, Scenario};
use mt5_chaos::report;
use mt5_fixtures::eodhd::{article_date, Fault, MockEodhd, RecordedRequest};
use mt5_fixtures::redis::aio::MultiplexedConnection;
use mt5_fixtures::{Appendfsync, RedisFixture};
use mt5_news::{
    CircuitBreakerConfig, CircuitState, EodhdClient, EodhdConfig, EodhdRetryConfig, Fetcher, FetcherConfig, NewsMetrics,
};
use tokio_util::sync::CancellationToken;

/// The sample tickers (the fetcher's default watchlist).
const TICKERS: [&str; 4] = ["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"];
/// The client's request timeout in these runs.
const TIMEOUT_MS: u64 = 500;
/// Consecutive failures that open the breaker.
const FAILURE_THRESHOLD: u32 = 3;
/// Time the breaker stays open before a probe.
const COOLDOWN_MS: u64 = 1000;
/// The `Retry-After` of the 429 storm, in seconds.
const RETRY_AFTER_SECS: u64 = 1;
/// The log line of a finished round.
const ROUND_DONE: &str = "News round done.";

/// The valid sample articles as `(ticker, link)`: what the fetcher must publish, once each.
fn expected_pairs(mock: &MockEodhd) -> BTreeSet<(String, String)> {
    TICKERS
        .iter()
        .flat_map(|t| {
            mock.articles(t)
                .into_iter()
                .filter(|a| article_date(a).is_some() && a["title"].is_string())
                .filter_map(|a| a["link"].as_str().map(|l| (t.to_string(), l.to_string())))
        })
        .collect()
}

/// `(data.ticker, data.article.link)` of every entry of the raw stream, counted.
async fn published_pairs(conn: &mut MultiplexedConnection, stream: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for (id, f) in mt5_fixtures::streams::read_all(conn, stream).await {
        let data: serde_json::Value =
            serde_json::from_str(f.get("data").map_or("null", String::as_str)).unwrap_or_else(|e| panic!("{id}: {e}"));
        let pair = (
            data["ticker"].as_str().unwrap_or_default().to_string(),
            data["article"]["link"].as_str().unwrap_or_default().to_string(),
        );
        *out.entry(pair).or_default() += 1;
    }
    out
}

/// The scenario's env for `mt5-hub fetch`: the mock, the scenario's raw stream and cursors, a
/// three-day lookback (every sample article), short timeouts, retries and breaker timings.
fn fetch_scenario(fx: &RedisFixture, mock: &MockEodhd) -> Scenario {
    let ms = |v: u64| v.to_string();
    let sc = common::scenario("eodhd", fx);
    let raw = sc.streams.raw.clone();
    [
        ("MT5_EODHD_BASE_URL", mock.uri()),
        ("EODHD_API_KEY", mock.key()),
        ("MT5_NEWS__FETCHER__STREAM", raw),
        ("MT5_NEWS__FETCHER__CURSOR_PREFIX", format!("{}:cursor", fx.prefix())),
        ("MT5_NEWS__FETCHER__LOOKBACK_DAYS", "3".into()),
        ("MT5_NEWS__EODHD__TIMEOUT_MS", ms(TIMEOUT_MS)),
        ("MT5_NEWS__EODHD__RETRY__INITIAL_MS", ms(100)),
        ("MT5_NEWS__EODHD__RETRY__MAX_MS", ms(300)),
        ("MT5_NEWS__EODHD__RETRY__JITTER", "0.0".into()),
        ("MT5_NEWS__EODHD__RETRY__MAX_ATTEMPTS", "3".into()),
        ("MT5_NEWS__EODHD__RETRY__MAX_RETRY_AFTER_MS", ms(3000)),
        (
            "MT5_NEWS__EODHD__CIRCUIT_BREAKER__FAILURE_THRESHOLD",
            FAILURE_THRESHOLD.to_string(),
        ),
        ("MT5_NEWS__EODHD__CIRCUIT_BREAKER__COOLDOWN_MS", ms(COOLDOWN_MS)),
    ]
    .into_iter()
    .fold(sc, |sc, (k, v)| sc.with_env(k, v))
}

/// Asserts a process log holds no panic.
fn assert_no_panic(label: &str, stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "{label} panicked:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Requests the mock answered with `status`.
fn with_status(reqs: &[RecordedRequest], status: u16) -> u64 {
    reqs.iter().filter(|r| r.status == status).count() as u64
}

/// One round of the `fetch` service (the first round runs at start): waits for the round's
/// log line, scrapes `/metrics`, SIGTERMs it (exit 0 expected) and returns the scrape and the
/// mock's requests of the round.
async fn service_round(sc: &Scenario, mock: &MockEodhd, label: &str) -> (Metrics, Vec<RecordedRequest>) {
    mock.reset_requests();
    let mut p = sc.spawn(label, &["fetch".to_string()], &[]).await.unwrap();
    common::ready(&p).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.stderr().contains(ROUND_DONE) {
        assert!(
            p.try_status().unwrap().is_none(),
            "{label} exited during its round: {}",
            p.stderr_tail(15)
        );
        assert!(
            Instant::now() < deadline,
            "{label}: no round within 20 s: {}",
            p.stderr_tail(15)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = p.metrics().await.unwrap();
    let status = p.sigterm_and_wait(Duration::from_secs(10)).await.unwrap();
    assert!(status.success(), "{label} exited with {status}: {}", p.stderr_tail(15));
    assert_no_panic(label, &p.stderr());
    (metrics, mock.requests())
}

/// One `mt5-hub fetch --once`: its exit code (only 0 or 1 allowed: round done, or every ticker
/// failed) and stdout.
async fn once_round(sc: &Scenario, mock: &MockEodhd, label: &str) -> (i32, String, Vec<RecordedRequest>) {
    mock.reset_requests();
    let mut p = sc
        .spawn(label, &["fetch".to_string(), "--once".to_string()], &[])
        .await
        .unwrap();
    let status = p.wait_exit(Duration::from_secs(30)).await.unwrap();
    let code = status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{label} exited with {status}: {}",
        p.stderr_tail(15)
    );
    assert_no_panic(label, &p.stderr());
    (code, p.stdout(), mock.requests())
}

/// `outcome=n` of every non-zero `mt5_news_fetch_total` series.
fn outcomes(m: &Metrics) -> String {
    [
        "ok",
        "rate_limited",
        "server_error",
        "timeout",
        "invalid_response",
        "circuit_open",
        "connect_error",
    ]
    .iter()
    .filter_map(|o| {
        let n = m.sum("mt5_news_fetch_total", &[("outcome", o)]);
        (n > 0.0).then(|| format!("{o}={n}"))
    })
    .collect::<Vec<_>>()
    .join(",")
}

/// The real `mt5-hub fetch` processes against the mock through four faults, then clean rounds:
/// - 5xx burst (service): every request answered 503, counted as `server_error`; the breaker
///   opens (`mt5_eodhd_circuit_state` 2) and later attempts are refused locally (`circuit_open`).
/// - slow responses past the 500 ms timeout: `--once` exits 1 (every ticker failed), the service
///   counts each request as `timeout`.
/// - invalid JSON (200 with a truncated body): `--once` exits 1, the service counts
///   `invalid_response` per request and the breaker opens.
/// - a 429 storm with `Retry-After: 1` (service): each 429 counted as `rate_limited`, the next
///   attempt of that ticker waits the second out, the breaker stays closed (a 429 proves the
///   upstream alive), the round succeeds.
///
/// Then two clean `--once` rounds exit 0: every valid sample article is in the raw stream exactly
/// once per ticker, the second round publishes nothing new. No process panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eodhd_faults_are_counted_and_publish_each_article_once() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let mock = MockEodhd::start().await;
    let sc = fetch_scenario(&fx, &mock);
    let expected = expected_pairs(&mock);
    let mut faults = Vec::new();

    // 5xx burst: the breaker opens.
    mock.set_fault(Fault::ServerError { status: 503 });
    let (m, reqs) = service_round(&sc, &mock, "fetch-5xx").await;
    mock.clear_fault();
    let n503 = with_status(&reqs, 503);
    assert!(n503 >= u64::from(FAILURE_THRESHOLD), "too few 5xx: {n503}");
    assert_eq!(
        m.sum("mt5_news_fetch_total", &[("outcome", "server_error")]),
        n503 as f64
    );
    assert_eq!(m.sum("mt5_news_fetch_total", &[("outcome", "ok")]), 0.0);
    assert_eq!(m.sum("mt5_eodhd_circuit_state", &[]), 2.0, "the breaker did not open");
    assert!(m.sum("mt5_news_fetch_total", &[("outcome", "circuit_open")]) > 0.0);
    faults.push(format!("5xx: {n503} requests, {}, circuit_state 2", outcomes(&m)));

    // Slow responses beyond the timeout.
    mock.set_fault(Fault::Slow {
        delay: Duration::from_millis(TIMEOUT_MS * 3),
    });
    let (code, out, _) = once_round(&sc, &mock, "fetch-once-slow").await;
    assert_eq!(code, 1, "every ticker timed out, so --once must exit 1:\n{out}");
    assert!(out.contains("failed 4 of 4 tickers"), "{out}");
    let (m, reqs) = service_round(&sc, &mock, "fetch-slow").await;
    mock.clear_fault();
    assert!(!reqs.is_empty());
    assert_eq!(
        m.sum("mt5_news_fetch_total", &[("outcome", "timeout")]),
        reqs.len() as f64,
        "every slow request is a timeout"
    );
    assert_eq!(m.sum("mt5_eodhd_circuit_state", &[]), 2.0, "timeouts open the breaker");
    faults.push(format!(
        "slow {} ms > timeout {TIMEOUT_MS} ms: --once exit 1; {} requests, {}",
        TIMEOUT_MS * 3,
        reqs.len(),
        outcomes(&m)
    ));

    // Invalid JSON.
    mock.set_fault(Fault::InvalidJson);
    let (code, out, _) = once_round(&sc, &mock, "fetch-once-invalid-json").await;
    assert_eq!(code, 1, "no ticker could read a page, so --once must exit 1:\n{out}");
    let (m, reqs) = service_round(&sc, &mock, "fetch-invalid-json").await;
    mock.clear_fault();
    assert!(!reqs.is_empty());
    assert_eq!(
        m.sum("mt5_news_fetch_total", &[("outcome", "invalid_response")]),
        reqs.len() as f64
    );
    assert_eq!(m.sum("mt5_news_fetch_total", &[("outcome", "ok")]), 0.0);
    faults.push(format!(
        "invalid JSON: --once exit 1; {} requests, {}",
        reqs.len(),
        outcomes(&m)
    ));
    let mut conn = fx.connection().await;
    assert!(
        published_pairs(&mut conn, &sc.streams.raw).await.is_empty(),
        "nothing can have been published yet"
    );

    // 429 storm with Retry-After: retried after the wait, the round succeeds.
    let storm = 8;
    mock.set_fault_times(
        Fault::RateLimited {
            retry_after_secs: Some(RETRY_AFTER_SECS),
        },
        storm,
    );
    let cleared = Instant::now();
    let (m, reqs) = service_round(&sc, &mock, "fetch-429").await;
    let n429 = with_status(&reqs, 429);
    assert_eq!(n429, u64::from(storm));
    assert_eq!(
        m.sum("mt5_news_fetch_total", &[("outcome", "rate_limited")]),
        n429 as f64
    );
    assert_eq!(
        m.sum("mt5_news_fetch_total", &[("outcome", "ok")]),
        with_status(&reqs, 200) as f64
    );
    assert_eq!(
        m.sum("mt5_eodhd_circuit_state", &[]),
        0.0,
        "a 429 must not open the breaker"
    );
    // Retry-After honoured: a ticker's next request comes at least about a second after its 429.
    let mut min_wait = Duration::MAX;
    for (i, r) in reqs.iter().enumerate().filter(|(_, r)| r.status == 429) {
        if let Some(next) = reqs[i + 1..].iter().find(|n| n.param("s") == r.param("s")) {
            min_wait = min_wait.min(next.received_at.duration_since(r.received_at));
        }
    }
    assert!(
        min_wait >= Duration::from_millis(RETRY_AFTER_SECS * 1000 - 100),
        "a 429's Retry-After was not waited out: {min_wait:?}"
    );
    faults.push(format!(
        "429 storm x{storm} (Retry-After {RETRY_AFTER_SECS} s): {}, min wait after a 429 {} ms, circuit_state 0",
        outcomes(&m),
        min_wait.as_millis()
    ));

    // Faults cleared: two clean one-shot rounds.
    let (code, out1, _) = once_round(&sc, &mock, "fetch-once-clean-1").await;
    assert_eq!(code, 0, "{out1}");
    let recovered = cleared.elapsed();
    let (code, out2, reqs) = once_round(&sc, &mock, "fetch-once-clean-2").await;
    assert_eq!(code, 0, "{out2}");
    assert!(!reqs.is_empty(), "the second round did not ask EODHD");
    assert!(
        out2.contains("published 0,"),
        "a clean refetch published again:\n{out2}"
    );

    let published = published_pairs(&mut conn, &sc.streams.raw).await;
    let entries: u64 = published.values().sum();
    let duplicated: u64 = published.values().map(|n| n - 1).sum();
    let found: BTreeSet<(String, String)> = published.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let unexpected: Vec<_> = found.difference(&expected).collect();

    let mut v = Verdict::default();
    v.published = entries;
    v.raw_entries = entries;
    v.effects = entries;
    v.processed = (expected.len() - missing.len()) as u64;
    v.duplicated_effects = duplicated;
    v.lost = missing.len() as u64;
    let v = v.with_recovery(recovered).with_faults(format!(
        "{}; expected {} (ticker, link)",
        faults.join("; "),
        expected.len()
    ));
    report::record("8 eodhd", &v).unwrap();
    assert_eq!(duplicated, 0, "duplicate publishes: {published:?}");
    assert!(missing.is_empty(), "sample articles never published: {missing:?}");
    assert!(unexpected.is_empty(), "unexpected publishes: {unexpected:?}");
}

/// The breaker across rounds of one fetcher (state is per process, so this part runs in
/// process, against the same mock and a real Redis): a 502 round opens it; the next round
/// sends no request at all (every ticker refused with `circuit_open`); after the cool-down,
/// with the upstream healthy again, a probe closes it and the rounds publish every sample
/// article once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_and_recovers_across_rounds() {
    let fx = common::process_redis(Appendfsync::Everysec).await;
    let mock = MockEodhd::start().await;
    let raw = format!("{}:news_raw", fx.prefix());
    let cfg = EodhdConfig::default()
        .with_base_url(mock.uri())
        .with_api_key(Secret::new(mock.key()))
        .with_timeout_ms(TIMEOUT_MS)
        .with_retry(
            EodhdRetryConfig::default()
                .with_delays(50, 200, 0.0)
                .with_max_attempts(3),
        )
        .with_circuit_breaker(
            CircuitBreakerConfig::default()
                .with_failure_threshold(FAILURE_THRESHOLD)
                .with_cooldown_ms(COOLDOWN_MS),
        );
    let metrics = NewsMetrics::unregistered();
    let cancel = CancellationToken::new();
    let client = EodhdClient::new(&cfg, metrics.clone(), cancel.clone()).unwrap();
    let mut bus = BusConfig::default();
    bus.groups = vec![GroupSpec {
        stream: raw.clone(),
        group: format!("{}-filter", fx.prefix()),
    }];
    let producer = EventProducer::connect(
        &RedisConfig::default().with_url(fx.url()),
        &bus,
        BusMetrics::unregistered(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let fetcher = Fetcher::new(
        FetcherConfig::default()
            .with_watchlist(TICKERS)
            .with_lookback_days(3)
            .with_keys(raw.clone(), format!("{}:cursor", fx.prefix())),
        client.clone(),
        producer,
    )
    .unwrap();

    // A 5xx round opens the breaker.
    mock.set_fault(Fault::ServerError { status: 502 });
    let r1 = fetcher.round().await.unwrap();
    assert_eq!(r1.failed(), TICKERS.len());
    assert_eq!(client.circuit_state(), CircuitState::Open);
    assert_eq!(metrics.circuit_state.get(), 2);
    let sent_while_failing = mock.request_count();

    // While open, a round sends nothing.
    let open_before = metrics.count("circuit_open");
    let r2 = fetcher.round().await.unwrap();
    assert_eq!(r2.failed(), TICKERS.len());
    assert_eq!(mock.request_count(), sent_while_failing, "requests sent while open");
    assert!(metrics.count("circuit_open") >= open_before + TICKERS.len() as u64);

    // Upstream healthy, cool-down over: a probe closes the breaker; rounds publish everything.
    mock.clear_fault();
    let opened_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(COOLDOWN_MS + 200)).await;
    let mut rounds = 0;
    let mut published = 0;
    while rounds < 3 {
        let r = fetcher.round().await.unwrap();
        rounds += 1;
        published += r.published();
        if r.failed() == 0 {
            break;
        }
    }
    let recovered = opened_at.elapsed();
    assert_eq!(client.circuit_state(), CircuitState::Closed);
    assert_eq!(metrics.circuit_state.get(), 0);
    let last = fetcher.round().await.unwrap();
    assert_eq!(last.failed(), 0);
    assert_eq!(last.published(), 0, "a refetch published again");

    let mut conn = fx.connection().await;
    let pairs = published_pairs(&mut conn, &raw).await;
    let expected = expected_pairs(&mock);
    let dup: u64 = pairs.values().map(|n| n - 1).sum();
    assert_eq!(dup, 0, "{pairs:?}");
    assert_eq!(pairs.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(published, expected.len());
    let mut v = Verdict::default();
    v.published = pairs.values().sum();
    v.raw_entries = v.published;
    v.effects = v.published;
    v.processed = expected.len() as u64;
    let v = v.with_recovery(recovered).with_faults(format!(
        "in-process fetcher: a 502 round opened the breaker ({sent_while_failing} requests, {} server_error), the next round sent 0 requests ({} circuit_open), closed after the {COOLDOWN_MS} ms cool-down in {rounds} round(s)",
        metrics.count("server_error"),
        metrics.count("circuit_open"),
    ));
    report::record("8 eodhd (breaker)", &v).unwrap();
}
