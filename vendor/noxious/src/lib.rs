#![forbid(unsafe_code)]
#![warn(
    missing_copy_implementations,
    missing_debug_implementations,
    missing_docs,
    trivial_numeric_casts,
    unused_extern_crates,
    unused_import_braces,
    unused_qualifications
)]

//! # noxious

/// Contains the errors
pub mod error;
mod link;
/// Contains the proxy data types and runners
pub mod proxy;
/// Contains the Stop and Close signals
pub mod signal;
/// Contains wrappers around Tokio types to make them mockable
pub mod socket;
/// Contains the shared proxy and toxic state
pub mod state;
mod stream;
mod tests;
/// Contains the toxic data types
pub mod toxic;
mod toxics;
