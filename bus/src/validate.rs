//! The workspace's one set of configuration validators, and [`InvalidConfig`], the one error
//! they return.
//!
//! Every config struct of the workspace (`[redis]` and `[bus]` here, `[news.*]` in `mt5-news`,
//! `[http.gateway]` and `[alerts]` in the hub) checks its values in its `validate()` with these
//! functions and returns an [`InvalidConfig`] naming the dotted key, so one rule reads the same
//! in every section: `must be greater than 0`, `cannot be empty`, `must be within 1..=64, got 0`.
//! A rule of one struct that relates two of its fields (`max_ms` at least `initial_ms`) is
//! [`ensure`] with a reason of its own.
//!
//! ```
//! use mt5_bus::validate::{self, InvalidConfig};
//!
//! fn check(count: usize, jitter: f64) -> Result<(), InvalidConfig> {
//!     validate::positive("bus.consumer.count", count)?;
//!     validate::within("bus.retry.jitter", jitter, 0.0..=1.0)
//! }
//! let err = check(0, 0.5).unwrap_err();
//! assert_eq!(err.key(), "bus.consumer.count");
//! assert_eq!(err.to_string(), "invalid configuration: bus.consumer.count: must be greater than 0");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::RangeInclusive;

/// A configuration value that cannot be used: its dotted key (`bus.consumer.block_ms`,
/// `news.filter.min_sentiment`) and why. `mt5_bus::Error::Config` and `mt5_news::Error::Config`
/// carry it; the hub reports it with exit code 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct InvalidConfig {
    key: Cow<'static, str>,
    reason: String,
}

impl InvalidConfig {
    /// The value at `key` (dotted, as in the config file: `news.fetcher.interval_secs`) is
    /// unusable because of `reason`.
    pub fn new(key: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The dotted key, e.g. `bus.consumer.block_ms`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Why the value is rejected, e.g. `must be greater than 0`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// `Err` naming `key` with `reason` unless `ok`: a rule of one struct that the functions below
/// do not express, such as one field bounded by another.
///
/// # Errors
/// [`InvalidConfig`] when `ok` is false.
pub fn ensure(ok: bool, key: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Result<(), InvalidConfig> {
    if ok {
        Ok(())
    } else {
        Err(InvalidConfig::new(key, reason))
    }
}

/// The value is greater than zero (`must be greater than 0`). A NaN is not.
///
/// # Errors
/// [`InvalidConfig`] naming `key`.
pub fn positive<T: PartialOrd + Default>(key: impl Into<Cow<'static, str>>, value: T) -> Result<(), InvalidConfig> {
    ensure(value > T::default(), key, "must be greater than 0")
}

/// The text has something besides white space (`cannot be empty`).
///
/// # Errors
/// [`InvalidConfig`] naming `key`.
pub fn non_empty(key: impl Into<Cow<'static, str>>, value: &str) -> Result<(), InvalidConfig> {
    ensure(!value.trim().is_empty(), key, "cannot be empty")
}

/// The value lies in `range`, both ends included (`must be within 1..=64, got 0`). A NaN does
/// not.
///
/// # Errors
/// [`InvalidConfig`] naming `key`.
pub fn within<T: PartialOrd + fmt::Debug>(
    key: impl Into<Cow<'static, str>>,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), InvalidConfig> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(InvalidConfig::new(
        key,
        format!("must be within {:?}..={:?}, got {value:?}", range.start(), range.end()),
    ))
}

/// The value is at least `min` (`must be at least 1000, got 10`).
///
/// # Errors
/// [`InvalidConfig`] naming `key`.
pub fn at_least<T: PartialOrd + fmt::Debug>(
    key: impl Into<Cow<'static, str>>,
    value: T,
    min: T,
) -> Result<(), InvalidConfig> {
    if value >= min {
        return Ok(());
    }
    Err(InvalidConfig::new(
        key,
        format!("must be at least {min:?}, got {value:?}"),
    ))
}

/// The value is at most `max` (`must be at most 30, got 31`).
///
/// # Errors
/// [`InvalidConfig`] naming `key`.
pub fn at_most<T: PartialOrd + fmt::Debug>(
    key: impl Into<Cow<'static, str>>,
    value: T,
    max: T,
) -> Result<(), InvalidConfig> {
    if value <= max {
        return Ok(());
    }
    Err(InvalidConfig::new(
        key,
        format!("must be at most {max:?}, got {value:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each validator passes its boundary and names the key with its one wording on failure.
    #[test]
    fn validators_pass_their_bounds_and_name_the_key() {
        positive("a.b", 1_u64).unwrap();
        positive("a.b", 0.5_f64).unwrap();
        non_empty("a.b", "x").unwrap();
        within("a.b", 1, 1..=64).unwrap();
        within("a.b", 64, 1..=64).unwrap();
        at_least("a.b", 5, 5).unwrap();
        at_most("a.b", 5, 5).unwrap();
        ensure(true, "a.b", "never").unwrap();

        let reason = |r: Result<(), InvalidConfig>| {
            let e = r.unwrap_err();
            assert_eq!(e.key(), "a.b");
            e.reason().to_string()
        };
        assert_eq!(reason(positive("a.b", 0_u64)), "must be greater than 0");
        assert_eq!(reason(positive("a.b", -1.0)), "must be greater than 0");
        assert_eq!(reason(positive("a.b", f64::NAN)), "must be greater than 0");
        assert_eq!(reason(non_empty("a.b", " \t")), "cannot be empty");
        assert_eq!(reason(within("a.b", 0, 1..=64)), "must be within 1..=64, got 0");
        assert_eq!(reason(within("a.b", 65, 1..=64)), "must be within 1..=64, got 65");
        assert_eq!(
            reason(within("a.b", f64::NAN, 0.0..=1.0)),
            "must be within 0.0..=1.0, got NaN"
        );
        assert_eq!(reason(at_least("a.b", 4, 5)), "must be at least 5, got 4");
        assert_eq!(reason(at_most("a.b", 6, 5)), "must be at most 5, got 6");
        assert_eq!(reason(ensure(false, "a.b", "why")), "why");
    }

    /// The message names the key and the reason; a key may be built at run time.
    #[test]
    fn the_message_names_the_dotted_key() {
        let section = "news.eodhd.retry";
        let e = InvalidConfig::new(format!("{section}.jitter"), "must be within 0.0..=1.0, got 2.0");
        assert_eq!(
            e.to_string(),
            "invalid configuration: news.eodhd.retry.jitter: must be within 0.0..=1.0, got 2.0"
        );
    }
}
