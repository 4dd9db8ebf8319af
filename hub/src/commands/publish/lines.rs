//! `publish` without `--data`: JSON lines from stdin, published in batches.
//!
//! Each line is `{"type":..,"data":..,"id"?:..,"source"?:..,"idempotency_key"?:..,"extensions"?:{..}}`;
//! blank lines are skipped. A bad line stops the command with exit code 2 naming the line: every
//! line before it is published (its entry id printed), nothing from the bad line on. So a fixed
//! input can be resumed from the bad line (`tail -n +N`).

use std::time::Duration;

use mt5_bus::{Event, EventInput, PublishOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::{connect, print_published, DEFAULT_SOURCE};
use crate::cli::PublishArgs;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::redis_conn::classify;

/// Lines per batch unless `--batch` says otherwise.
const DEFAULT_BATCH: usize = 100;
/// Lines waiting in a batch are sent after this long without new input.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// Reads stdin to the end (or until cancelled) and publishes every line.
///
/// # Errors
/// [`HubError::Usage`] for a bad line (after publishing the lines before it), or the publish
/// error.
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, args: &PublishArgs) -> Result<(), HubError> {
    let batch_size = args.batch.map_or(DEFAULT_BATCH, |b| b as usize);
    let source = args.source_or(DEFAULT_SOURCE);
    let producer = connect(cfg, cancel).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut batch: Vec<(Event, PublishOptions)> = Vec::with_capacity(batch_size);
    let mut line_no = 0usize;
    let mut published = 0usize;
    let flush = |batch: Vec<(Event, PublishOptions)>| {
        let producer = producer.clone();
        async move {
            if batch.is_empty() {
                return Ok(true);
            }
            let results = producer
                .publish_batch(&args.stream, &batch)
                .await
                .map_err(|e| classify(cfg, e))?;
            for ((event, _), p) in batch.iter().zip(&results) {
                if !print_published(event, p, args.json)? {
                    return Ok(false);
                }
            }
            Ok::<bool, HubError>(true)
        }
    };
    loop {
        let next = tokio::select! {
            r = tokio::time::timeout(IDLE_FLUSH, lines.next_line()) => r,
            () = cancel.cancelled() => break,
        };
        let line = match next {
            Err(_idle) => {
                published += batch.len();
                if !flush(std::mem::take(&mut batch)).await? {
                    return Ok(());
                }
                continue;
            }
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                line_no += 1;
                flush(std::mem::take(&mut batch)).await?;
                return Err(HubError::Usage(format!(
                    "stdin line {line_no}: cannot be read: {e}; nothing from this line on was published"
                )));
            }
        };
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, args.event_type.as_deref(), &source) {
            Ok(item) => batch.push(item),
            Err(msg) => {
                flush(std::mem::take(&mut batch)).await?;
                return Err(HubError::Usage(format!(
                    "stdin line {line_no}: {msg}; the lines before it were published, nothing from this line on"
                )));
            }
        }
        if batch.len() >= batch_size {
            published += batch.len();
            if !flush(std::mem::take(&mut batch)).await? {
                return Ok(());
            }
        }
    }
    published += batch.len();
    flush(batch).await?;
    tracing::debug!(published, lines = line_no, "Published the lines of stdin.");
    Ok(())
}

/// Parses one input line into an event and its options (the envelope's own input type, the
/// one the gateway reads too).
///
/// # Errors
/// A message saying what is wrong with the line.
pub(crate) fn parse_line(
    line: &str,
    default_type: Option<&str>,
    default_source: &str,
) -> Result<(Event, PublishOptions), String> {
    line.parse::<EventInput>()
        .and_then(|input| input.into_event(default_type, default_source))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented key is read; defaults fill `type` and `source`.
    #[test]
    fn a_full_line_is_parsed() {
        let (e, o) = parse_line(
            r#"{"type":"t.v1","data":{"a":1},"id":"abc","source":"me","idempotency_key":"k1","extensions":{"ticker":"AAPL.US"}}"#,
            None,
            "cli",
        )
        .unwrap();
        assert_eq!(
            (e.event_type.as_str(), e.id.as_str(), e.source.as_str()),
            ("t.v1", "abc", "me")
        );
        assert_eq!(e.data, serde_json::json!({"a": 1}));
        assert_eq!(e.extensions["ticker"], "AAPL.US");
        assert_eq!(o.idempotency_key.as_deref(), Some("k1"));
        let (e, o) = parse_line(r#"{"data":null}"#, Some("dflt.v1"), "cli").unwrap();
        assert_eq!((e.event_type.as_str(), e.source.as_str()), ("dflt.v1", "cli"));
        assert_eq!(e.data, serde_json::Value::Null);
        assert!(o.idempotency_key.is_none());
    }

    /// Bad lines say what is wrong.
    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (line, expect) in [
            ("{nope", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"data":1}"#, "`type` is missing"),
            (r#"{"type":"t"}"#, "`data` is missing"),
            (r#"{"type":"t","data":1,"extra":2}"#, "unknown key `extra`"),
            (r#"{"type":5,"data":1}"#, "`type` must be"),
            (r#"{"type":"t","data":1,"extensions":{"data":"x"}}"#, "extension `data`"),
            (
                r#"{"type":"t","data":1,"extensions":{"Ticker":"x"}}"#,
                "extension `Ticker`",
            ),
            (
                r#"{"type":"t","data":1,"extensions":{"dlq_reason":"x"}}"#,
                "extension `dlq_reason`",
            ),
            (r#"{"type":"t","data":1,"extensions":{"n":1}}"#, "must be a string"),
        ] {
            let err = parse_line(line, None, "cli").unwrap_err();
            assert!(err.contains(expect), "{line}: {err}");
        }
    }
}
