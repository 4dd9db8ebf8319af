//! Keeping the API key out of everything the client emits.
//!
//! The key travels in the `api_token` query parameter, so any text that may echo the request
//! URL (an HTML error page, a proxy's message) goes through [`redact`] before it is stored in an
//! error or logged; `reqwest` errors are stored `without_url()`.

/// What the key and `api_token` values are replaced with.
pub(crate) const MASK: &str = "***";

/// Longest body snippet kept in errors and logs, in characters.
const SNIPPET_CHARS: usize = 200;

/// Replaces every occurrence of `key`, and the value of every `api_token=` parameter, with
/// `***`.
pub(crate) fn redact(text: &str, key: &str) -> String {
    let mut out = if key.is_empty() {
        text.to_string()
    } else {
        text.replace(key, MASK)
    };
    let needle = "api_token=";
    let mut from = 0;
    while let Some(pos) = out.get(from..).and_then(|rest| find_ascii_ci(rest, needle)) {
        let start = from + pos + needle.len();
        let end = out[start..]
            .find(|c: char| matches!(c, '&' | '#' | '"' | '\'' | '<' | '>' | ')' | ']') || c.is_whitespace())
            .map_or(out.len(), |n| start + n);
        if &out[start..end] != MASK {
            out.replace_range(start..end, MASK);
        }
        // The value is the mask now, and the mask holds no `api_token=`: the next search may
        // start right at it.
        from = start;
    }
    out
}

fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// A short, single-line, redacted excerpt of a response body for errors and logs.
pub(crate) fn snippet(body: &[u8], key: &str) -> String {
    // Redact before shortening, on a prefix long enough that a key starting within the kept
    // characters ends inside it.
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let redacted = redact(&one_line, key);
    let mut out: String = redacted.chars().take(SNIPPET_CHARS).collect();
    if redacted.chars().count() > SNIPPET_CHARS || body.len() > head.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is masked wherever it appears, and so is any `api_token=` value.
    #[test]
    fn key_and_token_parameters_are_masked() {
        let key = "k3y-VALUE";
        let text = "GET /api/news?s=AAPL.US&api_token=k3y-VALUE&fmt=json failed; key k3y-VALUE; \
                    API_TOKEN=other&x=1 <a href=\"/x?api_token=zzz\">";
        let out = redact(text, key);
        assert!(!out.contains(key), "{out}");
        assert!(!out.contains("other") && !out.contains("zzz"), "{out}");
        assert!(out.contains("api_token=***&fmt=json"), "{out}");
        assert!(out.contains("API_TOKEN=***&x=1"), "{out}");
        assert_eq!(redact("api_token=", ""), "api_token=***");
        assert_eq!(redact("no secrets", ""), "no secrets");
    }

    /// Snippets are one line, shortened, and redacted even when the key sits at the cut.
    #[test]
    fn snippets_are_short_single_line_and_redacted() {
        let key = "ABCDEFGHIJKLMNOP";
        let body = format!("{}\n\n<p>{key}</p>{}", "x".repeat(190), "y".repeat(5000));
        let s = snippet(body.as_bytes(), key);
        assert!(!s.contains("ABCDEF"), "{s}");
        assert!(!s.contains('\n'));
        assert!(s.chars().count() <= SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        assert_eq!(snippet(b"Unauthenticated", key), "Unauthenticated");
    }

    /// A snippet ends in `…` exactly when something was cut: text past 200 characters, or a
    /// body past the 4 KiB that is read, even when what was read is blank.
    #[test]
    fn the_ellipsis_marks_a_cut_and_only_a_cut() {
        let at_limit = "a".repeat(SNIPPET_CHARS);
        assert_eq!(snippet(at_limit.as_bytes(), "k"), at_limit);
        let over = "a".repeat(SNIPPET_CHARS + 100);
        assert_eq!(snippet(over.as_bytes(), "k"), format!("{at_limit}…"));
        let blank_head = format!("{}tail", " ".repeat(5000));
        assert_eq!(snippet(blank_head.as_bytes(), "k"), "…");
    }

    /// Every `api_token=` value is masked, however close together they are, and a value that
    /// is already the mask is left as it is.
    #[test]
    fn adjacent_token_parameters_are_all_masked() {
        assert_eq!(
            redact("api_token=a&api_token=b&API_TOKEN=c", ""),
            "api_token=***&api_token=***&API_TOKEN=***"
        );
        assert_eq!(
            redact("api_token=***&x=api_token=y", ""),
            "api_token=***&x=api_token=***"
        );
        assert_eq!(redact("api_token=api_token=z", ""), "api_token=***");
    }
}
