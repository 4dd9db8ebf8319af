//! [`StreamId`]: a stream entry id (`<ms>-<seq>`), parsed once, ordered numerically.

use std::fmt;
use std::str::FromStr;

/// A stream entry id. Ordered as Redis orders them (by milliseconds, then sequence), which
/// string comparison does not do (`"10-0" < "9-0"` as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part (the entry's creation time for ids Redis generated).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

/// A text that is not `<ms>-<seq>` or `<ms>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stream entry id: {0:?} (expected <ms>-<seq>)")]
pub struct InvalidStreamId(pub String);

impl StreamId {
    /// The smallest id, `0-0`.
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    /// The greatest id.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// An id from its parts.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The smallest id greater than this one (the greatest id stays itself).
    #[must_use]
    pub fn next(self) -> Self {
        match (self.seq.checked_add(1), self.ms.checked_add(1)) {
            (Some(seq), _) => StreamId::new(self.ms, seq),
            (None, Some(ms)) => StreamId::new(ms, 0),
            (None, None) => self,
        }
    }

    /// The greatest id smaller than this one (`0-0` stays `0-0`).
    #[must_use]
    pub fn prev(self) -> Self {
        match (self.ms, self.seq) {
            (0, 0) => self,
            (ms, 0) => StreamId::new(ms - 1, u64::MAX),
            (ms, seq) => StreamId::new(ms, seq - 1),
        }
    }

    /// The milliseconds part: when Redis created the entry (for ids it generated).
    pub fn millis(self) -> u64 {
        self.ms
    }
}

impl FromStr for StreamId {
    type Err = InvalidStreamId;

    /// Parses `<ms>-<seq>`; a bare `<ms>` is `<ms>-0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidStreamId(s.to_string());
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, Some(seq)),
            None => (s, None),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || seq.is_some_and(|q| !digits(q)) {
            return Err(bad());
        }
        let ms = ms.parse().map_err(|_| bad())?;
        let seq = match seq {
            Some(q) => q.parse().map_err(|_| bad())?,
            None => 0,
        };
        Ok(StreamId { ms, seq })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl redis::ToRedisArgs for StreamId {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg_fmt(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamId {
        s.parse().unwrap()
    }

    #[test]
    fn ids_order_numerically_not_as_text() {
        assert!(id("10-0") > id("9-99"));
        assert!(id("5-10") > id("5-9"));
        assert_eq!(id("7"), StreamId::new(7, 0));
    }

    #[test]
    fn ids_step_both_ways_across_the_millisecond() {
        assert_eq!(id("5-1").next(), id("5-2"));
        assert_eq!(id("5-1").prev(), id("5-0"));
        assert_eq!(id("5-0").prev(), StreamId::new(4, u64::MAX));
        assert_eq!(StreamId::new(4, u64::MAX).next(), id("5-0"));
        assert_eq!(StreamId::MIN.prev(), StreamId::MIN);
        assert_eq!(StreamId::MAX.next(), StreamId::MAX);
    }

    #[test]
    fn bad_ids_are_errors() {
        for bad in [
            "",
            "-",
            "a-1",
            "1-",
            "-1",
            "1-2-3",
            "1 -2",
            "+",
            "$",
            "18446744073709551616-0",
            // Rust's integer parsing takes a leading `+`; Redis's ids do not.
            "+1",
            "+1-2",
            "1-+2",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_round_trip_through_text_and_redis_args() {
        for s in ["0-0", "1-2", "1733420000000-17", &format!("{}-{}", u64::MAX, u64::MAX)] {
            let i = id(s);
            assert_eq!(i.to_string(), s);
            let args = redis::ToRedisArgs::to_redis_args(&i);
            assert_eq!(args, vec![s.as_bytes().to_vec()]);
        }
    }
}
