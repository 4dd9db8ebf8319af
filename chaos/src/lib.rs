//! `mt5-chaos`: the chaos layer of mt5-hub. Real processes under load, faults injected, a
//! history recorded, and a checker that gives the verdict.
//!
//! # Layout
//! - `proxy`: the fault proxy speaking the Toxiproxy HTTP API (on `noxious`).
//! - `harness`: starting and killing `mt5-hub` processes and Redis for a scenario.
//! - `history`: the publisher's history file.
//! - `checker`: reads the streams back and gives the verdict.
//! - `report`: the one-line verdicts and `target/chaos/report.md`.

pub mod checker;
pub mod harness;
pub mod history;
pub mod proxy;
pub mod report;
