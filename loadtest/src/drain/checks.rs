//! The rules issue 11 sets for a drain with sentiment, as pure checks: each returns `Err` with
//! the sentence the harness fails with.
//!
//! - **Scorer calls.** The Rust side scores at least as many texts per event as the reference
//!   (its `vader_calls`) minus 1 %: a cache or a shortcut the reference does not have would
//!   otherwise pass for a faster scorer.
//! - **Same text.** Both sides score `title + " " + content` in full: the content limit the
//!   filters get is at least the round's longest content, and the title cache is the
//!   reference's size, at most 50 000 entries.
//! - **Passed sets.** The sides decide differently only where the documented keyword semantics
//!   differ (substring against whole word).
//! - **One clock.** No article crosses the freshness limit between the start of a round and its
//!   end, so the sides (which read the clock minutes apart) judge freshness alike.

use chrono::{DateTime, TimeDelta, Utc};

use super::compare::Differences;

/// How far below the reference's scorer calls per event the Rust side may be: 1 % of them.
pub(crate) const CALLS_TOLERANCE: f64 = 0.01;
/// The largest title cache issue 11 allows, per process.
pub(crate) const MAX_CACHE_SIZE: u64 = 50_000;

/// Scorer calls of one side in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScorerCalls {
    /// Texts scored (cache misses that ran VADER): the reference's `vader_calls`, mt5-hub's
    /// `mt5_news_sentiment_scored_total`.
    pub calls: u64,
    /// Scores answered from the title cache.
    pub cache_hits: u64,
    /// Events drained.
    pub events: u64,
}

impl ScorerCalls {
    /// Texts scored per event.
    pub fn per_event(&self) -> f64 {
        self.calls as f64 / self.events.max(1) as f64
    }
}

/// The least scorer calls per event the Rust side may make against the reference's `python`.
pub(crate) fn least_calls_per_event(python: f64) -> f64 {
    python * (1.0 - CALLS_TOLERANCE)
}

/// Rust's scorer calls per event are at least Python's minus [`CALLS_TOLERANCE`].
///
/// # Errors
/// A sentence with both figures.
pub(crate) fn calls_per_event(python: ScorerCalls, rust: ScorerCalls) -> Result<(), String> {
    let least = least_calls_per_event(python.per_event());
    if rust.per_event() >= least {
        Ok(())
    } else {
        Err(format!(
            "mt5-hub scored {:.4} texts per event ({} calls, {} cache hits, {} events) but the reference {:.4} ({} vader_calls, {} cache hits, {} events): at least {least:.4} required (issue 11: the reference's minus {:.0} %)",
            rust.per_event(),
            rust.calls,
            rust.cache_hits,
            rust.events,
            python.per_event(),
            python.calls,
            python.cache_hits,
            python.events,
            CALLS_TOLERANCE * 100.0
        ))
    }
}

/// What the round's filters were configured with against what the round needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextRule {
    /// `sentiment_content_chars` the filters got.
    pub content_chars: usize,
    /// The longest `content` of the round's events, in characters.
    pub longest_content_chars: usize,
    /// `sentiment_cache_size` the filters got.
    pub cache_size: u64,
    /// The reference's `cache_size`.
    pub reference_cache_size: u64,
}

/// Both sides score the same, whole text, with the same bounded title cache.
///
/// # Errors
/// A sentence naming the setting that breaks the rule.
pub(crate) fn same_text(r: TextRule) -> Result<(), String> {
    if r.content_chars < r.longest_content_chars {
        return Err(format!(
            "sentiment_content_chars = {} would cut contents of up to {} characters: mt5-hub would not score the whole text the reference scores",
            r.content_chars, r.longest_content_chars
        ));
    }
    if r.cache_size > MAX_CACHE_SIZE || r.cache_size != r.reference_cache_size {
        return Err(format!(
            "sentiment_cache_size = {} must equal the reference's cache_size ({}) and be at most {MAX_CACHE_SIZE}",
            r.cache_size, r.reference_cache_size
        ));
    }
    Ok(())
}

/// The passed sets differ only where the keyword semantics explain it.
///
/// # Errors
/// A sentence with the counts.
pub(crate) fn only_keyword_differences(d: &Differences) -> Result<(), String> {
    if d.unexplained() == 0 {
        Ok(())
    } else {
        Err(format!(
            "the passed sets differ on {} events, {} of them not explained by the keyword semantics (substring vs whole word; {} explained)",
            d.total(),
            d.unexplained(),
            d.explained_by_keywords
        ))
    }
}

/// Of `dates`, those fresh (at most `max_age` old) at `start` but stale at `end`: the articles
/// whose freshness depends on when a side looked.
pub(crate) fn crossing_freshness(
    dates: &[DateTime<Utc>],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max_age: TimeDelta,
) -> usize {
    let stale = |at: DateTime<Utc>, d: &DateTime<Utc>| at.signed_duration_since(*d) > max_age;
    dates.iter().filter(|d| stale(end, d) && !stale(start, d)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(calls: u64, events: u64) -> ScorerCalls {
        ScorerCalls {
            calls,
            cache_hits: 0,
            events,
        }
    }

    /// Rust may score up to 1 % fewer texts per event than the reference, not more than that;
    /// more is always fine.
    #[test]
    fn scorer_calls_per_event_may_be_at_most_one_percent_below_the_reference() {
        let python = calls(20_000, 50_000);
        assert!(calls_per_event(python, calls(20_000, 50_000)).is_ok());
        assert!(
            calls_per_event(python, calls(19_800, 50_000)).is_ok(),
            "exactly 1 % fewer"
        );
        assert!(calls_per_event(python, calls(25_000, 50_000)).is_ok());
        let err = calls_per_event(python, calls(19_799, 50_000)).unwrap_err();
        assert!(
            err.contains("0.3960 texts per event") && err.contains("0.4000"),
            "{err}"
        );
        // Per event: the same calls over more events is fewer per event.
        assert!(calls_per_event(python, calls(20_000, 60_000)).is_err());
        assert!(
            calls_per_event(calls(0, 50_000), calls(0, 50_000)).is_ok(),
            "no scoring at all"
        );
    }

    /// The whole content, and the reference's cache of at most 50 000 titles.
    #[test]
    fn the_text_rule_needs_the_whole_content_and_the_reference_cache() {
        let ok = TextRule {
            content_chars: 1_000_000,
            longest_content_chars: 695,
            cache_size: 50_000,
            reference_cache_size: 50_000,
        };
        assert!(same_text(ok).is_ok());
        assert!(same_text(TextRule {
            content_chars: 695,
            ..ok
        })
        .is_ok());
        let cut = same_text(TextRule {
            content_chars: 280,
            ..ok
        })
        .unwrap_err();
        assert!(cut.contains("280") && cut.contains("695"), "{cut}");
        assert!(same_text(TextRule {
            cache_size: 40_000,
            ..ok
        })
        .is_err());
        let big = TextRule {
            cache_size: 60_000,
            reference_cache_size: 60_000,
            ..ok
        };
        assert!(same_text(big).is_err(), "over 50 000 even when the reference has it");
    }

    /// Keyword-explained differences pass, any other fails and says how many.
    #[test]
    fn a_difference_the_keywords_do_not_explain_fails() {
        let d = Differences {
            python_only: 51,
            rust_only: 0,
            explained_by_keywords: 51,
            keyword_rule_differs: 80,
        };
        assert!(only_keyword_differences(&d).is_ok());
        let err = only_keyword_differences(&Differences { python_only: 54, ..d }).unwrap_err();
        assert!(
            err.contains("54 events, 3 of them") && err.contains("51 explained"),
            "{err}"
        );
    }

    /// Only an article that turns stale during the round counts.
    #[test]
    fn articles_crossing_the_freshness_limit_are_counted() {
        let start = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap().to_utc();
        let end = start + TimeDelta::minutes(10);
        let ago = |m: i64| start - TimeDelta::minutes(m);
        let day = TimeDelta::hours(24);
        let dates = [ago(60), ago(24 * 60 - 5), ago(24 * 60 + 1), ago(30 * 60)];
        assert_eq!(crossing_freshness(&dates, start, end, day), 1);
        assert_eq!(crossing_freshness(&dates, start, start, day), 0);
    }
}
