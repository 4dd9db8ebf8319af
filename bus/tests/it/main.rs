//! Integration tests of the bus against a real Redis from `mt5-fixtures`.
//!
//! Tests whose names contain `zero_loss` are the core zero-loss checks; CI runs them once more on
//! the process backend (`MT5_TEST_REDIS=process`).

mod classifier;
mod concurrent;
mod connection;
mod consumer_group;
mod dead_letter;
mod durability;
mod groups;
mod producer;
mod query;
mod query_refusals;
mod reclaim;
mod replicated_publish;
mod reply_decoder;
mod resolution;
mod sentinel;
mod settle;
mod shutdown;
mod support;
mod trim;
mod zero_loss;
