//! VADER sentiment, scored exactly as Python's `vaderSentiment` 3.3.2 scores it.
//!
//! [`compound`] and [`polarity_scores`] return what
//! `SentimentIntensityAnalyzer().polarity_scores(text)` returns for the same text: the same
//! rules, the same lexicon and emoji data (embedded, parsed once), Python's string semantics
//! (`split()`, `lower()`, `isupper()`, `strip(string.punctuation)`) and Python's `round`.
//! The golden corpus `fixtures/data/vader/golden.jsonl.gz` (13 076 texts scored by the Python
//! package) is the proof, checked by `news/tests/filter/vader_golden.rs`.
//!
//! Scoring borrows tokens from the text and lower-cases them into buffers kept per thread, so
//! it allocates nothing per token.
//!
//! ```
//! let scores = mt5_news::vader::polarity_scores("VADER is smart, handsome, and funny.");
//! assert_eq!(scores.compound, 0.8316);
//! assert_eq!((scores.neg, scores.neu, scores.pos), (0.0, 0.254, 0.746));
//! assert_eq!(mt5_news::vader::compound("The book was only kind of good."), 0.3832);
//! ```
//!
//! # Layout
//! - `lexicon`: the embedded data files and rule word lists, one map lookup per token.
//! - `text`: Python's string semantics (whitespace, punctuation stripping, case) and the emoji
//!   step.
//! - `rules`: `polarity_scores` rule for rule, quirks included.
//! - `round`: Python's `round(x, n)`.
//!
//! `data/` holds the two data files copied from the 3.3.2 wheel with their MIT licence.

mod lexicon;
mod round;
mod rules;
mod text;

use std::cell::RefCell;

use rules::{RawScores, Scratch};

thread_local! {
    /// Buffers reused by every score on this thread.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The four scores of `polarity_scores`, rounded as Python rounds them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PolarityScores {
    /// Share of negative sentiment, 0.0..=1.0, three decimals.
    pub neg: f64,
    /// Share of neutral words, 0.0..=1.0, three decimals.
    pub neu: f64,
    /// Share of positive sentiment, 0.0..=1.0, three decimals.
    pub pos: f64,
    /// The normalised sum of the valences, -1.0..=1.0, four decimals.
    pub compound: f64,
}

/// VADER's compound score of `text` (-1.0..=1.0, rounded to four decimals), identical to
/// `polarity_scores(text)["compound"]` of vaderSentiment 3.3.2.
pub fn compound(text: &str) -> f64 {
    round::py_round(raw(text).compound, 4)
}

/// All four scores of `text`, identical to vaderSentiment 3.3.2's `polarity_scores(text)`.
pub fn polarity_scores(text: &str) -> PolarityScores {
    let raw = raw(text);
    PolarityScores {
        neg: round::py_round(raw.neg, 3),
        neu: round::py_round(raw.neu, 3),
        pos: round::py_round(raw.pos, 3),
        compound: round::py_round(raw.compound, 4),
    }
}

/// The compound score before Python's `round(x, 4)` (for comparisons finer than four decimals).
pub fn compound_unrounded(text: &str) -> f64 {
    raw(text).compound
}

fn raw(text: &str) -> RawScores {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => rules::polarity_scores(text, &mut scratch),
        // Only reachable if scoring re-entered itself on this thread, which it never does;
        // fresh buffers keep it correct anyway.
        Err(_) => rules::polarity_scores(text, &mut Scratch::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's outputs for the examples of vaderSentiment's own `__main__`.
    #[test]
    fn the_reference_examples_score_as_in_python() {
        for (text, want) in [
            ("VADER is smart, handsome, and funny!", 0.8439),
            ("VADER is very smart, handsome, and funny.", 0.8545),
            ("VADER is VERY SMART, handsome, and FUNNY.", 0.9227),
            ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
            ("VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!", 0.9469),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("The book was good.", 0.4404),
            ("At least it isn't a horrible book.", 0.431),
            ("Today SUX!", -0.5461),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
            ("Make sure you :) or :D today!", 0.8633),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            ("Not bad at all", 0.431),
        ] {
            assert_eq!(compound(text), want, "{text}");
        }
    }
}
