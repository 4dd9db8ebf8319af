//! The EODHD client against the mock EODHD: pagination, every fault class, key redaction.
//! (Rate limiter, quota and breaker timing are unit tests next to their code, on a paused
//! tokio clock; these run on real time because the mock server does.)

mod faults;
mod pagination;
mod redaction;
pub(crate) mod support;
