//! vaderSentiment 3.3.2's data: the lexicon, the emoji descriptions and the rule word lists,
//! embedded and parsed once.
//!
//! Every word a rule asks about is folded into one [`Word`] per lower-cased key, so scoring looks a
//! token up once.

use std::collections::HashMap;
use std::sync::LazyLock;

use rustc_hash::FxBuildHasher;

use super::text::py_strip;

const LEXICON: &str = include_str!("data/vader_lexicon.txt");
const EMOJI_LEXICON: &str = include_str!("data/emoji_utf8_lexicon.txt");

/// Booster increment (`B_INCR`).
const B_INCR: f64 = 0.293;
/// Dampener decrement (`B_DECR`).
const B_DECR: f64 = -0.293;

/// `NEGATE`, verbatim.
const NEGATE: [&str; 59] = [
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// The single-word keys of `BOOSTER_DICT`. Its three two-word keys ("just enough", "kind of",
/// "sort of", all dampeners) can never equal one whitespace-free token; only the idiom check reads
/// them, through [`booster_bigram`].
const BOOSTERS: [(&str, f64); 81] = [
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// What the rules know about one lower-cased word.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Word {
    /// Its lexicon valence, if it is in `vader_lexicon.txt`.
    pub(crate) valence: Option<f64>,
    /// Its `BOOSTER_DICT` scalar, if it is a booster or dampener.
    pub(crate) booster: Option<f64>,
    /// It is in `NEGATE` (the "n't" test is the tokenizer's, per token).
    pub(crate) negate: bool,
}

type Map<K, V> = HashMap<K, V, FxBuildHasher>;

/// Lower-cased word -> what the rules know about it.
pub(crate) static WORDS: LazyLock<Map<&'static str, Word>> = LazyLock::new(build_words);

/// Emoji character -> its description. Only single-character keys: `polarity_scores` looks up
/// one character at a time, so the file's multi-character sequences can never match.
pub(crate) static EMOJIS: LazyLock<Map<char, &'static str>> = LazyLock::new(build_emojis);

/// `make_lex_dict`: lines split on `\n` after dropping trailing newlines, empty lines skipped,
/// each line stripped and split on tabs, the first field the word and the second its valence;
/// a later line for the same word wins.
fn build_words() -> Map<&'static str, Word> {
    let mut words: Map<&'static str, Word> = Map::default();
    for line in LEXICON.trim_end_matches('\n').split('\n') {
        if line.is_empty() {
            continue;
        }
        let mut fields = py_strip(line).split('\t');
        let (Some(word), Some(measure)) = (fields.next(), fields.next()) else {
            continue;
        };
        // The data is compiled in and a unit test parses every line, so a bad number cannot
        // reach a release; skipping it keeps this path free of panics all the same.
        let Ok(valence) = measure.parse::<f64>() else {
            continue;
        };
        words.entry(word).or_default().valence = Some(valence);
    }
    for (word, scalar) in BOOSTERS {
        words.entry(word).or_default().booster = Some(scalar);
    }
    for word in NEGATE {
        words.entry(word).or_default().negate = true;
    }
    words
}

/// `make_emoji_dict`: the same line handling (no empty-line skip; the file has none).
fn build_emojis() -> Map<char, &'static str> {
    let mut all: Map<&'static str, &'static str> = Map::default();
    for line in EMOJI_LEXICON.trim_end_matches('\n').split('\n') {
        let mut fields = py_strip(line).split('\t');
        if let (Some(emoji), Some(description)) = (fields.next(), fields.next()) {
            all.insert(emoji, description);
        }
    }
    all.into_iter()
        .filter_map(|(emoji, description)| {
            let mut chars = emoji.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some((c, description)),
                _ => None,
            }
        })
        .collect()
}

/// `SPECIAL_CASES` for two words. ("badass" has no space, so it never matches an n-gram.)
pub(crate) fn special_bigram(a: &str, b: &str) -> Option<f64> {
    match (a, b) {
        ("the", "shit") | ("the", "bomb") => Some(3.0),
        ("bad", "ass") => Some(1.5),
        ("bus", "stop") => Some(0.0),
        ("yeah", "right") => Some(-2.0),
        ("beating", "heart") => Some(3.5),
        _ => None,
    }
}

/// `SPECIAL_CASES` for three words.
pub(crate) fn special_trigram(a: &str, b: &str, c: &str) -> Option<f64> {
    match (a, b, c) {
        ("kiss", "of", "death") => Some(-1.5),
        ("to", "die", "for") => Some(3.0),
        _ => None,
    }
}

/// The two-word keys of `BOOSTER_DICT`.
pub(crate) fn booster_bigram(a: &str, b: &str) -> Option<f64> {
    match (a, b) {
        ("just", "enough") | ("kind", "of") | ("sort", "of") => Some(B_DECR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexicon_has_every_word_of_the_python_dict() {
        // len(SentimentIntensityAnalyzer().lexicon) in vaderSentiment 3.3.2.
        let in_lexicon = WORDS.values().filter(|w| w.valence.is_some()).count();
        assert_eq!(in_lexicon, 7506);
        assert_eq!(WORDS["good"].valence, Some(1.9));
        assert_eq!(WORDS["$:"].valence, Some(-1.5));
        assert_eq!(WORDS["kind"].valence, Some(2.4));
        // Later lines win, as in the Python dict.
        assert_eq!(WORDS["lol"].valence, Some(1.8));
        assert!(LEXICON.lines().filter(|l| !l.trim().is_empty()).count() == 7520);
    }

    #[test]
    fn rule_words_are_folded_in() {
        assert_eq!(
            WORDS["very"],
            Word {
                valence: None,
                booster: Some(B_INCR),
                negate: false
            }
        );
        assert!(WORDS["never"].negate);
        assert!(!WORDS["no"].negate, "\"no\" has its own rule, it is not in NEGATE");
        assert_eq!(BOOSTERS.len() + 3, 84, "BOOSTER_DICT has 84 keys");
        assert_eq!(WORDS.values().filter(|w| w.negate).count(), NEGATE.len());
    }

    #[test]
    fn emojis_are_single_characters_with_descriptions() {
        assert_eq!(EMOJIS.len(), 1212);
        assert_eq!(EMOJIS[&'😁'], "beaming face with smiling eyes");
        assert_eq!(EMOJIS[&'🚀'], "rocket");
        assert!(
            EMOJIS.keys().all(|c| !c.is_ascii()),
            "replace_emojis relies on no emoji being ASCII"
        );
    }
}
