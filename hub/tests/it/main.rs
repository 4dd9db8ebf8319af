//! Integration tests of the `mt5-hub` binary: each runs the real binary as a child process
//! against a real Redis from `mt5-fixtures`, with streams under the fixture's random prefix.

mod alert_relay;
mod config;
mod deadletter;
mod demo;
mod gateway;
mod groups;
mod news;
mod observability;
mod publish;
mod service;
mod streams;
mod support;
mod unreachable;
