//! The news filter: accuracy on the labelled headlines, the handler's outputs without Redis, and a
//! filter consumer group on a real Redis.

mod accuracy;
mod consumer_group;
mod handler;
mod newsgen;
mod support;
mod vader_golden;
