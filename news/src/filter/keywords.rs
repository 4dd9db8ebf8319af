//! Whole-word, case-insensitive keyword matching.
//!
//! Text and keywords are split into lower-case words at every character that is not a letter or
//! a digit, and a keyword matches when its words appear consecutively in the text's words. So
//! `"AI"` matches "AI-powered" and "the AI boom" but not "said", and `"share buyback"` matches
//! "Share  Buyback," across any spacing or punctuation.
//!
//! [`Keywords::find`] runs once per event over ~100 words, so it allocates nothing per word.
//! Words are read off a bit mask of the letter and digit bytes of each 64-byte block of text
//! (see [`Words`]). Most are ruled out by their length and first letter alone; the rest are
//! lower-cased into one reused buffer (only when they have an upper-case letter; a non-ASCII word
//! through `str::to_lowercase`, so the result is always exactly that) and looked up among the
//! keywords' first words. Only a keyword of several words compares the words that follow.
//!
//! When every keyword starts with an ASCII word and the text is ASCII (news nearly always is),
//! the words of the text are not read one by one at all: one SIMD Aho-Corasick pass over a
//! lower-cased copy finds where the keywords' first words occur, and only an occurrence that is
//! a whole word goes on as above. In ASCII a word is a run of ASCII letters and digits and
//! lower-casing is ASCII's, so this finds the same keywords. A non-ASCII text takes the
//! word-by-word path, since `str::to_lowercase` can turn a non-ASCII letter into an ASCII one
//! (the Kelvin sign into `k`); so do all texts when the crate declines to build its SIMD
//! searcher (over a few dozen first words, such as the shipped list's ~100).

use std::collections::HashMap;

use aho_corasick::packed;
use rustc_hash::FxBuildHasher;

use mt5_bus::InvalidConfig;

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
    /// [`InvalidConfig`] naming `news.filter.keywords` when it has no letters or digits.
    pub(crate) fn parse(keyword: &str) -> Result<Self, InvalidConfig> {
        let words: Vec<String> = Words::new(&[keyword]).map(str::to_lowercase).collect();
        if words.is_empty() {
            return Err(InvalidConfig::new(
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
#[derive(Debug, Clone)]
pub(crate) struct Keywords {
    /// In configured order.
    list: Vec<Keyword>,
    /// First word → the indices in `list` (ascending) of the keywords that start with it.
    /// Fx-hashed: a text's candidate words are looked up here, and SipHash cost more than the
    /// lookup. The map holds only the configured words and never grows with the text, so a
    /// text cannot make its lookups collide into long chains.
    by_first: HashMap<String, Vec<usize>, FxBuildHasher>,
    /// By a first word's first byte, bit `n` set when such a first word is `n` bytes long
    /// (bit 63: 63 bytes or more). It rules out most words of a text without lower-casing or
    /// hashing them.
    first: Box<[u64; 256]>,
    /// For an ASCII text, when every first word is ASCII: where the first words occur.
    ascii: Option<packed::Searcher>,
}

/// The keywords' distinct first words (the keys of `by_first`, lower case) in the Aho-Corasick
/// crate's packed (SIMD, Teddy) searcher, for lower-cased ASCII text. It searches a lower-cased
/// copy of the text: asked to ignore ASCII case itself, the crate's automaton has no SIMD
/// prefilter and stepped byte by byte, ~12 instructions a byte.
///
/// The search is leftmost-longest, without overlaps, and still reports every occurrence that is
/// a whole word: a match that began before a whole word and overlapped it would be made of
/// letters and digits up to the word's first byte, whose left neighbour is not one; and at the
/// word's own start the longest match is the word itself (a longer one would run past its end,
/// into a byte that is not a letter or digit).
///
/// `None` when a first word is not ASCII, or when the crate declines to build its SIMD searcher
/// for these words (no SIMD on this CPU; or too many words for their length, say more than 16
/// with a one-letter word, or more than 64: the shipped list of ~100). The word-by-word path then
/// reads every text, as before this searcher.
fn first_word_searcher(by_first: &HashMap<String, Vec<usize>, FxBuildHasher>) -> Option<packed::Searcher> {
    if !by_first.keys().all(|w| w.is_ascii()) {
        return None;
    }
    packed::Config::new()
        .match_kind(packed::MatchKind::LeftmostLongest)
        .builder()
        .extend(by_first.keys())
        .build()
}

impl Keywords {
    /// Parses the configured keywords.
    ///
    /// # Errors
    /// [`InvalidConfig`] as [`Keyword::parse`].
    pub(crate) fn parse<S: AsRef<str>>(keywords: &[S]) -> Result<Self, InvalidConfig> {
        let list = keywords
            .iter()
            .map(|k| Keyword::parse(k.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_first: HashMap<String, Vec<usize>, FxBuildHasher> = HashMap::default();
        let mut first = Box::new([0; 256]);
        for (i, k) in list.iter().enumerate() {
            let word = &k.words[0];
            if let Some(&b) = word.as_bytes().first() {
                first[usize::from(b)] |= len_bit(word.len());
            }
            by_first.entry(word.clone()).or_default().push(i);
        }
        let ascii = first_word_searcher(&by_first);
        Ok(Keywords {
            list,
            by_first,
            first,
            ascii,
        })
    }

    /// Whether no keyword is configured (no keyword rule).
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether some first word has the length of `word` and its first byte, mapped by `lower`.
    fn may_start(&self, word: &str, lower: impl Fn(u8) -> u8) -> bool {
        word.as_bytes()
            .first()
            .is_some_and(|&b| self.first[usize::from(lower(b))] & len_bit(word.len()) != 0)
    }

    /// Which keywords occur in `texts` read as one text (the words of each text follow those of
    /// the one before, so a keyword of several words may span two texts).
    pub(crate) fn find(&self, texts: &[&str]) -> Found {
        self.scan(texts, self.list.len())
    }

    /// Whether any keyword occurs in `texts` (read as by [`Keywords::find`]); stops at the
    /// first.
    pub(crate) fn any(&self, texts: &[&str]) -> bool {
        !self.scan(texts, 1).is_empty()
    }

    /// Finds keywords in `texts` until it has found `enough`.
    fn scan(&self, texts: &[&str], enough: usize) -> Found {
        let mut found = Found::new(self.list.len());
        if self.list.is_empty() {
            return found;
        }
        let enough = enough.min(self.list.len());
        match &self.ascii {
            Some(searcher) if texts.iter().all(|t| t.is_ascii()) => {
                self.scan_ascii(searcher, texts, enough, &mut found)
            }
            _ => self.scan_words(texts, enough, &mut found),
        }
        found
    }

    /// [`Keywords::scan`] of ASCII `texts`: every occurrence of a first word that is a whole
    /// word (no ASCII letter or digit on either side) starts a match.
    fn scan_ascii(&self, searcher: &packed::Searcher, texts: &[&str], enough: usize, found: &mut Found) {
        let mut missing = enough;
        let (mut buf, mut lower) = (String::new(), String::new());
        for (t, text) in texts.iter().enumerate() {
            // Lower-casing ASCII keeps every byte's place and whether it is a letter or digit.
            let low = lowercase(text, &mut lower);
            let bytes = low.as_bytes();
            for m in searcher.find_iter(low) {
                let (start, end) = (m.start(), m.end());
                let joined = |i: Option<usize>| i.and_then(|i| bytes.get(i)).is_some_and(u8::is_ascii_alphanumeric);
                if joined(start.checked_sub(1)) || joined(Some(end)) {
                    continue;
                }
                let Some(starting) = self.by_first.get(&low[start..end]) else {
                    continue;
                };
                // `end` is a character boundary (ASCII) and ends a word.
                let rest_of_text = [&text[end..]];
                let after = Words::new(&rest_of_text).chain(Words::new(&texts[t + 1..]));
                if self.match_from(starting, after, found, &mut missing, &mut buf) {
                    return;
                }
            }
        }
    }

    /// [`Keywords::scan`] word by word, for any text.
    fn scan_words(&self, texts: &[&str], enough: usize, found: &mut Found) {
        let mut missing = enough;
        let mut buf = String::new();
        let mut words = Words::new(texts);
        while let Some(word) = words.next() {
            // Lower-casing keeps an ASCII word's length and lower-cases its first byte alone, so
            // an ASCII word is ruled out before it is lower-cased.
            let ascii = word.is_ascii();
            if ascii && !self.may_start(word, |b| b.to_ascii_lowercase()) {
                continue;
            }
            let lower = lowercase(word, &mut buf);
            if !ascii && !self.may_start(lower, |b| b) {
                continue;
            }
            let Some(starting) = self.by_first.get(lower) else {
                continue;
            };
            if self.match_from(starting, words.clone(), found, &mut missing, &mut buf) {
                break;
            }
        }
    }

    /// After a first word: adds to `found` each keyword of `starting` (those it starts, not
    /// found yet) whose other words are the next ones of `after`, counting `missing` down.
    /// Returns whether `missing` reached 0 (the scan can stop).
    fn match_from<'a>(
        &self,
        starting: &[usize],
        after: impl Iterator<Item = &'a str> + Clone,
        found: &mut Found,
        missing: &mut usize,
        buf: &mut String,
    ) -> bool {
        for &i in starting {
            if found.contains(i) {
                continue;
            }
            let rest = &self.list[i].words[1..];
            if rest.is_empty() || follows(after.clone(), rest, buf) {
                found.insert(i);
                *missing -= 1;
                if *missing == 0 {
                    return true;
                }
            }
        }
        false
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

/// Bytes classified at a time: one bit each in a `u64`.
const BLOCK: usize = 64;

/// The words of some texts read as one, not lower-cased: the runs of characters that are
/// letters or digits (`char::is_alphanumeric`).
///
/// A text is classified a block of 64 bytes at a time into a mask of the bytes that belong to
/// letters and digits (ASCII bytes without a branch, other characters by decoding them), and
/// words are read off the mask's edges. A branch per byte, taken or not at every word's start
/// and end, was most of the cost of splitting at characters.
#[derive(Debug, Clone)]
struct Words<'t, 'a> {
    /// The texts after the current one.
    texts: &'t [&'a str],
    /// The current text.
    text: &'a str,
    /// Offset in `text` of the current block.
    block: usize,
    /// Offset in `text` of the next block to classify.
    next_block: usize,
    /// The current block's edges not read yet: bit `j` is set when byte `block + j` starts a
    /// word or is the first byte after one.
    edges: u64,
    /// Whether the current block's last byte belongs to a word.
    in_word: bool,
    /// The bytes at the start of the next block that finish a character begun in the current
    /// one, and whether that character is a letter or digit.
    spill: (usize, bool),
    /// Where the word being read started.
    start: Option<usize>,
}

impl<'t, 'a> Words<'t, 'a> {
    fn new(texts: &'t [&'a str]) -> Self {
        Words {
            texts,
            text: "",
            block: 0,
            next_block: 0,
            edges: 0,
            in_word: false,
            spill: (0, false),
            start: None,
        }
    }

    /// Classifies the next block of the current text.
    fn classify(&mut self) {
        let block = self.next_block;
        let bytes = self.text.as_bytes();
        let chunk = &bytes[block..bytes.len().min(block + BLOCK)];
        let mut padded = [0u8; BLOCK];
        padded[..chunk.len()].copy_from_slice(chunk);
        let mut alnum = 0u64;
        for (i, eight) in padded.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            alnum |= ascii_alphanumeric(u64::from_le_bytes(word)) << (8 * i);
        }
        if !chunk.is_ascii() {
            alnum |= self.non_ascii(block, chunk);
        }
        self.edges = alnum ^ ((alnum << 1) | u64::from(self.in_word));
        self.in_word = (alnum >> (chunk.len() - 1)) & 1 == 1;
        self.block = block;
        self.next_block = block + BLOCK;
    }

    /// The mask bits of the bytes of `chunk` (at `block`) that belong to non-ASCII letters and
    /// digits.
    fn non_ascii(&mut self, block: usize, chunk: &[u8]) -> u64 {
        let (spilled, spilled_alnum) = std::mem::take(&mut self.spill);
        let mut bits = if spilled_alnum { low_bits(spilled) } else { 0 };
        let mut j = spilled;
        while let Some(&b) = chunk.get(j) {
            if b.is_ascii() {
                j += 1;
                continue;
            }
            // `block + j` starts a character: the bytes of those before it were skipped whole.
            let (alnum, len) = match self.text.get(block + j..).and_then(|s| s.chars().next()) {
                Some(c) => (c.is_alphanumeric(), c.len_utf8()),
                None => (false, 1),
            };
            if alnum {
                // The bits of a character that runs past the block are shifted out of the mask.
                bits |= low_bits(len) << j;
            }
            if j + len > BLOCK {
                self.spill = (j + len - BLOCK, alnum);
            }
            j += len;
        }
        bits
    }
}

impl<'a> Iterator for Words<'_, 'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.edges != 0 {
                let at = self.block + self.edges.trailing_zeros() as usize;
                self.edges &= self.edges - 1;
                match self.start.take() {
                    None => self.start = Some(at),
                    // Edges fall on character boundaries, so `get` always succeeds.
                    Some(start) => return self.text.get(start..at),
                }
            } else if self.next_block < self.text.len() {
                self.classify();
            } else if let Some(start) = self.start.take() {
                // A word that runs to the end of a text whose length is a multiple of 64.
                return self.text.get(start..);
            } else {
                let (text, texts) = self.texts.split_first()?;
                *self = Words {
                    texts,
                    text,
                    ..Words::new(&[])
                };
            }
        }
    }
}

/// Eight bytes at once: bit `i` is set when byte `i` (little-endian) is an ASCII letter or
/// digit, exactly the ASCII characters that are `char::is_alphanumeric` (SWAR: no branch, no
/// carry between bytes).
fn ascii_alphanumeric(x: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    /// High bit of each byte set when `lo < byte < hi`, for bytes below 0x80 (`lo`, `hi` <=
    /// 0x80); bytes from 0x80 up are never in.
    fn between(x: u64, lo: u64, hi: u64) -> u64 {
        let low7 = x & (ONES * 0x7f);
        (ONES * (0x7f + hi)).wrapping_sub(low7) & !x & (low7 + ONES * (0x7f - lo)) & HIGH
    }
    let digit = between(x, b'0' as u64 - 1, b'9' as u64 + 1);
    // Setting bit 5 lower-cases ASCII letters; the other bytes it moves land outside a..z
    // (`@` to a backquote, `[` to `{` and so on up to `_` to DEL).
    let letter = between(x | (ONES * 0x20), b'a' as u64 - 1, b'z' as u64 + 1);
    // One bit per byte, gathered into the top byte by a multiplication.
    (((digit | letter) >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// The lowest `n` bits (`n` <= 64).
fn low_bits(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1 << n) - 1
    }
}

/// The bit of a length in [`Keywords::first`].
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

    /// ASCII letters and digits, so few that words repeat, overlap and hold one another.
    const ASCII_LETTERS: &[char] = &['a', 'b', 'A', 'B', 'k', '1'];
    const ASCII_SEPARATORS: &[&str] = &[" ", "  ", "-", ", ", "\n", ".", "'", "$"];

    fn ascii_word() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(ASCII_LETTERS), 1..4).prop_map(|cs| cs.into_iter().collect())
    }

    /// ASCII keywords and a text made of their words, the keywords in random case, and other
    /// words, cut anywhere into title and content (so a keyword may run from one into the
    /// other): the inputs of the Aho-Corasick path.
    fn ascii_case() -> impl Strategy<Value = (Vec<String>, String, String)> {
        let keyword = (
            prop::collection::vec(ascii_word(), 1..4),
            prop::sample::select(ASCII_SEPARATORS),
        )
            .prop_map(|(ws, sep)| ws.join(sep));
        prop::collection::vec(keyword, 1..8).prop_flat_map(|ks| {
            let piece = prop_oneof![
                3 => ascii_word(),
                2 => (prop::sample::select(ks.clone()), prop::collection::vec(any::<bool>(), 1..16))
                    .prop_map(|(k, up)| recase(&k, &up)),
            ];
            let text = prop::collection::vec((piece, prop::sample::select(ASCII_SEPARATORS)), 0..32)
                .prop_map(|ps| ps.into_iter().map(|(p, sep)| p + sep).collect::<String>());
            (Just(ks), text, any::<prop::sample::Index>()).prop_map(|(ks, text, cut)| {
                // ASCII: every byte is a char boundary.
                let (title, content) = text.split_at(cut.index(text.len() + 1));
                (ks, title.to_string(), content.to_string())
            })
        })
    }

    /// Words of the shipped vocabulary's keywords and other words they could be confused with.
    const FILLER: &[&str] = &[
        "the", "Acme", "shares", "S&P", "500", "price", "Target", "steps", "DOWN", "chapter", "11", "share", "buy",
    ];

    /// The words of `texts` as the old matcher split them (not lower-cased).
    fn split_words<'a>(texts: &[&'a str]) -> Vec<&'a str> {
        texts
            .iter()
            .flat_map(|t| t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()))
            .collect()
    }

    /// Up to ~1 KB: many 64-byte blocks, with words and multi-byte characters across their
    /// edges.
    fn long_text() -> impl Strategy<Value = String> {
        const ASCII: &[char] = &['a', 'Z', '0', ' ', '-', '.', '\n'];
        let piece = prop_oneof![
            4 => prop::sample::select(ASCII).prop_map(String::from),
            2 => prop::sample::select(LETTERS).prop_map(String::from),
            1 => prop::sample::select(SEPARATORS).prop_map(String::from),
            1 => any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..400).prop_map(|ps| ps.concat())
    }

    /// Every byte value at every position of the eight.
    #[test]
    fn the_eight_byte_classifier_is_is_ascii_alphanumeric() {
        for b in 0..=u8::MAX {
            for at in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[at] = b;
                let bits = ascii_alphanumeric(u64::from_le_bytes(bytes));
                assert_eq!(bits & (1 << at) != 0, b.is_ascii_alphanumeric(), "byte {b:#x} at {at}");
                assert_eq!(bits | (1 << at), 0xff, "the others are letters");
                let bits = ascii_alphanumeric(u64::from_le_bytes([b; 8]));
                assert_eq!(bits, if b.is_ascii_alphanumeric() { 0xff } else { 0 }, "{b:#x}");
            }
        }
    }

    /// The cheap test before a word is looked up: a first word of the same length that starts
    /// with the same byte (after `lower`) must exist.
    #[test]
    fn only_a_word_with_a_first_words_length_and_first_byte_may_start_a_keyword() {
        let k = Keywords::parse(&["merger", "rate cut", "x"]).unwrap();
        let same = |b: u8| b;
        for word in ["merger", "rate", "x"] {
            assert!(k.may_start(word, same), "{word}");
        }
        for word in ["merge", "mergers", "verger", "rates", "r", "xx", "cut", ""] {
            assert!(!k.may_start(word, same), "{word}");
        }
        assert!(!k.may_start("MERGER", same));
        assert!(k.may_start("MERGER", |b| b.to_ascii_lowercase()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any eight bytes, classified one by one.
        #[test]
        fn the_eight_byte_classifier_matches_byte_by_byte(x in any::<u64>()) {
            let want = x
                .to_le_bytes()
                .iter()
                .enumerate()
                .fold(0, |m, (i, b)| m | (u64::from(b.is_ascii_alphanumeric()) << i));
            prop_assert_eq!(ascii_alphanumeric(x), want);
        }

        /// Words are exactly what splitting at every character that is not a letter or digit
        /// gives, across texts and blocks, and a copy taken midway goes on from there.
        #[test]
        fn words_are_the_runs_of_letters_and_digits(a in long_text(), b in long_text(), skip in 0..50usize) {
            let texts = [a.as_str(), b.as_str()];
            let want = split_words(&texts);
            let mut words = Words::new(&texts);
            prop_assert_eq!(words.clone().collect::<Vec<_>>(), want.clone());
            let taken: Vec<&str> = words.by_ref().take(skip).collect();
            prop_assert_eq!(&taken[..], &want[..skip.min(want.len())]);
            prop_assert_eq!(words.collect::<Vec<_>>(), want[skip.min(want.len())..].to_vec());
        }

        /// The matcher finds exactly what the old `String`-per-word matcher found, and `any`
        /// says whether it found something.
        #[test]
        fn matches_like_the_old_matcher((keywords, title, content) in case()) {
            let want = oracle::find(&keywords, &title, &content);
            let k = Keywords::parse(&keywords).unwrap();
            prop_assert_eq!(k.any(&[&title, &content]), !want.is_empty());
            prop_assert_eq!(find(&keywords, &title, &content), want);
        }

        /// On ASCII keywords and texts, where one Aho-Corasick pass finds the first words:
        /// first words inside longer words, overlapping or repeated, and keywords that run from
        /// the title into the content.
        #[test]
        fn matches_like_the_old_matcher_on_ascii_text((keywords, title, content) in ascii_case()) {
            let want = oracle::find(&keywords, &title, &content);
            let k = Keywords::parse(&keywords).unwrap();
            prop_assert!(k.ascii.is_some(), "{:?} should take the ASCII path", keywords);
            prop_assert_eq!(k.any(&[&title, &content]), !want.is_empty());
            prop_assert_eq!(find(&keywords, &title, &content), want);
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
