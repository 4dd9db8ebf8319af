//! The filter's error type.

/// What can go wrong in the filter: a bad `[news.filter]` setting, or a raw event whose `data`
/// is not the `news.raw.v1` shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// A `[news.filter]` setting is invalid.
    #[error("invalid config {field}: {reason}")]
    Config {
        /// The key, e.g. `news.filter.min_sentiment`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The event's `data` is not a `news.raw.v1` payload.
    #[error("invalid news.raw.v1 data at {field}: {reason}")]
    InvalidData {
        /// The JSON path of the offending field, e.g. `article.date`.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl FilterError {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        FilterError::Config {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn data(field: &'static str, reason: impl Into<String>) -> Self {
        FilterError::InvalidData {
            field,
            reason: reason.into(),
        }
    }
}
