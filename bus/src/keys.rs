//! Redis key and stream names, built in one place.

/// Raw news, one entry per (article, ticker).
pub const NEWS_RAW_STREAM: &str = "mt5:events:news_raw";
/// News that passed the filter.
pub const NEWS_FILTERED_STREAM: &str = "mt5:events:news_filtered";
/// Entries that could not be processed. Never trimmed automatically.
pub const DEADLETTER_STREAM: &str = "mt5:events:deadletter";
/// The filter's consumer group on [`NEWS_RAW_STREAM`].
pub const NEWS_FILTER_GROUP: &str = "news-filter-group";

/// The heartbeat key of one consumer of one group.
pub fn heartbeat_key(stream: &str, group: &str, consumer: &str) -> String {
    format!("mt5:heartbeat:{stream}:{group}:{consumer}")
}

/// The idempotency key of a publish to `stream` with the caller's key `key`.
pub fn idempotency_key(stream: &str, key: &str) -> String {
    format!("mt5:idem:{stream}:{key}")
}

/// A consumer name unique to this process: `<host>-<pid>-<random>`.
pub fn default_consumer_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".to_string());
    let random: u32 = rand::random();
    format!("{host}-{}-{random:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_unique_per_call() {
        let a = default_consumer_name();
        assert_ne!(a, default_consumer_name());
        assert!(a.contains(&format!("-{}-", std::process::id())));
    }

    #[test]
    fn heartbeat_keys_name_stream_group_and_consumer() {
        assert_eq!(heartbeat_key("s", "g", "c"), "mt5:heartbeat:s:g:c");
    }
}
