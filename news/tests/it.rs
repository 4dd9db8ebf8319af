//! Integration tests of mt5-news, one binary for the crate.

mod client;
mod fetcher;
mod filter;
mod pipeline;
