//! Python's string semantics where vaderSentiment relies on them: `str.split()` and `str.strip()`
//! (Unicode whitespace), `str.strip(string.punctuation)`, `str.lower()` and `str.isupper()`, and
//! the emoji replacement of `polarity_scores`.
//!
//! ASCII takes fast paths; anything else follows CPython 3.11's rules and its Unicode 14.0
//! case data: std's newer data is corrected by [`PY311_CASELESS`] and U+0295.

use super::lexicon::EMOJIS;

/// Python's `str.isspace()`: Unicode `White_Space` (which is `char::is_whitespace`) plus the four
/// ASCII information separators U+001C..=U+001F, which CPython counts as whitespace.
pub(crate) fn is_py_space(c: char) -> bool {
    if c.is_ascii() {
        is_py_ascii_space(c as u8)
    } else {
        c.is_whitespace()
    }
}

/// [`is_py_space`] of an ASCII byte: `\t` to `\r`, the separators 0x1c-0x1f and the space.
pub(crate) fn is_py_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | 0x1c..=0x1f | b' ')
}

/// Python's `s.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `SentiText._strip_punc_if_word`: `string.punctuation` (exactly the ASCII punctuation) stripped
/// from both ends, unless that leaves two characters or fewer (an emoticon such as `:)`), in
/// which case the token stays as it was.
pub(crate) fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    let short = match stripped.len() {
        0..=2 => true,
        // Up to 8 bytes may still be two characters of up to 4 bytes each.
        3..=8 => stripped.chars().nth(2).is_none(),
        _ => false,
    };
    if short {
        token
    } else {
        stripped
    }
}

/// Characters that std's Unicode data (16.0, Rust 1.95) gives a case, but CPython 3.11's (14.0)
/// does not: 175 letters assigned after 14.0 (Latin Extended-D, Cyrillic Extended-C, Garay,
/// Kirat Rai, ...) and five modifier letters that became `Lowercase` later. Python treats them as
/// caseless with no lower-case mapping. Found by comparing every code point's `islower()`,
/// `isupper()` and `lower()` under Python 3.11 with std's; the only other difference is U+0295
/// (lower case for Python, not for std). A newer toolchain may need this list extended.
const PY311_CASELESS: [(char, char); 14] = [
    ('\u{10FC}', '\u{10FC}'),
    ('\u{1C89}', '\u{1C8A}'),
    ('\u{A7CB}', '\u{A7CF}'),
    ('\u{A7D2}', '\u{A7D2}'),
    ('\u{A7D4}', '\u{A7D4}'),
    ('\u{A7DA}', '\u{A7DC}'),
    ('\u{A7F1}', '\u{A7F4}'),
    ('\u{AB69}', '\u{AB69}'),
    ('\u{10D50}', '\u{10D65}'),
    ('\u{10D70}', '\u{10D85}'),
    ('\u{16EA0}', '\u{16EB8}'),
    ('\u{16EBB}', '\u{16ED3}'),
    ('\u{1DF25}', '\u{1DF2A}'),
    ('\u{1E030}', '\u{1E06D}'),
];

fn py311_caseless(c: char) -> bool {
    c >= '\u{10FC}' && PY311_CASELESS.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// CPython 3.11's `Py_UNICODE_ISLOWER`.
fn py_is_lower(c: char) -> bool {
    c == '\u{0295}' || (c.is_lowercase() && !py311_caseless(c))
}

/// CPython 3.11's `Py_UNICODE_ISUPPER`.
fn py_is_upper(c: char) -> bool {
    c.is_uppercase() && !py311_caseless(c)
}

/// Appends Python's `token.lower()` to `out`.
pub(crate) fn push_lower(token: &str, out: &mut String) {
    if token.is_ascii() {
        // Copy, then lower in place: a memcpy and a vectorisable loop.
        let start = out.len();
        out.push_str(token);
        out[start..].make_ascii_lowercase();
    } else if token.contains('Σ') {
        // Capital sigma lowers to ς at the end of a word: std applies the same Final_Sigma rule
        // as CPython, on the same context (the whole token). (With a character of
        // `PY311_CASELESS` in the same token the two could differ; no news text has one.)
        out.push_str(&token.to_lowercase());
    } else {
        // Full mappings, as CPython's (İ becomes "i̇", two characters).
        for c in token.chars() {
            if py311_caseless(c) {
                out.push(c);
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
}

/// Python's `token.isupper()`: at least one cased character, and no lower-case or title-case one.
pub(crate) fn py_isupper(token: &str) -> bool {
    if token.is_ascii() {
        let b = token.as_bytes();
        return b.iter().any(u8::is_ascii_uppercase) && !b.iter().any(u8::is_ascii_lowercase);
    }
    let mut cased = false;
    for c in token.chars() {
        if py_is_lower(c) || is_titlecase(c) {
            return false;
        }
        cased |= py_is_upper(c);
    }
    cased
}

/// General category Lt (std has no predicate for it).
fn is_titlecase(c: char) -> bool {
    matches!(
        c,
        '\u{01C5}'
            | '\u{01C8}'
            | '\u{01CB}'
            | '\u{01F2}'
            | '\u{1F88}'..='\u{1F8F}'
            | '\u{1F98}'..='\u{1F9F}'
            | '\u{1FA8}'..='\u{1FAF}'
            | '\u{1FBC}'
            | '\u{1FCC}'
            | '\u{1FFC}'
    )
}

/// The emoji step of `polarity_scores`: every character with an emoji description is replaced by
/// it, preceded by a space unless the previous character was a space (`' '` only); the next
/// character follows the description directly. Returns `text` itself when nothing changes, else
/// the result written to `buf`. No emoji is ASCII (a lexicon test checks it), so an ASCII text
/// is returned at once and the search for the first emoji looks up non-ASCII characters only.
pub(crate) fn replace_emojis<'a>(text: &'a str, buf: &'a mut String) -> &'a str {
    if text.is_ascii() {
        return text;
    }
    let emojis = &*EMOJIS;
    let Some(first) = text.find(|c: char| !c.is_ascii() && emojis.contains_key(&c)) else {
        return text;
    };
    buf.clear();
    buf.reserve(text.len() + 64);
    buf.push_str(&text[..first]);
    let mut prev_space = first == 0 || text[..first].ends_with(' ');
    for c in text[first..].chars() {
        match emojis.get(&c) {
            Some(description) => {
                if !prev_space {
                    buf.push(' ');
                }
                buf.push_str(description);
                prev_space = false;
            }
            _ => {
                buf.push(c);
                prev_space = c == ' ';
            }
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        for c in [
            '\t', '\n', '\x0b', '\x0c', '\r', '\x1c', '\x1f', ' ', '\u{85}', '\u{a0}', '\u{2003}', '\u{3000}',
        ] {
            assert!(is_py_space(c), "{c:?}");
        }
        for c in ['a', '\u{200b}', '\u{180e}', '\x1b', '\u{feff}'] {
            assert!(!is_py_space(c), "{c:?}");
        }
        assert_eq!(py_strip("\x1c good \u{3000}"), "good");
    }

    #[test]
    fn punctuation_is_stripped_unless_two_characters_remain() {
        assert_eq!(strip_punc_if_word("good!"), "good");
        assert_eq!(strip_punc_if_word("'(great)'"), "great");
        assert_eq!(strip_punc_if_word(":)"), ":)");
        assert_eq!(strip_punc_if_word("ok!"), "ok!");
        assert_eq!(strip_punc_if_word("(日本)"), "(日本)");
        assert_eq!(strip_punc_if_word("(日本語)"), "日本語");
        assert_eq!(strip_punc_if_word("«good»"), "«good»", "only ASCII punctuation");
    }

    #[test]
    fn lower_and_isupper_follow_python() {
        let lower = |s: &str| {
            let mut out = String::new();
            push_lower(s, &mut out);
            out
        };
        assert_eq!(lower("GOOD"), "good");
        assert_eq!(lower("ΟΔΟΣ"), "οδος");
        assert_eq!(lower("ΣΑ"), "σα");
        assert_eq!(lower("İ"), "i\u{307}");
        assert_eq!(lower("\u{212a}"), "k", "the Kelvin sign lowers to ASCII");
        assert!(py_isupper("GOOD") && py_isupper("GOOD!") && py_isupper("A1"));
        assert!(!py_isupper("Good") && !py_isupper("123") && !py_isupper(":)"));
        assert!(py_isupper("ÜBER") && !py_isupper("über") && !py_isupper("日本"));
        assert!(!py_isupper("ǅ") && !py_isupper("AǅB"), "title case is not upper case");
        // Case data newer than Python 3.11's.
        assert!(!py_isupper("\u{1C89}") && py_isupper("A\u{1C89}") && !py_isupper("A\u{0295}"));
        assert_eq!(lower("\u{A7CB}"), "\u{A7CB}");
    }

    #[test]
    fn emojis_become_their_descriptions() {
        let mut buf = String::new();
        assert_eq!(
            replace_emojis("good 😁 bad", &mut buf),
            "good beaming face with smiling eyes bad"
        );
        assert_eq!(
            replace_emojis("good😁bad", &mut buf),
            "good beaming face with smiling eyesbad"
        );
        assert_eq!(
            replace_emojis("😁😁", &mut buf),
            "beaming face with smiling eyes beaming face with smiling eyes"
        );
        assert_eq!(replace_emojis("a\t😁", &mut buf), "a\t beaming face with smiling eyes");
        assert_eq!(replace_emojis("café", &mut buf), "café");
    }

    #[test]
    fn a_text_without_emojis_is_returned_itself_without_a_copy() {
        for text in ["plain ascii", "café über", "日本 — ü"] {
            let mut buf = String::new();
            let out = replace_emojis(text, &mut buf);
            assert!(std::ptr::eq(out, text), "{text:?} was copied");
            assert!(buf.is_empty(), "{text:?} was written to the buffer");
        }
        let mut buf = String::new();
        let text = "café 😁";
        assert!(
            !std::ptr::eq(replace_emojis(text, &mut buf), text),
            "an emoji is replaced in the buffer"
        );
    }
}
