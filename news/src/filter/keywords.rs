//! Whole-word, case-insensitive keyword matching.
//!
//! Text and keywords are split into lower-case words at every character that is not a letter or
//! a digit, and a keyword matches when its words appear consecutively in the text's words. So
//! `"AI"` matches "AI-powered" and "the AI boom" but not "said", and `"share buyback"` matches
//! "Share  Buyback," across any spacing or punctuation.
//!
//! [`Keywords::find`] runs once per event over ~100 words, so it allocates nothing per word: a
//! word is lower-cased into one reused buffer (only when it has an upper-case letter; a non-ASCII
//! word through `str::to_lowercase`, so the result is always exactly that), most words are ruled
//! out by their length, the rest are looked up among the keywords' first words, and only a
//! keyword of several words compares the words that follow.

use std::collections::HashMap;

use super::error::FilterError;

/// One configured keyword, pre-split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keyword {
    /// As configured (reported in `matched.keywords`).
    pub(crate) original: String,
    /// Its lower-case words; never empty.
    words: Vec<String>,
}

impl Keyword {
    /// Parses a configured keyword.
    ///
    /// # Errors
    /// [`FilterError::Config`] when it has no letters or digits.
    pub(crate) fn parse(keyword: &str) -> Result<Self, FilterError> {
        let words: Vec<String> = split(keyword).map(str::to_lowercase).collect();
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
}

/// The configured keywords, indexed for one pass over a text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keywords {
    /// In configured order.
    list: Vec<Keyword>,
    /// First word → the indices in `list` (ascending) of the keywords that start with it.
    by_first: HashMap<String, Vec<usize>>,
    /// Bit `n` is set when some first word is `n` bytes long (bit 63: 63 bytes or more), so most
    /// words of a text are ruled out without hashing them.
    first_lens: u64,
}

impl Keywords {
    /// Parses the configured keywords.
    ///
    /// # Errors
    /// [`FilterError::Config`] as [`Keyword::parse`].
    pub(crate) fn parse<S: AsRef<str>>(keywords: &[S]) -> Result<Self, FilterError> {
        let list = keywords
            .iter()
            .map(|k| Keyword::parse(k.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_first: HashMap<String, Vec<usize>> = HashMap::new();
        let mut first_lens = 0;
        for (i, k) in list.iter().enumerate() {
            let first = &k.words[0];
            first_lens |= len_bit(first.len());
            by_first.entry(first.clone()).or_default().push(i);
        }
        Ok(Keywords {
            list,
            by_first,
            first_lens,
        })
    }

    /// Whether no keyword is configured (no keyword rule).
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Which keywords occur in `texts` read as one text (the words of each text follow those of
    /// the one before, so a keyword of several words may span two texts).
    pub(crate) fn find(&self, texts: &[&str]) -> Found {
        let mut found = Found::new(self.list.len());
        if self.list.is_empty() {
            return found;
        }
        let mut missing = self.list.len();
        let mut buf = String::new();
        let mut words = texts.iter().copied().flat_map(split as fn(&str) -> Words<'_>);
        while let Some(word) = words.next() {
            // Lower-casing keeps an ASCII word's length; other words are measured lower-cased.
            if word.is_ascii() && self.first_lens & len_bit(word.len()) == 0 {
                continue;
            }
            let lower = lowercase(word, &mut buf);
            if self.first_lens & len_bit(lower.len()) == 0 {
                continue;
            }
            let Some(starting) = self.by_first.get(lower) else {
                continue;
            };
            for &i in starting {
                if found.contains(i) {
                    continue;
                }
                let rest = &self.list[i].words[1..];
                if rest.is_empty() || follows(words.clone(), rest, &mut buf) {
                    found.insert(i);
                    missing -= 1;
                }
            }
            if missing == 0 {
                break;
            }
        }
        found
    }

    /// The keywords in `found`, as configured, in configured order.
    pub(crate) fn originals(&self, found: &Found) -> Vec<String> {
        self.list
            .iter()
            .enumerate()
            .filter(|(i, _)| found.contains(*i))
            .map(|(_, k)| k.original.clone())
            .collect()
    }
}

/// A set of keyword indices; on the stack for up to 256 keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    inline: [u64; 4],
    /// Used instead of `inline` when there are more than 256 keywords.
    spilled: Vec<u64>,
    len: usize,
}

impl Found {
    fn new(keywords: usize) -> Self {
        let words = keywords.div_ceil(64);
        Found {
            inline: [0; 4],
            spilled: if words > 4 { vec![0; words] } else { Vec::new() },
            len: 0,
        }
    }

    fn bits(&self) -> &[u64] {
        if self.spilled.is_empty() {
            &self.inline
        } else {
            &self.spilled
        }
    }

    fn contains(&self, i: usize) -> bool {
        self.bits()[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert(&mut self, i: usize) {
        let bits = if self.spilled.is_empty() {
            &mut self.inline[..]
        } else {
            &mut self.spilled[..]
        };
        bits[i / 64] |= 1 << (i % 64);
        self.len += 1;
    }

    /// Whether no keyword was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The words of a text, not lower-cased.
type Words<'a> = std::iter::Filter<std::str::Split<'a, fn(char) -> bool>, fn(&&'a str) -> bool>;

/// The words of `text`: split at every character that is not a letter or a digit.
fn split(text: &str) -> Words<'_> {
    text.split(is_separator as fn(char) -> bool)
        .filter(is_word as fn(&&str) -> bool)
}

fn is_separator(c: char) -> bool {
    !c.is_alphanumeric()
}

fn is_word(w: &&str) -> bool {
    !w.is_empty()
}

/// The bit of `first_lens` for a word of `len` bytes.
fn len_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// `word` as `str::to_lowercase` makes it: `word` itself when that changes nothing, otherwise in
/// `buf`.
fn lowercase<'a>(word: &'a str, buf: &'a mut String) -> &'a str {
    if word.is_ascii() {
        if !word.bytes().any(|b| b.is_ascii_uppercase()) {
            return word;
        }
        buf.clear();
        buf.push_str(word);
        buf.make_ascii_lowercase();
    } else {
        *buf = word.to_lowercase();
    }
    buf
}

/// Whether the next words of `words` are `rest` (lower-case).
fn follows<'a>(mut words: impl Iterator<Item = &'a str>, rest: &[String], buf: &mut String) -> bool {
    rest.iter()
        .all(|want| words.next().is_some_and(|w| lowercase(w, buf) == want))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::config::EVENT_KEYWORDS;
    use super::*;

    /// The matcher as it was before it stopped allocating per word: a lower-cased `String` per
    /// word of `"{title}\n{content}"`, and a keyword matches when its words are a window of the
    /// text's words. The oracle of the property tests below.
    mod oracle {
        pub(super) fn words(text: &str) -> Vec<String> {
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect()
        }

        pub(super) fn find(keywords: &[String], title: &str, content: &str) -> Vec<String> {
            let text = words(&format!("{title}\n{content}"));
            keywords
                .iter()
                .filter(|k| {
                    let k = words(k);
                    text.windows(k.len()).any(|w| w == k.as_slice())
                })
                .map(|k| k.trim().to_string())
                .collect()
        }
    }

    fn find(keywords: &[String], title: &str, content: &str) -> Vec<String> {
        let k = Keywords::parse(keywords).unwrap();
        k.originals(&k.find(&[title, content]))
    }

    fn hit(keyword: &str, text: &str) -> bool {
        !find(&[keyword.to_string()], text, "").is_empty()
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
        assert!(
            hit("share buyback", "a share share buyback"),
            "a failed start is not the end"
        );
    }

    /// Title and content are one text: a keyword of several words can span the two.
    #[test]
    fn a_keyword_may_span_title_and_content() {
        let k = ["share buyback".to_string()];
        assert_eq!(find(&k, "Acme plans a share", "Buyback of $2bn"), k);
    }

    /// Keywords come back as configured (trimmed), in configured order, each configured entry
    /// once.
    #[test]
    fn found_keywords_are_reported_as_configured() {
        let k: Vec<String> = ["merger", " Buyback ", "guidance", "buyback"].map(String::from).into();
        let found = find(&k, "Guidance raised; buyback, BUYBACK and buyback again", "");
        assert_eq!(found, ["Buyback", "guidance", "buyback"]);
    }

    /// Words whose lower case is special: Greek final sigma (decided per word, as
    /// `str::to_lowercase` decides it), a dotted capital I (lower-cased to two characters), the
    /// Kelvin sign (lower-cased to ASCII).
    #[test]
    fn unicode_lower_casing_is_str_to_lowercase() {
        assert!(hit("\u{3bf}\u{3b4}\u{3bf}\u{3c2}", "ΟΔΟΣ"), "final sigma");
        assert!(!hit("\u{3bf}\u{3b4}\u{3bf}\u{3c3}", "ΟΔΟΣ"), "not a medial sigma");
        assert!(hit("ΟΔΟΣ", "ΟΔΟΣ-ΣΑ"));
        assert!(hit("İstanbul", "İSTANBUL"));
        assert!(!hit("istanbul", "İSTANBUL"));
        assert!(hit("k", "\u{212A}"));
        assert!(hit("kelvin", "\u{212A}ELVIN"));
    }

    #[test]
    fn more_than_256_keywords_are_tracked() {
        let k: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
        let found = find(&k, "w299 w0 w299 w256", "w255");
        assert_eq!(found, ["w0", "w255", "w256", "w299"]);
    }

    #[test]
    fn keywords_without_letters_or_digits_are_rejected() {
        assert!(Keyword::parse("  ").is_err());
        assert!(Keyword::parse("&&").is_err());
        assert_eq!(Keyword::parse(" S&P 500 ").unwrap().original, "S&P 500");
        assert!(Keywords::parse(&["ok", "--"]).is_err());
    }

    /// Characters chosen to collide: ASCII letters in both cases, letters whose lower case is
    /// longer, context-dependent or ASCII, a digit of another script.
    const LETTERS: &[char] = &[
        'a', 'b', 'A', 'B', 'i', 'I', 'k', 'K', 's', 'S', '1', 'ß', 'İ', 'ı', 'Σ', 'σ', 'ς', '\u{212A}', 'ǅ', 'ﬀ', 'Ä',
        'ä', '٣',
    ];
    /// Separators: spaces, punctuation, a combining mark (not alphanumeric), an emoji.
    const SEPARATORS: &[&str] = &[
        " ", "  ", "-", ", ", "\n", ".", "'", "&", "\u{a0}", "\u{307}", "🚀", "$",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LETTERS), 1..4).prop_map(|cs| cs.into_iter().collect())
    }

    fn keyword() -> impl Strategy<Value = String> {
        (prop::collection::vec(word(), 1..4), prop::sample::select(SEPARATORS)).prop_map(|(ws, sep)| ws.join(sep))
    }

    /// `s` with each character upper- or lower-cased as `up` says.
    fn recase(s: &str, up: &[bool]) -> String {
        s.chars()
            .zip(up.iter().cycle())
            .map(|(c, &up)| {
                if up {
                    c.to_uppercase().to_string()
                } else {
                    c.to_lowercase().to_string()
                }
            })
            .collect()
    }

    /// Text made of words, keywords in random case, arbitrary strings, and separators.
    fn text(keywords: Vec<String>) -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            3 => word(),
            2 => (prop::sample::select(keywords), prop::collection::vec(any::<bool>(), 1..16))
                .prop_map(|(k, up)| recase(&k, &up)),
            1 => any::<String>(),
        ];
        prop::collection::vec((piece, prop::sample::select(SEPARATORS)), 0..24)
            .prop_map(|ps| ps.into_iter().map(|(p, sep)| p + sep).collect())
    }

    fn case() -> impl Strategy<Value = (Vec<String>, String, String)> {
        prop::collection::vec(keyword(), 1..8).prop_flat_map(|ks| (Just(ks.clone()), text(ks.clone()), text(ks)))
    }

    /// Words of the shipped vocabulary's keywords and other words they could be confused with.
    const FILLER: &[&str] = &[
        "the", "Acme", "shares", "S&P", "500", "price", "Target", "steps", "DOWN", "chapter", "11", "share", "buy",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The matcher finds exactly what the old `String`-per-word matcher found.
        #[test]
        fn matches_like_the_old_matcher((keywords, title, content) in case()) {
            prop_assert_eq!(find(&keywords, &title, &content), oracle::find(&keywords, &title, &content));
        }

        /// Also on arbitrary Unicode keywords and texts.
        #[test]
        fn matches_like_the_old_matcher_on_any_text(
            keywords in prop::collection::vec(any::<String>(), 1..4),
            title in any::<String>(),
            content in any::<String>(),
        ) {
            let keywords: Vec<String> = keywords.into_iter().filter(|k| Keyword::parse(k).is_ok()).collect();
            prop_assert_eq!(find(&keywords, &title, &content), oracle::find(&keywords, &title, &content));
        }

        /// And with the shipped vocabulary (several multi-word keywords) in financial words.
        #[test]
        fn matches_like_the_old_matcher_on_event_keywords(
            picks in prop::collection::vec((prop::sample::select(EVENT_KEYWORDS), any::<bool>()), 0..12),
            filler in prop::collection::vec(prop::sample::select(FILLER), 0..40),
            split in any::<prop::sample::Index>(),
        ) {
            let keywords: Vec<String> = EVENT_KEYWORDS.iter().map(|k| k.to_string()).collect();
            let mut text = filler.join(" ");
            for (k, upper) in picks {
                text.push_str(if upper { ", " } else { " " });
                text.push_str(&if upper { k.to_uppercase() } else { k.to_string() });
            }
            // ASCII: every byte is a char boundary.
            let (title, content) = text.split_at(split.index(text.len() + 1));
            prop_assert_eq!(find(&keywords, title, content), oracle::find(&keywords, title, content));
        }
    }
}
