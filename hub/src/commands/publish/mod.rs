//! `publish`: one event (`--data`), JSON lines from stdin, or a paced load (`--rate`).

mod bucket;
mod lines;
mod load;
#[cfg(feature = "chaos")]
mod poison;
mod template;

use mt5_bus::{BusMetrics, Event, EventProducer, PublishOptions, Published};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::PublishArgs;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::print;
use crate::redis_conn::classify;

/// Runs `publish` in the mode its flags select.
///
/// # Errors
/// Usage errors (bad JSON, bad line), Redis unreachable after bounded retries (one-shot and
/// stdin modes), or a publish failure.
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, args: PublishArgs) -> Result<(), HubError> {
    if args.stream.trim().is_empty() {
        return Err(HubError::Usage("--stream cannot be empty".into()));
    }
    if let Some(rate) = args.load.rate {
        return load::run(cfg, cancel, &args, rate).await;
    }
    match &args.data {
        Some(data) => one(cfg, cancel, &args, data).await,
        None => lines::run(cfg, cancel, &args).await,
    }
}

/// The event source of `--data` and stdin publishes unless `--source` says otherwise.
const DEFAULT_SOURCE: &str = "mt5-hub/cli";

impl PublishArgs {
    /// `--source`, or `default`.
    fn source_or(&self, default: &str) -> String {
        self.source.clone().unwrap_or_else(|| default.to_string())
    }
}

/// A producer with the bounded retries of one-shot commands.
async fn connect(cfg: &HubConfig, cancel: &CancellationToken) -> Result<EventProducer, HubError> {
    EventProducer::connect(&cfg.redis, &cfg.bus, BusMetrics::default(), cancel.clone())
        .await
        .map_err(|e| classify(cfg, e))
}

/// `--json` output of one publish.
#[derive(Debug, Serialize)]
struct PublishedLine<'a> {
    /// This publish's event id; `None` for a duplicate (the stream keeps the first publish's).
    event_id: Option<&'a str>,
    entry_id: &'a str,
    duplicate: bool,
}

/// Prints one result: the entry id (plus ` duplicate`), or a JSON object.
fn print_published(event: &Event, p: &Published, json: bool) -> Result<bool, HubError> {
    let mut line = String::new();
    published_line(&mut line, event, p, json)?;
    print(&line)
}

/// Appends the output line of one result (newline included) to `out`.
fn published_line(out: &mut String, event: &Event, p: &Published, json: bool) -> Result<(), HubError> {
    if json {
        let line = PublishedLine {
            event_id: (!p.duplicate).then_some(event.id.as_str()),
            entry_id: &p.entry_id,
            duplicate: p.duplicate,
        };
        let text = serde_json::to_string(&line).map_err(|e| HubError::io("encoding JSON", std::io::Error::other(e)))?;
        out.push_str(&text);
    } else {
        out.push_str(&p.entry_id);
        if p.duplicate {
            out.push_str(" duplicate");
        }
    }
    out.push('\n');
    Ok(())
}

async fn one(cfg: &HubConfig, cancel: &CancellationToken, args: &PublishArgs, data: &str) -> Result<(), HubError> {
    let Some(event_type) = args.event_type.as_deref().filter(|t| !t.is_empty()) else {
        return Err(HubError::Usage("--type is required with --data".into()));
    };
    let data: serde_json::Value =
        serde_json::from_str(data).map_err(|e| HubError::Usage(format!("--data is not valid JSON: {e}")))?;
    let event = Event::new(args.source_or(DEFAULT_SOURCE), event_type, data);
    let opts = match &args.idempotency_key {
        Some(k) if k.is_empty() => return Err(HubError::Usage("--idempotency-key cannot be empty".into())),
        Some(k) => PublishOptions::idempotent(k.clone()),
        None => PublishOptions::default(),
    };
    let producer = connect(cfg, cancel).await?;
    let published = producer
        .publish_with(&args.stream, &event, &opts)
        .await
        .map_err(|e| classify(cfg, e))?;
    print_published(&event, &published, args.json)?;
    Ok(())
}
