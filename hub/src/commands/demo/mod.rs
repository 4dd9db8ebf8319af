//! `mt5-hub demo`: the whole news pipeline on one machine with nothing to set up.
//!
//! - Redis: the configured one when a URL was given (`MT5_REDIS_URL`, `MT5_REDIS__URL` or
//!   `redis.url` in the config file; the demo then writes to its configured streams and says
//!   so), else a `redis-server` of its own on a free loopback port in a temporary directory
//!   (`MT5_REDIS_SERVER` names the binary; `none` hides it), else, where Docker answers, a
//!   container of `MT5_REDIS_IMAGE` (default `redis:7.0`, pulled when not present) on a free
//!   loopback port; either is removed on exit.
//! - News: with `EODHD_API_KEY` set, the EODHD API; else the bundled samples (dates shifted
//!   to now) from a local stand-in of `GET /api/news`. Either way through the real
//!   [`mt5_news::EodhdClient`] and [`mt5_news::Fetcher`].
//! - One fetch round over the sample tickers, two filter consumers of the filter group until
//!   it has drained, then a table of the news that passed and a summary (fetched, published,
//!   passed, rejected by reason, dead-lettered, end-to-end latency). Progress goes to stderr,
//!   the report to stdout (`--json` for a machine-readable one).
//!
//! # Layout
//! - `own_redis`: which Redis of its own the demo starts (a process, else a container).
//! - `local_redis`: the temporary `redis-server`, `MT5_REDIS_SERVER`, and "was a Redis URL
//!   configured?".
//! - `container`: the temporary Redis container (the `docker` CLI).
//! - `sample_server`: the sample `/api/news` server (axum).
//! - `pipeline`: fetch, filter, drain, read back.
//! - `report`: the table, the summary, the JSON.
//! - `progress`: the spinner or plain progress lines on stderr.

mod container;
mod local_redis;
mod own_redis;
mod pipeline;
mod progress;
mod report;
mod sample_server;

use std::path::Path;

use clap::Args;
use mt5_bus::config::GroupSpec;
use mt5_bus::Secret;
use mt5_news::filter::SentimentMode;
use mt5_news::sample::SAMPLE_TICKERS;
use tokio_util::sync::CancellationToken;

use crate::config::{HubConfig, EODHD_API_KEY_ENV as API_KEY_ENV};
use crate::error::HubError;
use crate::output;
use local_redis::redis_url_configured;
use own_redis::OwnRedis;
use progress::Progress;
use report::Setting;
use sample_server::{SampleServer, SAMPLE_API_KEY};

/// Days before today the sample round asks for: the samples span about 57 hours.
const SAMPLE_LOOKBACK_DAYS: u32 = 3;
/// The demo's consumers block this long per read, so they stop quickly at the end.
const DEMO_BLOCK_MS: u64 = 200;

/// `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Print the report as one JSON document (summary, per-ticker counts and the news that
    /// passed) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs the demo. `config_path` is the `--config` file, used to tell whether the user chose a
/// Redis.
///
/// # Errors
/// [`HubError::Failed`] when neither `redis-server` nor Docker can give it a Redis, or the
/// pipeline fails; configuration errors (exit 2), Redis unreachable (exit 3).
pub(crate) async fn run(
    config_path: Option<&Path>,
    cfg: &HubConfig,
    cancel: &CancellationToken,
    args: DemoArgs,
) -> Result<(), HubError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut progress = Progress::stderr();

    let mut redis_cfg = cfg.redis.clone();
    let local = if redis_url_configured(config_path, &env) {
        progress.note(format!(
            "Using the configured Redis at {}: the demo writes to its streams ({}, {}).",
            cfg.redis.redacted_url(),
            mt5_bus::NEWS_RAW_STREAM,
            mt5_bus::NEWS_FILTERED_STREAM
        ));
        None
    } else {
        let own = OwnRedis::start(cancel, &mut progress).await?;
        redis_cfg.url = own.url();
        redis_cfg.password = None;
        Some(own)
    };

    let use_api = !cfg.news.eodhd.api_key.expose().trim().is_empty();
    let server = if use_api {
        progress.note(format!(
            "Using the EODHD API at {} ({API_KEY_ENV} is set).",
            cfg.news.eodhd.base_url
        ));
        None
    } else {
        match SampleServer::start(cancel).await {
            Ok(s) => Some(s),
            Err(e) => {
                if let Some(local) = local {
                    local.stop().await;
                }
                return Err(e);
            }
        }
    };

    let demo_cfg = demo_config(cfg, redis_cfg, server.as_ref());
    let result = run_with(
        &demo_cfg,
        local.as_ref().map(OwnRedis::kind),
        server.is_some(),
        cancel,
        &args,
        &mut progress,
    )
    .await;

    progress.clear();
    if let Some(server) = server {
        server.stop().await;
    }
    if let Some(local) = local {
        local.stop().await;
    }
    let text = result?;
    output::print(&text)?;
    Ok(())
}

/// The demo's effective configuration: `cfg` with the chosen Redis, the sample server as
/// EODHD (sample tickers, a lookback covering every sample) unless the API is used, short
/// consumer reads (so the consumers stop quickly at the end), and the filter's group among the
/// groups created before the first publish.
fn demo_config(cfg: &HubConfig, redis: mt5_bus::RedisConfig, server: Option<&SampleServer>) -> HubConfig {
    let mut demo = cfg.clone();
    demo.redis = redis;
    if let Some(server) = server {
        demo.news.eodhd = demo
            .news
            .eodhd
            .clone()
            .with_base_url(server.base_url())
            .with_api_key(Secret::new(SAMPLE_API_KEY))
            .with_paging(10, 10);
        demo.news.fetcher = demo
            .news
            .fetcher
            .clone()
            .with_watchlist(SAMPLE_TICKERS.iter().copied())
            .with_lookback_days(SAMPLE_LOOKBACK_DAYS);
    }
    demo.bus.consumer.block_ms = DEMO_BLOCK_MS;
    let f = &demo.news.filter;
    if !demo
        .bus
        .groups
        .iter()
        .any(|g| g.stream == f.input_stream && g.group == f.group)
    {
        demo.bus.groups.push(GroupSpec {
            stream: f.input_stream.clone(),
            group: f.group.clone(),
        });
    }
    demo
}

/// Runs the pipeline on the demo's configuration and renders the report.
async fn run_with(
    cfg: &HubConfig,
    own_redis: Option<&'static str>,
    samples: bool,
    cancel: &CancellationToken,
    args: &DemoArgs,
    progress: &mut Progress,
) -> Result<String, HubError> {
    let filter = &cfg.news.filter;
    let sentiment_rule = match filter.sentiment_mode {
        SentimentMode::Positive => format!("score > {:.2}", filter.min_sentiment),
        _ => format!("|score| > {:.2}", filter.min_sentiment),
    };
    let mut rules = Vec::new();
    if !filter.tickers.is_empty() {
        rules.push("a listed ticker".to_string());
    }
    rules.push(format!("at most {}h old", filter.max_age_hours));
    if !filter.keywords.is_empty() {
        rules.push("a keyword".to_string());
    }
    rules.push(sentiment_rule.clone());
    let setting = Setting {
        source: if samples { "sample" } else { "eodhd" },
        redis: own_redis.unwrap_or("configured"),
        redis_url: cfg.redis.redacted_url(),
        tickers: cfg.news.fetcher.watchlist.clone(),
        raw_stream: cfg.news.fetcher.stream.clone(),
        filtered_stream: filter.output_stream.clone(),
        sentiment_rule,
        pass_rule: rules.join(", "),
    };
    let outcome = pipeline::run(cfg, cancel, progress).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&report::json(&setting, &outcome))
            .map_err(|e| HubError::io("encoding JSON", std::io::Error::other(e)))?;
        Ok(format!("{text}\n"))
    } else {
        Ok(report::text(&setting, &outcome))
    }
}
