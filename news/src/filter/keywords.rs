//! Whole-word, case-insensitive keyword matching.
//!
//! Text and keywords are split into lower-case words at every character that is not a letter or
//! a digit, and a keyword matches when its words appear consecutively in the text's words. So
//! `"AI"` matches "AI-powered" and "the AI boom" but not "said", and `"share buyback"` matches
//! "Share  Buyback," across any spacing or punctuation.

use super::error::FilterError;

/// One configured keyword, pre-split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyword {
    /// As configured (reported in `matched.keywords`).
    pub(crate) original: String,
    words: Vec<String>,
}

impl Keyword {
    /// Parses a configured keyword.
    ///
    /// # Errors
    /// [`FilterError::Config`] when it has no letters or digits.
    pub(crate) fn parse(keyword: &str) -> Result<Self, FilterError> {
        let words = words(keyword);
        if words.is_empty() {
            return Err(FilterError::config(
                "news.filter.keywords",
                format!("keyword {keyword:?} has no letters or digits"),
            ));
        }
        Ok(Keyword {
            original: keyword.trim().to_string(),
            words,
        })
    }

    /// Whether the keyword occurs in `text_words` (the output of [`words`]).
    pub(crate) fn matches(&self, text_words: &[String]) -> bool {
        text_words.windows(self.words.len()).any(|w| w == self.words.as_slice())
    }
}

/// The lower-case words of `text`.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(keyword: &str, text: &str) -> bool {
        Keyword::parse(keyword).unwrap().matches(&words(text))
    }

    #[test]
    fn matches_whole_words_only() {
        assert!(hit("AI", "Nvidia rides the AI boom"));
        assert!(hit("AI", "an AI-powered assistant"));
        assert!(!hit("AI", "the company said revenue rose"));
        assert!(!hit("merge", "a merger was announced"));
    }

    #[test]
    fn ignores_case() {
        assert!(hit("fda", "FDA approves drug"));
        assert!(hit("Buyback", "a new BUYBACK plan"));
        assert!(hit("übernahme", "ÜBERNAHME geplant"));
    }

    #[test]
    fn multi_word_keywords_match_consecutive_words() {
        assert!(hit("share buyback", "announces a share  buyback."));
        assert!(hit("share buyback", "Share-Buyback approved"));
        assert!(!hit("share buyback", "buyback of share capital"));
        assert!(!hit("share buyback", "share price; buyback later"));
    }

    #[test]
    fn keywords_without_letters_or_digits_are_rejected() {
        assert!(Keyword::parse("  ").is_err());
        assert!(Keyword::parse("&&").is_err());
        assert_eq!(Keyword::parse(" S&P 500 ").unwrap().original, "S&P 500");
    }
}
