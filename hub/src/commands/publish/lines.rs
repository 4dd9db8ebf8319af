//! `publish` without `--data`: JSON lines from stdin, published in batches.
//!
//! Each line is `{"type":..,"data":..,"id"?:..,"source"?:..,"idempotency_key"?:..,"extensions"?:{..}}`;
//! blank lines are skipped. A bad line stops the command with exit code 2 naming the line: every
//! line before it is published (its entry id printed), nothing from the bad line on. So a fixed
//! input can be resumed from the bad line (`tail -n +N`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use mt5_bus::{Event, EventInput, PublishOptions, Published};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::{connect, published_line, DEFAULT_SOURCE};
use crate::cli::PublishArgs;
use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::print;
use crate::redis_conn::classify;

/// Lines per batch unless `--batch` says otherwise.
const DEFAULT_BATCH: usize = 100;
/// The stdin read buffer.
const STDIN_BUFFER: usize = 1 << 20;
/// Lines waiting in a batch are sent after this long without new input.
const IDLE_FLUSH: Duration = Duration::from_millis(100);

/// Reads stdin to the end (or until cancelled) and publishes every line.
///
/// Up to [`IN_FLIGHT`] batches are in flight at once on the producer's one connection (the next
/// one is parsed and sent while the previous one's reply is awaited); their entry ids are printed
/// in input order, each batch's with one write.
///
/// # Errors
/// [`HubError::Usage`] for a bad line (after publishing the lines before it), or the publish
/// error (after printing the ids of a batch sent after the failed one that was written).
pub(crate) async fn run(cfg: &HubConfig, cancel: &CancellationToken, args: &PublishArgs) -> Result<(), HubError> {
    let batch_size = args.batch.map_or(DEFAULT_BATCH, |b| b as usize);
    let source = args.source_or(DEFAULT_SOURCE);
    let producer = connect(cfg, cancel).await?;
    // Tokio reads stdin on its blocking pool, one hand-off per fill of this buffer: 8 KiB (the
    // default) made ~13 000 of them for 100 000 news lines.
    let mut lines = BufReader::with_capacity(STDIN_BUFFER, tokio::io::stdin()).lines();
    let mut batch: Vec<(Event, PublishOptions)> = Vec::with_capacity(batch_size);
    let mut line_no = 0usize;
    let mut sent = Sent::new(cfg, args);
    let publish = |batch: Vec<(Event, PublishOptions)>| -> InFlight<'_> {
        let producer = producer.clone();
        Box::pin(async move {
            let results = producer.publish_batch(&args.stream, &batch).await;
            (batch, results)
        })
    };
    loop {
        let next = tokio::select! {
            biased;
            Some((done, results)) = sent.in_flight.next(), if !sent.in_flight.is_empty() => {
                if !sent.print(&done, results)? {
                    return Ok(());
                }
                continue;
            }
            r = tokio::time::timeout(IDLE_FLUSH, lines.next_line()) => r,
            () = cancel.cancelled() => break,
        };
        let line = match next {
            Err(_idle) => {
                if !batch.is_empty() && !sent.push(publish(std::mem::take(&mut batch))).await? {
                    return Ok(());
                }
                continue;
            }
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                line_no += 1;
                sent.push(publish(std::mem::take(&mut batch))).await?;
                sent.finish().await?;
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
                sent.push(publish(std::mem::take(&mut batch))).await?;
                sent.finish().await?;
                return Err(HubError::Usage(format!(
                    "stdin line {line_no}: {msg}; the lines before it were published, nothing from this line on"
                )));
            }
        }
        if batch.len() >= batch_size && !sent.push(publish(std::mem::take(&mut batch))).await? {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        sent.push(publish(batch)).await?;
    }
    sent.finish().await?;
    tracing::debug!(
        published = sent.published,
        lines = line_no,
        "Published the lines of stdin."
    );
    Ok(())
}

/// Batches sent per command at most while their replies are awaited.
const IN_FLIGHT: usize = 2;

/// A batch's events and its publish result.
type Done = (Vec<(Event, PublishOptions)>, Result<Vec<Published>, mt5_bus::Error>);

/// The publish of one batch.
type InFlight<'a> = Pin<Box<dyn Future<Output = Done> + Send + 'a>>;

/// The batches in flight, in input order, and what has been printed.
struct Sent<'a> {
    cfg: &'a HubConfig,
    args: &'a PublishArgs,
    in_flight: FuturesOrdered<InFlight<'a>>,
    published: usize,
    /// The first publish failure, reported once the batches after it are printed.
    failed: Option<HubError>,
}

impl<'a> Sent<'a> {
    fn new(cfg: &'a HubConfig, args: &'a PublishArgs) -> Self {
        Sent {
            cfg,
            args,
            in_flight: FuturesOrdered::new(),
            published: 0,
            failed: None,
        }
    }

    /// Sends a batch, first waiting for the oldest one in flight when there are
    /// [`IN_FLIGHT`]. `Ok(false)` when stdout is closed.
    async fn push(&mut self, batch: InFlight<'a>) -> Result<bool, HubError> {
        while self.in_flight.len() >= IN_FLIGHT {
            if !self.next().await? {
                return Ok(false);
            }
        }
        if self.failed.is_some() {
            // Prints what is still in flight, then returns the failure.
            self.finish().await?;
        }
        self.in_flight.push_back(batch);
        Ok(true)
    }

    /// Waits for the oldest batch in flight and prints it.
    async fn next(&mut self) -> Result<bool, HubError> {
        match self.in_flight.next().await {
            Some((batch, results)) => self.print(&batch, results),
            None => Ok(true),
        }
    }

    /// Waits for every batch in flight and prints them; then the first failure, if any.
    async fn finish(&mut self) -> Result<(), HubError> {
        while !self.in_flight.is_empty() {
            if !self.next().await? {
                break;
            }
        }
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Prints a batch's entry ids with one write. A failed batch is kept to be reported after
    /// the ids of the batches sent after it (they may have been written): nothing new is sent
    /// once a batch failed.
    fn print(
        &mut self,
        batch: &[(Event, PublishOptions)],
        results: Result<Vec<Published>, mt5_bus::Error>,
    ) -> Result<bool, HubError> {
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                if self.failed.is_none() {
                    self.failed = Some(classify(self.cfg, e));
                }
                return Ok(true);
            }
        };
        self.published += batch.len();
        // One write per batch: a write and a flush per line cost the command more than the
        // publish itself.
        let mut out = String::with_capacity(results.len() * 24);
        for ((event, _), p) in batch.iter().zip(&results) {
            published_line(&mut out, event, p, self.args.json)?;
        }
        print(&out)
    }
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
