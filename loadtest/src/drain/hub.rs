//! The Rust side: `news.raw.v1` events published into a fresh raw stream with the bus's
//! producer, and `mt5-hub filter` processes configured with the reference's rules through a
//! TOML file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mt5_bus::{BusConfig, BusMetrics, Event, EventProducer, PublishOptions, RedisConfig};
use mt5_chaos::harness::{Metrics, Streams};
use mt5_fixtures::admin::Admin;
use serde_json::{json, Value as Json};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::child::Proc;
use super::python::ReferenceInfo;
use super::Sentiment;
use crate::{LoadError, Result};

/// The events' CloudEvents `source`, as the fetcher's default.
const SOURCE: &str = "eodhd";
/// The raw news type of the contract.
const RAW_TYPE: &str = "news.raw.v1";
/// Events per batch of the preload.
const PRELOAD_BATCH: usize = 500;
/// The preload's entry size limit: Redis's own (`proto-max-bulk-len`, 512 MiB), so the preload
/// writes every event the generator made, as the fetcher's limit (1 MiB) would not.
const PRELOAD_MAX_ENTRY_BYTES: usize = 512 * 1024 * 1024;
/// Characters of the content VADER scores with the title: all of it, as the reference does
/// (mt5-hub's default is the first 280). The harness checks it against each backlog's longest
/// content.
pub(crate) const VADER_CONTENT_CHARS: usize = 1_000_000;

/// What the filters' sentiment scorer is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScorerSettings {
    /// `sentiment_content_chars`.
    pub(crate) content_chars: usize,
    /// `sentiment_cache_size`: titles per process.
    pub(crate) cache_size: u64,
}

impl ScorerSettings {
    /// The whole content, and the reference's cache size.
    pub(crate) fn of(rules: &ReferenceInfo) -> Self {
        ScorerSettings {
            content_chars: VADER_CONTENT_CHARS,
            cache_size: rules.cache_size,
        }
    }
}

/// The `news.raw.v1` event of one generated pair, as the fetcher builds it
/// (`news/src/fetcher`): `{ticker, fetch_time, source_query, article}` and a `ticker` extension.
pub(crate) fn raw_event(ticker: &str, article: &Json, fetch_time: &str) -> Event {
    let data = json!({
        "ticker": ticker,
        "fetch_time": fetch_time,
        "source_query": format!("s={ticker}"),
        "article": article,
    });
    Event::new(SOURCE, RAW_TYPE, data)
        .with_extension("ticker", ticker)
        .expect("`ticker` is a valid extension name")
}

/// The preload's producer: the bus's [`EventProducer`] on `redis_url`, with no group to ensure
/// (the harness creates the group itself), no backlog limit and Redis's own entry size limit, so
/// it writes exactly the events it is given: each one plain `XADD <stream> * <fields>`, untrimmed,
/// as the fetcher publishes.
///
/// # Errors
/// The bus's error (Redis unreachable after its bounded retries).
pub(crate) async fn producer(redis_url: &str) -> Result<EventProducer> {
    let redis = RedisConfig::default().with_url(redis_url);
    let mut bus = BusConfig::default();
    bus.groups.clear();
    bus.trim.backlog_limit = 0;
    bus.max_entry_bytes = PRELOAD_MAX_ENTRY_BYTES;
    Ok(EventProducer::connect(&redis, &bus, BusMetrics::default(), CancellationToken::new()).await?)
}

/// Publishes `events` to `stream`, untrimmed, 500 per batch (`publish_each`, as
/// `publish_batch` without copying the events: one `MULTI`/`EXEC` of plain `XADD`s each, one
/// round trip).
///
/// # Errors
/// The bus's error.
pub(crate) async fn preload(producer: &EventProducer, stream: &str, events: &[Event]) -> Result<()> {
    let plain = PublishOptions::default();
    for chunk in events.chunks(PRELOAD_BATCH) {
        let batch: Vec<(&Event, &PublishOptions)> = chunk.iter().map(|e| (e, &plain)).collect();
        for published in producer.publish_each(stream, &batch).await? {
            published?;
        }
    }
    Ok(())
}

/// Makes the whole backlog visible to consumers blocked on `>` of a group created at `$`, in
/// one step: `MULTI`, `XGROUP SETID <stream> <group> 0 ENTRIESREAD 0`, `XADD` of `last` (its
/// fields as the bus writes them), `EXEC`. The XADD wakes the blocked readers, which then read
/// from the start. The benchmark's start signal, so an administration step
/// ([`Admin::rewind_group_and_add`]), not a publish.
///
/// # Errors
/// The admin's error.
pub(crate) async fn release(admin: &mut Admin, streams: &Streams, last: &Event) -> Result<()> {
    admin
        .rewind_group_and_add(&streams.raw, &streams.group, &last.to_fields())
        .await?;
    Ok(())
}

/// A TOML string (JSON's escapes of these ASCII names are TOML's).
fn toml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The filters' config: Redis, fresh streams, HTTP on a free port, and the reference's rules
/// (whitelist, keywords, `positive` mode above its threshold, its freshness, its VADER cache
/// size and VADER on the whole content as the reference scores it, both from `scorer`). Bus
/// settings are the shipped defaults.
pub(crate) fn config_toml(
    redis_url: &str,
    streams: &Streams,
    rules: &ReferenceInfo,
    scorer: ScorerSettings,
    sentiment: Sentiment,
) -> String {
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    format!(
        r#"# Written by `mt5-loadtest drain`: mt5-hub filters with the Python reference's rules.
[redis]
url = {url}

[bus]
deadletter_stream = {dlq}

[[bus.groups]]
stream = {raw}
group = {group}

[http]
addr = "127.0.0.1:0"

[news.filter]
tickers = {tickers}
keywords = {keywords}
min_sentiment = {threshold:?}
sentiment_mode = "positive"
sentiment_source = {source}
max_age_hours = {max_age}
input_stream = {raw}
output_stream = {filtered}
group = {group}
sentiment_cache_size = {cache}
sentiment_content_chars = {content_chars}
"#,
        url = toml_str(redis_url),
        dlq = toml_str(&streams.deadletter),
        raw = toml_str(&streams.raw),
        filtered = toml_str(&streams.filtered),
        group = toml_str(&streams.group),
        tickers = list(&rules.tickers),
        keywords = list(&rules.keywords),
        threshold = rules.threshold,
        source = toml_str(sentiment.as_str()),
        max_age = rules.max_age_hours,
        cache = scorer.cache_size,
        content_chars = scorer.content_chars,
    )
}

/// `mt5-hub` and where its filters keep their config and logs.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    bin: PathBuf,
}

impl Hub {
    pub(crate) fn new(bin: PathBuf) -> Self {
        Hub { bin }
    }

    /// Starts `mt5-hub --config <config> filter --consumer <name>`, with no `MT5_*` variable of
    /// the caller's environment (they would override the file).
    ///
    /// # Errors
    /// [`LoadError::Setup`] when it cannot be started.
    pub(crate) fn spawn_filter(&self, config: &Path, name: &str, log: &Path) -> Result<Proc> {
        let mut cmd = Command::new(&self.bin);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("MT5_") || k == "EODHD_API_KEY" {
                cmd.env_remove(&key);
            }
        }
        cmd.arg("--config")
            .arg(config)
            .args(["filter", "--consumer", name])
            .env("MT5_LOG", "info");
        Proc::spawn(name, cmd, log)
    }
}

/// The filter's HTTP address, from its `mt5-hub: http listening on <addr>` line.
///
/// # Errors
/// [`LoadError::Setup`]: the process exited, or no such line within `timeout`.
pub(crate) async fn http_addr(p: &mut Proc, timeout: Duration) -> Result<SocketAddr> {
    const MARK: &str = "mt5-hub: http listening on ";
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(addr) = p.log().lines().find_map(|l| l.strip_prefix(MARK).map(str::to_string)) {
            return addr
                .trim()
                .parse()
                .map_err(|e| LoadError::Setup(format!("{}: bad address {addr:?}: {e}", p.label())));
        }
        p.ensure_running()?;
        if Instant::now() >= deadline {
            return Err(LoadError::Setup(format!(
                "{} did not listen within {timeout:?}:\n{}",
                p.label(),
                p.log_tail(15)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a filter says it decided (`mt5_news_filter_total` of its `/metrics`) and how often it
/// ran its scorer (`mt5_news_sentiment_scored_total`, `mt5_news_sentiment_cache_hits_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decisions {
    /// Events passed.
    pub(crate) passed: u64,
    /// Events decided (passed, rejected, invalid).
    pub(crate) decided: u64,
    /// Texts the scorer scored (title-cache misses).
    pub(crate) scored: u64,
    /// Scores answered from the title cache.
    pub(crate) cache_hits: u64,
}

/// Scrapes the filter at `addr`.
///
/// # Errors
/// [`LoadError::Run`] when the request fails.
pub(crate) async fn decisions(addr: SocketAddr) -> Result<Decisions> {
    let url = format!("http://{addr}/metrics");
    let err = |e: reqwest::Error| LoadError::Run(format!("scraping {url}: {e}"));
    let text = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(err)?
        .get(&url)
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?
        .text()
        .await
        .map_err(err)?;
    parse_decisions(&text).ok_or_else(|| {
        LoadError::Run(format!(
            "{url} has no mt5_news_filter_total, mt5_news_sentiment_scored_total or mt5_news_sentiment_cache_hits_total"
        ))
    })
}

/// The decisions and scorer counts of a `/metrics` text; `None` when a family is missing (a
/// filter too old to count its scorer would otherwise look as if it never scored).
fn parse_decisions(text: &str) -> Option<Decisions> {
    const FAMILIES: [&str; 3] = [
        "mt5_news_filter_total",
        "mt5_news_sentiment_scored_total",
        "mt5_news_sentiment_cache_hits_total",
    ];
    let has = |family: &str| {
        text.lines()
            .any(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with(['{', ' '])))
    };
    if !FAMILIES.iter().all(|f| has(f)) {
        return None;
    }
    let m = Metrics(text.to_string());
    Some(Decisions {
        passed: m.sum(FAMILIES[0], &[("decision", "passed")]) as u64,
        decided: m.sum(FAMILIES[0], &[]) as u64,
        scored: m.sum(FAMILIES[1], &[]) as u64,
        cache_hits: m.sum(FAMILIES[2], &[]) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ReferenceInfo {
        ReferenceInfo {
            python: "3.11.7".into(),
            versions: vec![],
            tickers: vec!["AAPL.US".into(), "JNJ.US".into()],
            keywords: vec!["earnings".into(), "buyback".into()],
            threshold: 0.5,
            max_age_hours: 24,
            cache_size: 50_000,
        }
    }

    /// The config names the reference's rules and the run's fresh streams, and is valid TOML
    /// with the keys `mt5-hub` knows.
    #[test]
    fn the_config_carries_the_reference_rules() {
        let s = Streams::under("drain:r1");
        let scorer = ScorerSettings::of(&info());
        let t = config_toml("redis://127.0.0.1:6390", &s, &info(), scorer, Sentiment::Eodhd);
        assert!(t.contains(r#"tickers = ["AAPL.US","JNJ.US"]"#), "{t}");
        assert!(t.contains(r#"keywords = ["earnings","buyback"]"#), "{t}");
        assert!(t.contains("min_sentiment = 0.5\n"), "{t}");
        assert!(t.contains("sentiment_mode = \"positive\""), "{t}");
        assert!(t.contains("sentiment_source = \"eodhd\""), "{t}");
        assert!(t.contains("input_stream = \"drain:r1:news_raw\""), "{t}");
        assert!(t.contains("deadletter_stream = \"drain:r1:deadletter\""), "{t}");
        assert!(t.contains("sentiment_cache_size = 50000\n"), "{t}");
        assert!(t.contains("sentiment_content_chars = 1000000\n"), "{t}");
        assert!(config_toml("u", &s, &info(), scorer, Sentiment::Vader).contains("sentiment_source = \"vader\""));
    }

    /// The scrape sums the decisions and the scorer's counters; a filter without the scorer's
    /// counters is an error, not zero calls.
    #[test]
    fn decisions_and_scorer_counts_are_scraped() {
        let text = "# TYPE mt5_news_filter_total counter\n\
            mt5_news_filter_total{decision=\"passed\",reason=\"passed\"} 3\n\
            mt5_news_filter_total{decision=\"rejected\",reason=\"stale\"} 7\n\
            mt5_news_sentiment_cache_hits_total 2\n\
            mt5_news_sentiment_scored_total{model=\"vader\"} 4\n";
        assert_eq!(
            parse_decisions(text),
            Some(Decisions {
                passed: 3,
                decided: 10,
                scored: 4,
                cache_hits: 2
            })
        );
        let old = "mt5_news_filter_total{decision=\"passed\",reason=\"passed\"} 3\n";
        assert_eq!(parse_decisions(old), None);
    }

    /// The raw event has the contract's envelope and data shape.
    #[test]
    fn raw_events_have_the_fetchers_shape() {
        let article = json!({"title": "t", "link": "https://x/1", "date": "2026-12-05T01:00:00+00:00"});
        let e = raw_event("AAPL.US", &article, "2026-12-05T02:00:00.000Z");
        let fields: Vec<(String, String)> = e.to_fields();
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        assert_eq!(get("type").as_deref(), Some("news.raw.v1"));
        assert_eq!(get("source").as_deref(), Some("eodhd"));
        assert_eq!(get("ticker").as_deref(), Some("AAPL.US"));
        let data: Json = serde_json::from_str(&get("data").unwrap()).unwrap();
        assert_eq!(data["article"]["link"], "https://x/1");
        assert_eq!(data["source_query"], "s=AAPL.US");
        assert_eq!(data["fetch_time"], "2026-12-05T02:00:00.000Z");
    }
}
