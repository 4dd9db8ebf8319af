//! What a handler receives and what it decides.

use std::future::Future;
use std::time::Duration;

use crate::envelope::Event;

/// Why an entry went to the dead letter stream (`dlq_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// Not a valid envelope (missing `id`/`type`/`data`, `data` not JSON, too large).
    Malformed,
    /// A well-formed entry of a type the consumer does not handle.
    Unsupported,
    /// Delivered `max_deliveries` times without success, or a poison entry read past it.
    MaxDeliveries,
    /// The handler gave up on it permanently.
    Handler,
}

impl DeadLetterReason {
    /// The `dlq_reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::Unsupported => "unsupported",
            DeadLetterReason::MaxDeliveries => "max_deliveries",
            DeadLetterReason::Handler => "handler",
        }
    }

    /// Parses a `dlq_reason` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "malformed" => DeadLetterReason::Malformed,
            "unsupported" => DeadLetterReason::Unsupported,
            "max_deliveries" => DeadLetterReason::MaxDeliveries,
            "handler" => DeadLetterReason::Handler,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One output of a handler: an event for a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    /// The output stream.
    pub stream: String,
    /// The event.
    pub event: Event,
}

/// What the handler decided for one entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done, or not interesting: acknowledged with nothing written.
    Ack,
    /// Write these outputs and acknowledge, atomically and only while the entry is still ours.
    Emit(Vec<Emission>),
    /// A transient failure: re-read the entry from the own pending list after `after`.
    Retry {
        /// The delay before the re-read.
        after: Duration,
    },
    /// A permanent failure: move the entry to the dead letter stream.
    DeadLetter {
        /// Why.
        reason: DeadLetterReason,
        /// A human-readable error, stored as `dlq_error`.
        error: String,
    },
}

impl Outcome {
    /// A permanent handler failure.
    pub fn dead_letter(error: impl Into<String>) -> Self {
        Outcome::DeadLetter {
            reason: DeadLetterReason::Handler,
            error: error.into(),
        }
    }

    /// One output.
    pub fn emit(stream: impl Into<String>, event: Event) -> Self {
        Outcome::Emit(vec![Emission {
            stream: stream.into(),
            event,
        }])
    }
}

/// One entry handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The input stream.
    pub stream: String,
    /// The group.
    pub group: String,
    /// The entry id.
    pub entry_id: String,
    /// Times the entry has been delivered by reads, this one included.
    pub deliveries: u64,
    /// The parsed event.
    pub event: Event,
}

/// Handles entries of a consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Whether this handler handles events of `event_type`; others are dead-lettered as
    /// `unsupported` without calling [`Handler::handle`].
    fn handles(&self, event_type: &str) -> bool {
        let _ = event_type;
        true
    }

    /// Decides what to do with one entry. Runs under the consumer's handler timeout; a timeout
    /// counts as a transient failure.
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason reads back from the `dlq_reason` it is stored as (the dead-letter tools
    /// filter by it), and nothing else reads as a reason.
    #[test]
    fn every_dead_letter_reason_parses_from_its_stored_name_and_nothing_else_does() {
        let all = [
            DeadLetterReason::Malformed,
            DeadLetterReason::Unsupported,
            DeadLetterReason::MaxDeliveries,
            DeadLetterReason::Handler,
        ];
        for r in all {
            assert_eq!(DeadLetterReason::parse(r.as_str()), Some(r));
            assert_eq!(r.to_string(), r.as_str());
        }
        for other in ["", "Malformed", "max-deliveries", "handler "] {
            assert_eq!(DeadLetterReason::parse(other), None, "{other:?}");
        }
    }
}
