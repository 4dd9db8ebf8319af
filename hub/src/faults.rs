//! Fault injection hooks for the chaos suite: fail points of the `fail` crate in the filter's
//! handler path. Compiled only with the `chaos` cargo feature (`cargo build -p mt5-hub
//! --features chaos`; `mt5-hub --version` then says `(features: chaos)`), so a shipped binary
//! has neither the fail points nor the `FAILPOINTS` handling. Even then they are inert unless
//! the process starts with `FAILPOINTS` set, e.g.
//! `FAILPOINTS='filter-poison=return(CHAOS-POISON);filter-delay=return(20)'`:
//!
//! - `filter-poison=return(MARKER)`: the filter aborts its process (`std::process::abort`, as a
//!   segfault would) when it handles an event whose `data.article.title` contains `MARKER`. Such
//!   an entry keeps killing every consumer that reads it, until its delivery count passes
//!   `max_deliveries` and it is dead-lettered unread (`max_deliveries`).
//! - `filter-delay=return(MS)`: the filter waits `MS` ms (asynchronously) before handling each
//!   entry: a slow consumer.
//!
//! Any other `fail` action (`sleep(ms)`, `panic`, `pct%...`) works on these names too. Documented
//! in `docs/reliability.md`, "Fault injection hooks".

use std::time::Duration;

use mt5_bus::{Delivery, Handler, Outcome};

/// The env var holding the fail point configuration (`name=actions;name=actions`).
pub(crate) const ENV_FAILPOINTS: &str = "FAILPOINTS";
/// Aborts the process on an event whose title contains the argument.
pub(crate) const FILTER_POISON: &str = "filter-poison";
/// Delays every handler call by the argument, in ms.
pub(crate) const FILTER_DELAY: &str = "filter-delay";

/// Configures the fail points from `FAILPOINTS`; returns the configured names (empty when unset).
///
/// # Errors
/// A message naming the bad entry (exit code 2).
pub(crate) fn init() -> Result<Vec<String>, String> {
    let Ok(spec) = std::env::var(ENV_FAILPOINTS) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, actions)) = entry.split_once('=') else {
            return Err(format!("{ENV_FAILPOINTS}: {entry:?} is not name=actions"));
        };
        fail::cfg(name.trim(), actions.trim()).map_err(|e| format!("{ENV_FAILPOINTS}: {entry:?}: {e}"))?;
        names.push(name.trim().to_string());
    }
    Ok(names)
}

/// The argument of `name` when it is configured as `return(arg)`.
fn fail_arg(name: &str) -> Option<String> {
    fail::fail_point!(name, |arg: Option<String>| arg);
    None
}

/// A handler with the fault injection hooks in front of it.
#[derive(Debug)]
pub(crate) struct Hooked<H>(pub(crate) H);

impl<H: Handler> Handler for Hooked<H> {
    fn handles(&self, event_type: &str) -> bool {
        self.0.handles(event_type)
    }

    async fn handle(&self, delivery: &Delivery) -> Outcome {
        if let Some(ms) = fail_arg(FILTER_DELAY).and_then(|a| a.trim().parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(marker) = fail_arg(FILTER_POISON).filter(|m| !m.is_empty()) {
            let data = delivery.event.data.to_value();
            let title = data
                .pointer("/article/title")
                .and_then(|t| t.as_str())
                .unwrap_or_default();
            if title.contains(&marker) {
                tracing::error!(
                    entry_id = %delivery.entry_id,
                    event_id = %delivery.event.id,
                    deliveries = delivery.deliveries,
                    "Fault injection: aborting the process on a poison entry (filter-poison)."
                );
                eprintln!(
                    "mt5-hub: fault injection: abort on poison entry {} (delivery {})",
                    delivery.entry_id, delivery.deliveries
                );
                std::process::abort();
            }
        }
        self.0.handle(delivery).await
    }
}
