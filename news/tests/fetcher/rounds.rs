//! Rounds, overlap, restarts and the quota pause.

use mt5_fixtures::redis;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use mt5_fixtures::eodhd::Fault;
use mt5_fixtures::{MockEodhd, RedisFixture};
use mt5_news::{NewsMetrics, Schedule};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::client::support::LogCapture;

use super::support::{expected_links, fetcher, fetcher_on_bus, fetcher_with, published_pairs, read_all, Keys, TICKERS};

/// Two rounds over the same (overlapping) window publish each (article, ticker) exactly once:
/// the second round re-reads whole days and every article hits its idempotency key. A new
/// article that appears between the rounds is the only thing the second round writes.
#[tokio::test]
async fn two_rounds_over_overlapping_windows_publish_each_article_once() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let f = fetcher(&fx, &mock, &keys).await;

    let first = f.round().await.unwrap();
    let expected: usize = TICKERS.iter().map(|t| expected_links(&mock, t).len()).sum();
    assert!(expected > 50, "the samples hold {expected} articles");
    assert_eq!(first.failed(), 0, "{first:?}");
    assert_eq!(first.published(), expected, "{first:?}");
    assert_eq!(first.duplicates(), 0);
    assert!(
        first.tickers.iter().all(|t| t.complete && t.cursor.is_some()),
        "{first:?}"
    );
    let tsla = first.tickers.iter().find(|t| t.ticker == "TSLA.US").unwrap();
    assert_eq!(
        tsla.rejected, 1,
        "the malformed sample article is rejected, not published"
    );

    // A new AAPL article, published "now".
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    mock.push_articles(
        "AAPL.US",
        vec![json!({
            "date": now, "title": "Apple announces a $110 billion buyback", "content": "A record repurchase.",
            "link": "https://example.com/apple-buyback-new", "symbols": ["AAPL.US"], "tags": ["BUYBACK"],
        })],
    );
    let second = f.round().await.unwrap();
    assert_eq!(second.failed(), 0, "{second:?}");
    assert_eq!(second.published(), 1, "only the new article: {second:?}");
    assert_eq!(second.duplicates(), second.fetched() - 1);

    let mut conn = fx.connection().await;
    let pairs = published_pairs(&mut conn, &keys.raw).await;
    let unique: HashSet<_> = pairs.iter().cloned().collect();
    assert_eq!(pairs.len(), unique.len(), "no (article, ticker) twice");
    assert_eq!(pairs.len(), expected + 1);
    for t in TICKERS {
        let mut want = expected_links(&mock, t);
        if *t == "AAPL.US" {
            want.insert("https://example.com/apple-buyback-new".into());
        }
        let got: HashSet<String> = unique
            .iter()
            .filter(|(tk, _)| tk == t)
            .map(|(_, l)| l.clone())
            .collect();
        assert_eq!(got, want, "{t}");
    }
    // The same article under two tickers is two events (one per ticker), as the contract says.
    let shared = pairs.iter().filter(|(_, l)| l.contains("tech-rally")).count();
    assert!(
        shared >= 2,
        "the cross-ticker sample article is published per ticker ({shared})"
    );
}

/// The raw events carry the contract's envelope and data: `source` eodhd, `type` news.raw.v1,
/// the `ticker` extension, and `{ticker, fetch_time, source_query, article}` in `data`; the
/// event id is derived from (ticker, link), so a refetch after a lost idempotency key would
/// still carry the same id.
#[tokio::test]
async fn raw_events_follow_the_contract() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let cfg = keys.fetcher().with_watchlist(["MSFT.US"]);
    let f = fetcher_with(&fx, &mock, &keys, cfg, NewsMetrics::unregistered()).await;
    f.round().await.unwrap();
    let mut conn = fx.connection().await;
    let entries = read_all(&mut conn, &keys.raw).await;
    assert_eq!(entries.len(), expected_links(&mock, "MSFT.US").len());
    let mut ids = HashSet::new();
    for (_, fields) in &entries {
        assert_eq!(fields["source"], "eodhd");
        assert_eq!(fields["type"], "news.raw.v1");
        assert_eq!(fields["ticker"], "MSFT.US");
        assert_eq!(fields["specversion"], "1.0");
        let data: serde_json::Value = serde_json::from_str(&fields["data"]).unwrap();
        assert_eq!(data["ticker"], "MSFT.US");
        assert!(data["fetch_time"].as_str().unwrap().ends_with('Z'));
        assert!(data["source_query"].as_str().unwrap().starts_with("s=MSFT.US&from="));
        assert!(
            !data["source_query"].as_str().unwrap().contains(&mock.key()),
            "no key in events"
        );
        for field in ["date", "title", "content", "link", "symbols", "tags", "sentiment"] {
            assert!(data["article"].get(field).is_some(), "article.{field}");
        }
        assert!(ids.insert(fields["id"].clone()));
    }
    // Entries are in article date order.
    let dates: Vec<String> = entries
        .iter()
        .map(|(_, f)| {
            let d: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
            d["article"]["date"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted);
}

/// A crash after a publish but before the record of published links was written (its key lost)
/// publishes nothing twice: the next round offers the articles again and every one hits its
/// idempotency key, and the round counts them as duplicates, not as published.
#[tokio::test]
async fn articles_missing_from_the_record_are_caught_by_their_idempotency_keys() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let f = fetcher(&fx, &mock, &keys).await;
    let first = f.round().await.unwrap();
    assert_eq!(first.failed(), 0, "{first:?}");
    let mut conn = fx.connection().await;
    let written = published_pairs(&mut conn, &keys.raw).await.len();
    assert_eq!(written, first.published());
    for t in TICKERS {
        let deleted: i64 = redis::cmd("DEL")
            .arg(f.seen_key(t))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "{t} had a record");
    }

    let second = f.round().await.unwrap();
    assert_eq!(second.failed(), 0, "{second:?}");
    assert_eq!(second.published(), 0, "{second:?}");
    assert!(second.fetched() > 0, "{second:?}");
    assert_eq!(
        second.duplicates(),
        second.fetched(),
        "each one an idempotency hit: {second:?}"
    );
    assert_eq!(
        published_pairs(&mut conn, &keys.raw).await.len(),
        written,
        "nothing written twice"
    );
}

/// A restarted fetcher (new client, new producer, same Redis) starts from the cursor stored in
/// Redis: its query's `from` is the cursor's UTC day, not the lookback, and it publishes
/// nothing twice.
#[tokio::test]
async fn a_restart_resumes_from_the_redis_cursor() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    {
        let f = fetcher(&fx, &mock, &keys).await;
        let r = f.round().await.unwrap();
        assert_eq!(r.failed(), 0, "{r:?}");
    }
    let restarted = fetcher(&fx, &mock, &keys).await;
    assert_eq!(restarted.config(), &keys.fetcher());
    let newest = mock.now();
    let mut conn = fx.connection().await;
    for t in TICKERS {
        let cursor = restarted.cursor(t).await.unwrap().expect("a cursor per ticker");
        assert!(cursor <= newest + TimeDelta::seconds(1), "{t}: {cursor} after {newest}");
        // Each ticker's cursor is a key of its own, `<cursor_prefix>:<ticker>`, in Unix ms.
        let key = restarted.cursor_key(t);
        assert_eq!(key, format!("{}:{t}", keys.cursor_prefix));
        let stored: i64 = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(stored, cursor.timestamp_millis(), "{key}");
    }
    let aapl_cursor = restarted.cursor("AAPL.US").await.unwrap().unwrap();
    mock.reset_requests();
    let r = restarted.round().await.unwrap();
    assert_eq!(r.published(), 0, "nothing new: {r:?}");
    let froms: Vec<String> = mock
        .requests()
        .iter()
        .filter(|q| q.param("s") == Some("AAPL.US"))
        .filter_map(|q| q.param("from").map(String::from))
        .collect();
    assert!(!froms.is_empty());
    let lookback_from = (Utc::now() - TimeDelta::days(4)).date_naive().to_string();
    for from in froms {
        assert_eq!(from, aapl_cursor.date_naive().to_string(), "from the cursor's day");
        assert_ne!(from, lookback_from, "not the first-start lookback");
    }
}

/// The idempotency TTL of the quiet-ticker tests: short, so it expires within the test.
const SHORT_TTL_MS: u64 = 200;

/// A fetcher of MSFT.US whose bus keeps idempotency keys for [`SHORT_TTL_MS`] only.
async fn short_ttl_fetcher(fx: &RedisFixture, mock: &MockEodhd, keys: &Keys) -> mt5_news::Fetcher {
    let mut bus = keys.bus();
    bus.idempotency_ttl_ms = SHORT_TTL_MS;
    let cfg = keys.fetcher().with_watchlist(["MSFT.US"]);
    fetcher_on_bus(fx, mock, &bus, cfg, NewsMetrics::unregistered()).await
}

/// Waits until none of `links`' idempotency keys (for MSFT.US on `stream`) exists any more.
async fn wait_for_idempotency_keys_to_expire(fx: &RedisFixture, stream: &str, links: &HashSet<String>) {
    let mut conn = fx.connection().await;
    let keys: Vec<String> = links
        .iter()
        .map(|l| mt5_bus::idempotency_key(stream, &format!("MSFT.US|{l}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: usize = redis::cmd("EXISTS").arg(&keys).query_async(&mut conn).await.unwrap();
        if alive == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{alive} idempotency keys outlived their TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A ticker quiet for longer than the idempotency TTL republishes nothing. Its window still
/// starts at the cursor's day, so the refetch serves the articles already published, and their
/// idempotency keys have expired; the fetcher's own record of what it published in the window
/// (which has no TTL) keeps them out. (Production: TTL 72 h, a ticker quiet for 3 days.)
#[tokio::test]
async fn a_ticker_quiet_longer_than_the_idempotency_ttl_republishes_nothing() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let f = short_ttl_fetcher(&fx, &mock, &keys).await;
    let links = expected_links(&mock, "MSFT.US");

    let first = f.round().await.unwrap();
    assert!(first.tickers[0].complete, "{first:?}");
    assert_eq!(first.published(), links.len(), "{first:?}");
    let mut conn = fx.connection().await;
    let after_first = mt5_fixtures::streams::xlen(&mut conn, &keys.raw).await;
    assert_eq!(after_first, links.len() as u64);

    // The ticker stays quiet (the mock serves the same articles) past the TTL.
    wait_for_idempotency_keys_to_expire(&fx, &keys.raw, &links).await;
    let second = f.round().await.unwrap();
    assert!(second.tickers[0].complete, "{second:?}");
    assert!(
        second.fetched() > 0,
        "the window still holds the cursor's day: {second:?}"
    );
    assert_eq!(second.published(), 0, "nothing republished: {second:?}");
    assert_eq!(second.duplicates(), second.fetched(), "{second:?}");
    assert_eq!(
        mt5_fixtures::streams::xlen(&mut conn, &keys.raw).await,
        after_first,
        "no new entry on the raw stream"
    );
    let pairs = published_pairs(&mut conn, &keys.raw).await;
    let unique: HashSet<_> = pairs.iter().cloned().collect();
    assert_eq!(pairs.len(), unique.len(), "no (article, ticker) twice");

    // The record keeps only what a window can still reach: links dated on or after the
    // cursor's day (the first round's lookback went back further).
    let cursor = f.cursor("MSFT.US").await.unwrap().expect("a cursor");
    let day_start_ms = cursor
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    assert_eq!(f.seen_key("MSFT.US"), format!("{}:MSFT.US:seen", keys.cursor_prefix));
    let record: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(f.seen_key("MSFT.US"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(record.len(), second.fetched(), "{record:?}");
    assert!(record.iter().all(|(_, ms)| *ms >= day_start_ms), "{record:?}");
    assert!(record.len() < links.len(), "older links were dropped: {record:?}");
}

/// The record that stops republishing does not stop a late article: one that EODHD delivers
/// after the TTL expired, dated on the cursor's day but before the cursor (so not "newer"), is
/// still published, once.
#[tokio::test]
async fn a_late_article_of_the_cursors_day_is_published_after_the_ttl() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let f = short_ttl_fetcher(&fx, &mock, &keys).await;
    let links = expected_links(&mock, "MSFT.US");
    let first = f.round().await.unwrap();
    assert!(first.tickers[0].complete, "{first:?}");
    let cursor = f.cursor("MSFT.US").await.unwrap().expect("a cursor");
    wait_for_idempotency_keys_to_expire(&fx, &keys.raw, &links).await;

    let day_start = cursor.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    mock.push_articles(
        "MSFT.US",
        vec![json!({
            "date": day_start.to_rfc3339_opts(SecondsFormat::Secs, true), "title": "Microsoft files late",
            "content": "A late filing.", "link": "https://example.com/msft-late", "symbols": ["MSFT.US"], "tags": [],
        })],
    );
    let second = f.round().await.unwrap();
    assert!(second.tickers[0].complete, "{second:?}");
    assert_eq!(second.published(), 1, "only the late article: {second:?}");
    let third = f.round().await.unwrap();
    assert_eq!(third.published(), 0, "{third:?}");
    let mut conn = fx.connection().await;
    let got: HashSet<String> = published_pairs(&mut conn, &keys.raw)
        .await
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert!(got.contains("https://example.com/msft-late"));
    assert_eq!(
        mt5_fixtures::streams::xlen(&mut conn, &keys.raw).await,
        links.len() as u64 + 1
    );
}

/// A skipped page (invalid JSON) keeps the cursor where it was, so the next round refetches;
/// what was published is not published again. The round with the skipped page warns about it
/// (and not about the page cap); the complete round after it warns about neither.
#[tokio::test]
async fn the_cursor_stays_when_a_page_was_skipped() {
    let (logs, _guard) = LogCapture::start();
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let cfg = keys.fetcher().with_watchlist(["MSFT.US"]);
    let f = fetcher_with(&fx, &mock, &keys, cfg, NewsMetrics::unregistered()).await;
    mock.set_fault_times(Fault::InvalidJson, 1);
    let r = f.round().await.unwrap();
    assert!(!r.tickers[0].complete, "{r:?}");
    assert_eq!(
        f.cursor("MSFT.US").await.unwrap(),
        None,
        "no cursor after an incomplete walk"
    );
    assert_eq!(logs.matching(SKIPPED_WARNING).len(), 1, "{:#?}", logs.lines());
    assert!(logs.matching(PAGE_CAP_WARNING).is_empty(), "{:#?}", logs.lines());
    assert_eq!(r.tickers[0].error, None, "every article fetched was published: {r:?}");
    let r = f.round().await.unwrap();
    assert!(r.tickers[0].complete, "{r:?}");
    assert_eq!(logs.matching(SKIPPED_WARNING).len(), 1, "{:#?}", logs.lines());
    assert!(logs.matching(PAGE_CAP_WARNING).is_empty(), "{:#?}", logs.lines());
    assert_eq!(r.published(), expected_links(&mock, "MSFT.US").len());
    assert!(f.cursor("MSFT.US").await.unwrap().is_some());
}

/// A stream at its backlog limit refuses some of a round's articles: those published stay
/// published, the ticker's round is incomplete and says why, and the cursor does not move, so
/// the next round offers the rest again.
#[tokio::test]
async fn articles_refused_at_the_backlog_limit_keep_the_cursor_and_are_reported() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let mut bus = keys.bus();
    bus.trim.max_len = 3;
    bus.trim.backlog_limit = 3;
    let cfg = keys.fetcher().with_watchlist(["MSFT.US"]);
    let f = fetcher_on_bus(&fx, &mock, &bus, cfg, NewsMetrics::unregistered()).await;
    let links = expected_links(&mock, "MSFT.US");
    assert!(links.len() > 3, "the sample holds {} MSFT.US articles", links.len());

    let r = f.round().await.unwrap();
    let t = &r.tickers[0];
    assert!(!t.complete, "{r:?}");
    assert_eq!(t.published, 3, "{r:?}");
    assert!(t.error.as_deref().is_some_and(|e| e.contains("backlog limit")), "{r:?}");
    assert_eq!(
        f.cursor("MSFT.US").await.unwrap(),
        None,
        "the cursor waits for the rest"
    );
    let mut conn = fx.connection().await;
    assert_eq!(mt5_fixtures::streams::xlen(&mut conn, &keys.raw).await, 3);
}

/// The fetcher's warning when EODHD pages were skipped, and when the page cap ended a walk.
const SKIPPED_WARNING: &str = "pages with an invalid body were skipped";
const PAGE_CAP_WARNING: &str = "The page cap ended the walk";

/// A 402 (quota exhausted) pauses fetching: the round stops asking, reports `paused_until`,
/// and later rounds make no request until the reset.
#[tokio::test]
async fn quota_exhaustion_pauses_rounds() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let metrics = NewsMetrics::unregistered();
    let cfg = keys.fetcher().with_concurrency(1);
    let f = fetcher_with(&fx, &mock, &keys, cfg, metrics.clone()).await;
    mock.set_fault(Fault::QuotaExhausted);
    let r = f.round().await.unwrap();
    let until = r.paused_until.expect("paused");
    assert!(until > Utc::now(), "{until}");
    assert_eq!(mock.request_count(), 1, "one 402, then no more requests this round");
    assert_eq!(r.failed(), TICKERS.len(), "{r:?}");
    assert!(r.tickers[1].error.as_deref().unwrap().contains("quota"), "{r:?}");

    // The upstream recovers, but the pause holds until the reset: no request.
    mock.clear_fault();
    let r = f.round().await.unwrap();
    assert!(r.paused_until.is_some());
    assert_eq!(mock.request_count(), 1, "no request while paused");
    // The service loop does not spin either.
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let started = Instant::now();
    let run = tokio::spawn(async move {
        f.run(Schedule::unchecked(Duration::from_millis(20), Duration::ZERO), cancel)
            .await
            .unwrap();
        f
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let f = run.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancellation ends the pause wait"
    );
    assert_eq!(mock.request_count(), 1, "no request while paused");
    assert!(f.client().metrics().count("quota_exhausted") >= 1);
}

/// The service loop runs a round at once and then every interval, and returns promptly when
/// cancelled.
#[tokio::test]
async fn the_service_loop_runs_rounds_on_its_schedule_until_cancelled() {
    let fx = RedisFixture::start().await.unwrap();
    let mock = MockEodhd::start().await;
    let keys = Keys::new(&fx);
    let cfg = keys.fetcher().with_watchlist(["MSFT.US"]);
    let f = fetcher_with(&fx, &mock, &keys, cfg, NewsMetrics::unregistered()).await;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let run = tokio::spawn(async move {
        f.run(
            Schedule::unchecked(Duration::from_millis(200), Duration::from_millis(50)),
            cancel,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stopped_at = Instant::now();
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(2), "prompt shutdown");
    let rounds = mock.request_count();
    assert!(
        (3..=8).contains(&rounds),
        "about one round per 200 ms in 1.1 s, got {rounds}"
    );
    let mut conn = fx.connection().await;
    assert_eq!(
        published_pairs(&mut conn, &keys.raw).await.len(),
        expected_links(&mock, "MSFT.US").len(),
        "rounds after the first publish nothing twice"
    );
}
