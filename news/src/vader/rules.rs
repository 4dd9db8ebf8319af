//! `SentimentIntensityAnalyzer.polarity_scores` of vaderSentiment 3.3.2, rule for rule.
//!
//! Each function names the Python method it replicates. The Python code's quirks are kept on
//! purpose (they are what "identical scores" means): the idiom check runs only for a lexicon
//! word with three words before it and only after the booster and negation steps; "kind of" is
//! matched as a booster bigram there; `_but_check` finds each value's position with
//! `list.index`, so equal values earlier in the list are rescaled instead; an ALL CAPS word of
//! valence 0 gets `-C_INCR`. Floating-point operations happen in the same order as in Python.

use super::lexicon::{booster_bigram, special_bigram, special_trigram, Word, WORDS};
use super::text::{is_py_ascii_space, is_py_space, push_lower, py_isupper, replace_emojis, strip_punc_if_word};

/// ALL CAPS increment (`C_INCR`).
const C_INCR: f64 = 0.733;
/// Negation factor (`N_SCALAR`).
const N_SCALAR: f64 = -0.74;

/// The unrounded result of `polarity_scores`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawScores {
    pub(crate) neg: f64,
    pub(crate) neu: f64,
    pub(crate) pos: f64,
    pub(crate) compound: f64,
}

/// One token of `SentiText.words_and_emoticons`.
#[derive(Debug, Clone, Copy)]
struct Token {
    /// Its `lower()` is `Scratch::lower[lo..hi]`.
    lo: u32,
    hi: u32,
    word: Word,
    /// `token.isupper()`.
    upper: bool,
    /// `negated([token])`: in `NEGATE`, or containing "n't".
    negated: bool,
}

/// Buffers reused from text to text, so scoring allocates nothing per token (nor, once they
/// have grown, per text).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// The text after the emoji step, when it had emojis.
    text: String,
    /// Every token's `lower()`: back to back, or for an ASCII text the whole text lower-cased,
    /// each token a range of it.
    lower: String,
    tokens: Vec<Token>,
    sentiments: Vec<f64>,
}

/// The tokens and their lower-cased text, with accessors in the Python code's terms.
struct Words<'a> {
    tokens: &'a [Token],
    lower: &'a str,
    /// `SentiText.is_cap_diff`.
    cap_diff: bool,
}

impl Words<'_> {
    fn len(&self) -> usize {
        self.tokens.len()
    }

    /// `words_and_emoticons[i].lower()`.
    fn low(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        &self.lower[t.lo as usize..t.hi as usize]
    }

    /// `words_and_emoticons[i].lower() in self.lexicon`.
    fn in_lexicon(&self, i: usize) -> bool {
        self.tokens[i].word.valence.is_some()
    }
}

/// `polarity_scores(text)`, before rounding.
pub(crate) fn polarity_scores(text: &str, scratch: &mut Scratch) -> RawScores {
    let Scratch {
        text: text_buf,
        lower,
        tokens,
        sentiments,
    } = scratch;
    // `text_no_emoji.strip()`: the strip cannot change the tokens or the '!'/'?' counts.
    let text = replace_emojis(text, text_buf);
    tokenize(text, lower, tokens);
    let words = Words {
        tokens,
        lower,
        cap_diff: allcap_differential(tokens),
    };

    sentiments.clear();
    for i in 0..words.len() {
        let low = words.low(i);
        if words.tokens[i].word.booster.is_some() || (i + 1 < words.len() && low == "kind" && words.low(i + 1) == "of")
        {
            sentiments.push(0.0);
            continue;
        }
        sentiments.push(sentiment_valence(&words, i));
    }
    but_check(&words, sentiments);
    score_valence(sentiments, text)
}

/// `SentiText._words_and_emoticons`: `text.split()`, each token through `_strip_punc_if_word`.
///
/// News text is nearly always ASCII, and for ASCII text [`tokenize_ascii`] does the same in one
/// pass over each token's bytes.
fn tokenize(text: &str, lower: &mut String, tokens: &mut Vec<Token>) {
    lower.clear();
    tokens.clear();
    if text.is_ascii() {
        tokenize_ascii(text, lower, tokens);
    } else {
        tokenize_any(text, lower, tokens);
    }
}

/// [`tokenize`] of any text, character by character.
fn tokenize_any(text: &str, lower: &mut String, tokens: &mut Vec<Token>) {
    for raw in text.split(is_py_space).filter(|t| !t.is_empty()) {
        let token = strip_punc_if_word(raw);
        let lo = lower.len();
        push_lower(token, lower);
        let low = &lower[lo..];
        let word = WORDS.get(low).copied().unwrap_or_default();
        let negated = word.negate || (low.len() >= 3 && low.contains("n't"));
        tokens.push(Token {
            lo: index(lo),
            hi: index(lower.len()),
            word,
            upper: py_isupper(token),
            negated,
        });
    }
}

/// [`tokenize`] of an ASCII text, where a byte is a character: Python's whitespace among ASCII
/// ([`is_py_ascii_space`]), `string.punctuation` stripped unless two bytes or fewer remain, the
/// flags of the `isupper()` and "n't" tests from one loop over the token's bytes.
///
/// The whole text is lower-cased once, up front: an ASCII token's `lower()` is the same bytes of
/// that copy, so each token is a range of `lower` at its own offsets in the text, and nothing is
/// copied per token (a copy and a lower-casing per token were ~16 % of the scorer's
/// instructions in a VADER drain).
fn tokenize_ascii(text: &str, lower: &mut String, tokens: &mut Vec<Token>) {
    lower.clear();
    lower.push_str(text);
    lower.make_ascii_lowercase();
    let (lower, words) = (lower.as_str(), &*WORDS);
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && is_py_ascii_space(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            return;
        }
        let start = i;
        while i < bytes.len() && !is_py_ascii_space(bytes[i]) {
            i += 1;
        }
        let (mut a, mut b) = (start, i);
        while a < b && bytes[a].is_ascii_punctuation() {
            a += 1;
        }
        while b > a && bytes[b - 1].is_ascii_punctuation() {
            b -= 1;
        }
        if b - a <= 2 {
            (a, b) = (start, i);
        }
        // The flags in registers: pushing byte by byte (an earlier version) kept them and the
        // buffer's length in memory, one store-to-load round trip per byte.
        let (mut upper, mut lowercase, mut apostrophe) = (false, false, false);
        for &c in &bytes[a..b] {
            upper |= c.is_ascii_uppercase();
            lowercase |= c.is_ascii_lowercase();
            apostrophe |= c == b'\'';
        }
        // Every byte of an ASCII text is a character boundary.
        let low = &lower[a..b];
        let word = words.get(low).copied().unwrap_or_default();
        let negated = word.negate || (apostrophe && low.len() >= 3 && low.contains("n't"));
        tokens.push(Token {
            lo: index(a),
            hi: index(b),
            word,
            upper: upper && !lowercase,
            negated,
        });
    }
}

/// A buffer offset as `u32`, saturating: a text of 4 GiB is not a news article, and saturating
/// keeps the function total without a panic path.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// `allcap_differential`: some but not all tokens are ALL CAPS. Only "not all" is checked: the
/// flag is read only together with an ALL CAPS token's own flag, so "some" holds wherever it
/// counts (Python's `0 < differential` half could not change a score).
fn allcap_differential(tokens: &[Token]) -> bool {
    !tokens.iter().all(|t| t.upper)
}

/// `sentiment_valence` for token `i` (not a booster, not the "kind" of "kind of").
fn sentiment_valence(w: &Words<'_>, i: usize) -> f64 {
    let Some(lexicon_valence) = w.tokens[i].word.valence else {
        return 0.0;
    };
    let mut valence = lexicon_valence;
    let low = w.low(i);
    // "no" before a lexicon word negates it instead of counting itself.
    if low == "no" && i != w.len() - 1 && w.in_lexicon(i + 1) {
        valence = 0.0;
    }
    if (i > 0 && w.low(i - 1) == "no")
        || (i > 1 && w.low(i - 2) == "no")
        || (i > 2 && w.low(i - 3) == "no" && matches!(w.low(i - 1), "or" | "nor"))
    {
        valence = lexicon_valence * N_SCALAR;
    }
    if w.tokens[i].upper && w.cap_diff {
        if valence > 0.0 {
            valence += C_INCR;
        } else {
            valence -= C_INCR;
        }
    }
    for start_i in 0..3 {
        if i > start_i && !w.in_lexicon(i - (start_i + 1)) {
            let mut s = scalar_inc_dec(&w.tokens[i - (start_i + 1)], valence, w.cap_diff);
            if start_i == 1 && s != 0.0 {
                s *= 0.95;
            }
            if start_i == 2 && s != 0.0 {
                s *= 0.9;
            }
            valence += s;
            valence = negation_check(valence, w, start_i, i);
            if start_i == 2 {
                valence = special_idioms_check(valence, w, i);
            }
        }
    }
    least_check(valence, w, i)
}

/// `scalar_inc_dec`: a preceding booster or dampener, stronger in ALL CAPS.
fn scalar_inc_dec(token: &Token, valence: f64, cap_diff: bool) -> f64 {
    let Some(mut scalar) = token.word.booster else {
        return 0.0;
    };
    if valence < 0.0 {
        scalar = -scalar;
    }
    if token.upper && cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

/// `_negation_check`.
fn negation_check(valence: f64, w: &Words<'_>, start_i: usize, i: usize) -> f64 {
    let so_this = |j: usize| matches!(w.low(j), "so" | "this");
    match start_i {
        0 if w.tokens[i - 1].negated => valence * N_SCALAR,
        1 => {
            if w.low(i - 2) == "never" && so_this(i - 1) {
                valence * 1.25
            } else if w.low(i - 2) == "without" && w.low(i - 1) == "doubt" {
                valence
            } else if w.tokens[i - 2].negated {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        2 => {
            // Python's precedence: (never and (so or this)) or (so or this) one word back.
            if (w.low(i - 3) == "never" && so_this(i - 2)) || so_this(i - 1) {
                valence * 1.25
            } else if w.low(i - 3) == "without" && (w.low(i - 2) == "doubt" || w.low(i - 1) == "doubt") {
                valence
            } else if w.tokens[i - 3].negated {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        _ => valence,
    }
}

/// `_special_idioms_check` (called with `i > 2`).
fn special_idioms_check(mut valence: f64, w: &Words<'_>, i: usize) -> f64 {
    let (w3, w2, w1, w0) = (w.low(i - 3), w.low(i - 2), w.low(i - 1), w.low(i));
    // onezero, twoonezero, twoone, threetwoone, threetwo: the first that is a special case.
    if let Some(v) = special_bigram(w1, w0)
        .or_else(|| special_trigram(w2, w1, w0))
        .or_else(|| special_bigram(w2, w1))
        .or_else(|| special_trigram(w3, w2, w1))
        .or_else(|| special_bigram(w3, w2))
    {
        valence = v;
    }
    let n = w.len();
    if n - 1 > i {
        if let Some(v) = special_bigram(w0, w.low(i + 1)) {
            valence = v;
        }
    }
    if n - 1 > i + 1 {
        if let Some(v) = special_trigram(w0, w.low(i + 1), w.low(i + 2)) {
            valence = v;
        }
    }
    // Booster bigrams among threetwoone (three words: never one), threetwo, twoone.
    if let Some(b) = booster_bigram(w3, w2) {
        valence += b;
    }
    if let Some(b) = booster_bigram(w2, w1) {
        valence += b;
    }
    valence
}

/// `_least_check`.
fn least_check(valence: f64, w: &Words<'_>, i: usize) -> f64 {
    if i > 1 && !w.in_lexicon(i - 1) && w.low(i - 1) == "least" {
        if w.low(i - 2) != "at" && w.low(i - 2) != "very" {
            return valence * N_SCALAR;
        }
    } else if i > 0 && !w.in_lexicon(i - 1) && w.low(i - 1) == "least" {
        return valence * N_SCALAR;
    }
    valence
}

/// `_but_check`: values before the first "but" halved, after it multiplied by 1.5, replicating
/// the loop's `sentiments.index(sentiment)`: each value visited in order rescales the *first*
/// position holding an equal value (which an earlier step may already have rescaled).
fn but_check(w: &Words<'_>, sentiments: &mut [f64]) {
    let Some(bi) = (0..w.len()).find(|&i| w.low(i) == "but") else {
        return;
    };
    for p in 0..sentiments.len() {
        let value = sentiments[p];
        if value == 0.0 {
            // The first 0 is rescaled to 0: nothing changes.
            continue;
        }
        let Some(si) = sentiments[..=p].iter().position(|&s| s == value) else {
            continue;
        };
        if si < bi {
            sentiments[si] = value * 0.5;
        } else if si > bi {
            sentiments[si] = value * 1.5;
        }
    }
}

/// `score_valence` (with `_punctuation_emphasis` and `_sift_sentiment_scores`), unrounded.
fn score_valence(sentiments: &[f64], text: &str) -> RawScores {
    if sentiments.is_empty() {
        return RawScores {
            neg: 0.0,
            neu: 0.0,
            pos: 0.0,
            compound: 0.0,
        };
    }
    let mut sum_s: f64 = 0.0;
    for &s in sentiments {
        sum_s += s;
    }
    let punct = punctuation_emphasis(text);
    if sum_s > 0.0 {
        sum_s += punct;
    } else if sum_s < 0.0 {
        sum_s -= punct;
    }
    let compound = normalize(sum_s);

    let (mut pos_sum, mut neg_sum, mut neu_count) = (0.0_f64, 0.0_f64, 0_u32);
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu_count += 1;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += punct;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= punct;
    }
    let total = pos_sum + neg_sum.abs() + f64::from(neu_count);
    RawScores {
        neg: (neg_sum / total).abs(),
        neu: (f64::from(neu_count) / total).abs(),
        pos: (pos_sum / total).abs(),
        compound,
    }
}

/// `_punctuation_emphasis`: up to four '!' at 0.292 each; two or three '?' at 0.18 each, more
/// than three 0.96.
fn punctuation_emphasis(text: &str) -> f64 {
    let (mut ep, mut qm) = (0_u32, 0_u32);
    for b in text.bytes() {
        ep += u32::from(b == b'!');
        qm += u32::from(b == b'?');
    }
    let ep_amplifier = f64::from(ep.min(4)) * 0.292;
    let qm_amplifier = match qm {
        0 | 1 => 0.0,
        2 | 3 => f64::from(qm) * 0.18,
        _ => 0.96,
    };
    ep_amplifier + qm_amplifier
}

/// `normalize` with alpha 15, clamped to -1..=1.
fn normalize(score: f64) -> f64 {
    let norm = score / (score * score + 15.0).sqrt();
    norm.clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compound(text: &str) -> f64 {
        polarity_scores(text, &mut Scratch::default()).compound
    }

    #[test]
    fn but_rescales_the_first_equal_value() {
        // Sentiments [2, 1, 0] for "x y but": visiting 2 halves it to 1; visiting the original
        // 1 then finds that rescaled first position and halves it again, leaving the second 1
        // as it was.
        let mut scratch = Scratch::default();
        tokenize("x y but", &mut scratch.lower, &mut scratch.tokens);
        let w = Words {
            tokens: &scratch.tokens,
            lower: &scratch.lower,
            cap_diff: false,
        };
        let mut s = [2.0, 1.0, 0.0];
        but_check(&w, &mut s);
        assert_eq!(s, [0.5, 1.0, 0.0]);
    }

    /// The ASCII tokenizer gives exactly the general one's tokens, on texts made of the bytes
    /// that matter: every kind of ASCII whitespace, punctuation, both cases, "n't", lexicon,
    /// booster and negation words, emoticons.
    #[test]
    fn the_ascii_tokenizer_gives_the_general_tokens() {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("\t"),
            Just("\n"),
            Just("\x0b"),
            Just("\x0c"),
            Just("\r"),
            Just("\x1c"),
            Just("\x1f"),
            Just(" "),
            Just("!"),
            Just("'"),
            Just("("),
            Just("..."),
            Just(":)"),
            Just(":-("),
            Just("$:"),
            Just("?"),
            Just("GOOD"),
            Just("good"),
            Just("Good"),
            Just("don't"),
            Just("DON'T"),
            Just("isn't"),
            Just("n't"),
            Just("never"),
            Just("very"),
            Just("kind"),
            Just("of"),
            Just("no"),
            Just("a"),
            Just("ab"),
            Just("A1"),
            Just("123"),
            Just("lol"),
            Just("x"),
            Just("but"),
            Just("-"),
        ];
        let view = |lower: &str, tokens: &[Token]| -> Vec<(String, Word, bool, bool)> {
            tokens
                .iter()
                .map(|t| {
                    (
                        lower[t.lo as usize..t.hi as usize].to_string(),
                        t.word,
                        t.upper,
                        t.negated,
                    )
                })
                .collect()
        };
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2048));
        runner
            .run(&prop::collection::vec(piece, 0..24), |pieces| {
                let text = pieces.concat();
                let (mut want_lower, mut want) = (String::new(), Vec::new());
                tokenize_any(&text, &mut want_lower, &mut want);
                let (mut lower, mut tokens) = (String::new(), Vec::new());
                tokenize(&text, &mut lower, &mut tokens);
                prop_assert_eq!(view(&lower, &tokens), view(&want_lower, &want), "{:?}", text);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn empty_and_blank_texts_score_zero() {
        for text in ["", " ", "\t\n", "\x1c"] {
            let got = polarity_scores(text, &mut Scratch::default());
            assert_eq!(
                got,
                RawScores {
                    neg: 0.0,
                    neu: 0.0,
                    pos: 0.0,
                    compound: 0.0
                },
                "{text:?}"
            );
        }
        assert_eq!(compound("the"), 0.0);
    }

    #[test]
    fn punctuation_emphasis_caps_and_steps() {
        assert_eq!(punctuation_emphasis("!!!!!!"), 4.0 * 0.292);
        assert_eq!(punctuation_emphasis("?"), 0.0);
        assert_eq!(punctuation_emphasis("??"), 2.0 * 0.18);
        assert_eq!(punctuation_emphasis("????"), 0.96);
    }
}
