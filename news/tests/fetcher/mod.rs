//! The fetcher against the mock EODHD and a real Redis.

mod rounds;
pub(crate) mod support;
