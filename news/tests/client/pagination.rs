//! One page and paginated walks against the mock's recorded-shape samples.

use chrono::{Duration as TimeDelta, Utc};
use mt5_fixtures::eodhd::{article_date, Fault};
use mt5_fixtures::MockEodhd;
use mt5_news::{NewsMetrics, NewsQuery, Subject};
use serde_json::json;

use super::support::{client, client_with, config_for, LogCapture};

/// A walk stops at the first short page: AAPL's 24 items at limit 10 take pages at offsets
/// 0, 10 and 20, and the third (4 items) ends it.
#[tokio::test]
async fn short_page_ends_the_walk() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let batch = c
        .news_all(&NewsQuery::symbol("AAPL.US").with_limit(10), 10)
        .await
        .unwrap();
    assert_eq!(batch.pages, 3);
    assert!(batch.reached_end && batch.is_complete());
    let offsets: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.param("offset").unwrap().to_string())
        .collect();
    assert_eq!(offsets, ["0", "10", "20"]);
    assert!(mock.requests().iter().all(|r| r.param("limit") == Some("10")));
}

/// Every request is timed into `mt5_news_fetch_duration_seconds`, a failed attempt that is
/// retried as well as each page of a walk: one failed attempt and three pages are four samples.
#[tokio::test]
async fn every_request_is_timed_in_the_duration_histogram() {
    let mock = MockEodhd::start().await;
    let registry = prometheus::Registry::new();
    let metrics = NewsMetrics::register(&registry).unwrap();
    let c = client_with(&config_for(&mock), metrics);
    mock.set_fault_times(Fault::ServerError { status: 500 }, 1);
    let batch = c
        .news_all(&NewsQuery::symbol("AAPL.US").with_limit(10), 10)
        .await
        .unwrap();
    assert_eq!(batch.pages, 3);
    assert_eq!(mock.request_count(), 4);
    let family = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "mt5_news_fetch_duration_seconds")
        .expect("the histogram is registered");
    let histogram = family.get_metric()[0].get_histogram();
    assert_eq!(histogram.get_sample_count(), 4);
    assert!(histogram.get_sample_sum() > 0.0);
}

/// The page cap bounds a walk that has not reached a short page, and the batch says it is
/// not complete; the client logs that the cap stopped it, once. A walk that reaches its end
/// logs no such line.
#[tokio::test]
async fn page_cap_stops_a_long_walk() {
    let (logs, _guard) = LogCapture::start();
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let batch = c
        .news_all(&NewsQuery::symbol("AAPL.US").with_limit(5), 2)
        .await
        .unwrap();
    assert_eq!(batch.pages, 2);
    assert_eq!(batch.articles.len(), 10);
    assert!(!batch.reached_end && !batch.is_complete());
    assert_eq!(mock.request_count(), 2);
    assert_eq!(logs.matching(PAGE_CAP_LINE).len(), 1, "{:#?}", logs.lines());

    let whole = c
        .news_all(&NewsQuery::symbol("AAPL.US").with_limit(5), 100)
        .await
        .unwrap();
    assert!(whole.reached_end && whole.is_complete());
    assert_eq!(logs.matching(PAGE_CAP_LINE).len(), 1, "{:#?}", logs.lines());
}

/// The client's line when the page cap ended a walk.
const PAGE_CAP_LINE: &str = "pagination stopped at the page cap";

/// The same article at the end of one page and the start of the next is kept once.
#[tokio::test]
async fn duplicates_across_pages_are_dropped() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let batch = c
        .news_all(&NewsQuery::symbol("AAPL.US").with_limit(10), 10)
        .await
        .unwrap();
    assert_eq!(batch.duplicates, 1);
    assert_eq!(batch.articles.len(), 23);
    let foxconn = batch
        .articles
        .iter()
        .filter(|a| a.title.starts_with("Apple supplier Foxconn"))
        .count();
    assert_eq!(foxconn, 1);
    let mut links: Vec<&str> = batch.articles.iter().map(|a| a.link.as_str()).collect();
    links.sort_unstable();
    links.dedup();
    assert_eq!(links.len(), 23);
}

/// The malformed sample article is skipped with an error naming its field; the rest of the
/// page is kept, and the short-page check still counts it.
#[tokio::test]
async fn malformed_article_is_skipped_naming_the_field() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let page = c.news(&NewsQuery::symbol("TSLA.US").with_limit(50)).await.unwrap();
    assert_eq!(page.received, 12);
    assert_eq!(page.articles.len(), 11);
    assert_eq!(page.rejected.len(), 1);
    assert_eq!(page.rejected[0].field, "date");
    assert_eq!(
        page.rejected[0].link.as_deref(),
        Some("https://finance.yahoo.com/news/tesla-broken-record-0001.html")
    );
    assert!(page.is_short());
    assert_eq!(c.metrics().count("ok"), 1);
}

/// The query reaches EODHD with its documented parameters, and the date window filters by
/// UTC day.
#[tokio::test]
async fn query_parameters_and_date_window_reach_the_server() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    // The newest MSFT article's day (not "today": near midnight they differ).
    let today = article_date(&mock.articles("MSFT.US")[0]).unwrap().date_naive();
    let page = c
        .news(
            &NewsQuery::symbol("MSFT.US")
                .with_window(Some(today), Some(today))
                .with_limit(100),
        )
        .await
        .unwrap();
    let req = &mock.requests()[0];
    assert_eq!(req.path, "/api/news");
    assert_eq!(req.param("s"), Some("MSFT.US"));
    assert_eq!(req.param("from"), Some(today.to_string().as_str()));
    assert_eq!(req.param("to"), Some(today.to_string().as_str()));
    assert_eq!(
        (req.param("offset"), req.param("limit"), req.param("fmt")),
        (Some("0"), Some("100"), Some("json"))
    );
    assert_eq!(req.param("api_token"), Some(mock.key().as_str()));
    assert!(!page.articles.is_empty());
    assert!(page.articles.iter().all(|a| a.date.date_naive() == today));
    let all = c.news(&NewsQuery::symbol("MSFT.US").with_limit(100)).await.unwrap();
    assert!(all.articles.len() >= page.articles.len());
}

/// Every sample survives the article model: unicode and emoji intact, very long content,
/// missing or partial sentiment, empty symbols, odd offsets normalised to UTC; and the newest
/// article is "now", so freshness tests never rot.
#[tokio::test]
async fn samples_survive_the_article_model() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let mut all = Vec::new();
    for ticker in ["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"] {
        let batch = c.news_all(&NewsQuery::symbol(ticker), 5).await.unwrap();
        assert!(batch.is_complete(), "{ticker}");
        all.extend(batch.articles);
    }
    assert!(all
        .iter()
        .any(|a| a.title.contains('🚀') && a.title.contains("all-time high")));
    assert!(all.iter().any(|a| a.title.contains("日本")));
    assert!(all.iter().any(|a| a.content.len() > 20_000));
    assert!(all.iter().any(|a| a.sentiment.is_none()));
    assert!(all
        .iter()
        .any(|a| a.sentiment.is_some_and(|s| s.neg.is_none() && s.polarity > 0.5)));
    assert!(all.iter().any(|a| a.symbols.is_empty()));
    let newest = all.iter().map(|a| a.date).max().unwrap();
    assert!((Utc::now() - newest).abs() < TimeDelta::minutes(5), "newest {newest}");
    assert!(
        all.iter().any(|a| Utc::now() - a.date > TimeDelta::hours(24)),
        "stale ones too"
    );
    // The article shared by three tickers has one link in every file.
    let shared = all
        .iter()
        .filter(|a| a.title.starts_with("Microsoft, Apple and Nvidia"))
        .count();
    assert_eq!(shared, 3);
}

/// A tag query sends `t` (URL-encoded) and returns the articles with that tag.
#[tokio::test]
async fn tag_queries_send_t() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let q = NewsQuery::tag("ARTIFICIAL INTELLIGENCE");
    assert!(matches!(q.subject, Subject::Tag(_)));
    let page = c.news(&q).await.unwrap();
    assert_eq!(mock.requests()[0].param("t"), Some("ARTIFICIAL INTELLIGENCE"));
    assert!(mock.requests()[0].param("s").is_none());
    assert!(page.articles.len() >= 5);
    assert!(page
        .articles
        .iter()
        .all(|a| a.tags.iter().any(|t| t == "ARTIFICIAL INTELLIGENCE")));
}

/// A ticker without news answers an empty page, which ends a walk at once.
#[tokio::test]
async fn unknown_ticker_is_an_empty_complete_walk() {
    let mock = MockEodhd::start().await;
    let c = client(&config_for(&mock));
    let batch = c.news_all(&NewsQuery::symbol("NOPE.US"), 10).await.unwrap();
    assert!(batch.articles.is_empty() && batch.is_complete());
    assert_eq!(mock.request_count(), 1);
}

/// A page of several megabytes (long articles, a full page of them) is read whole: only a body
/// beyond the client's 32 MiB bound is refused.
#[tokio::test]
async fn a_page_of_several_megabytes_is_read_whole() {
    let mock = MockEodhd::start().await;
    let article = |i: usize| {
        json!({
            "date": "2024-06-05T20:35:00+00:00",
            "title": format!("Long read {i}"),
            "content": "x".repeat(300_000),
            "link": format!("https://example.com/long/{i}"),
            "symbols": ["AAPL.US"],
            "tags": [],
            "sentiment": {"polarity": 0.1, "neg": 0.0, "neu": 1.0, "pos": 0.0}
        })
    };
    mock.set_articles("AAPL.US", (0..10).map(article).collect());
    let c = client(&config_for(&mock));
    let page = c.news(&NewsQuery::symbol("AAPL.US").with_limit(10)).await.unwrap();
    assert_eq!(page.articles.len(), 10, "a ~3 MB page");
    assert!(page.articles.iter().all(|a| a.content.len() == 300_000));
}
