//! Which events passed on each side, and why the sides disagree.
//!
//! An event is identified by its ticker and its article's link (the generator numbers its
//! links, and an article yields one event per ticker): both sides drain the same pairs, in
//! different envelopes. The reference matches keywords as substrings of the lower-cased title
//! and content; mt5-hub matches whole words (`news/src/filter/keywords.rs`). Both rules are
//! computed here for every differing event, so a difference they explain is counted as such.

use std::collections::HashSet;

use mt5_bus::reply::entries;
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;

use crate::{LoadError, Result};

/// `(ticker, article link)`.
pub(crate) type EventId = (String, String);

/// The identity of a generated pair.
pub(crate) fn pair_id(ticker: &str, article: &Json) -> EventId {
    (
        ticker.to_string(),
        article
            .get("link")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// The identity of a filtered event's `data`: the reference's envelope keeps the article in
/// `payload`, mt5-hub's in `article`.
fn data_id(data: &Json) -> Option<EventId> {
    let ticker = data.get("ticker")?.as_str()?;
    let article = data.get("article").or_else(|| data.get("payload"))?;
    Some((ticker.to_string(), article.get("link")?.as_str()?.to_string()))
}

/// The identities of every event in `stream`, in stream order.
///
/// # Errors
/// The driver's error, or an entry whose `data` has no ticker and link.
pub(crate) async fn passed_ids(conn: &mut MultiplexedConnection, stream: &str) -> Result<Vec<EventId>> {
    let mut out = Vec::new();
    let mut start = "-".to_string();
    loop {
        let v: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        let batch = entries(v, "XRANGE").map_err(|e| LoadError::Run(format!("reading {stream}: {e}")))?;
        let Some(last) = batch.last() else {
            return Ok(out);
        };
        start = format!("({}", last.id);
        for e in &batch {
            let id = e
                .field("data")
                .and_then(|d| serde_json::from_str::<Json>(d).ok())
                .and_then(|d| data_id(&d))
                .ok_or_else(|| LoadError::Run(format!("entry {} of {stream} has no ticker and article link", e.id)))?;
            out.push(id);
        }
    }
}

/// How the passed sets of the two sides differ on one round's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Differences {
    /// Events passed by the reference only.
    pub python_only: u64,
    /// Events passed by mt5-hub only.
    pub rust_only: u64,
    /// Of the differing events, those on which the two keyword rules disagree.
    pub explained_by_keywords: u64,
    /// Events (of all) on which the two keyword rules disagree, whatever the other rules say.
    pub keyword_rule_differs: u64,
}

impl Differences {
    /// Events whose pass decision differs.
    pub fn total(&self) -> u64 {
        self.python_only + self.rust_only
    }
}

/// Compares the passed sets over the round's `pairs`, with the reference's `keywords`.
pub(crate) fn differences(
    pairs: &[(String, Json)],
    python: &HashSet<EventId>,
    rust: &HashSet<EventId>,
    keywords: &[String],
) -> Differences {
    let mut d = Differences::default();
    for (ticker, article) in pairs {
        let text = |k: &str| article.get(k).and_then(Json::as_str).unwrap_or_default();
        let text = format!("{} {}", text("title"), text("content"));
        let keywords_differ = substring_hit(&text, keywords) != whole_word_hit(&text, keywords);
        d.keyword_rule_differs += u64::from(keywords_differ);
        let id = pair_id(ticker, article);
        let (p, r) = (python.contains(&id), rust.contains(&id));
        if p != r {
            if p {
                d.python_only += 1;
            } else {
                d.rust_only += 1;
            }
            d.explained_by_keywords += u64::from(keywords_differ);
        }
    }
    d
}

/// The reference's rule: a keyword is a substring of the lower-cased text.
fn substring_hit(text: &str, keywords: &[String]) -> bool {
    let text = text.to_lowercase();
    keywords.iter().any(|k| text.contains(&k.to_lowercase()))
}

/// mt5-hub's rule: a keyword's words occur consecutively among the text's words (split at every
/// character that is not a letter or digit, lower-cased).
fn whole_word_hit(text: &str, keywords: &[String]) -> bool {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let text = words(text);
    keywords.iter().any(|k| {
        let k = words(k);
        !k.is_empty() && text.windows(k.len()).any(|w| w == k.as_slice())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kw(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// "upgrade" is in "Upgrades" as a substring but not as a word.
    #[test]
    fn substring_and_whole_word_rules_disagree_on_inflections() {
        let k = kw(&["upgrade", "revenue"]);
        assert!(substring_hit("Citi Upgrades Apple", &k));
        assert!(!whole_word_hit("Citi Upgrades Apple", &k));
        assert!(whole_word_hit("record revenue, again", &k));
        assert!(substring_hit("record revenue, again", &k));
        assert!(!whole_word_hit("nothing here", &k));
    }

    /// Both envelopes give the same identity.
    #[test]
    fn both_envelopes_name_the_same_event() {
        let py = json!({"ticker": "AAPL.US", "payload": {"link": "https://x/1"}});
        let rs = json!({"ticker": "AAPL.US", "article": {"link": "https://x/1"}});
        assert_eq!(data_id(&py), data_id(&rs));
        assert_eq!(data_id(&json!({"ticker": "A"})), None);
    }

    /// Differences are counted per side, and attributed to the keyword rule when it differs.
    #[test]
    fn differences_are_counted_and_attributed() {
        let a = |link: &str, title: &str| json!({"link": link, "title": title, "content": ""});
        let pairs = vec![
            ("A".to_string(), a("1", "Bank upgrades A")),
            ("A".to_string(), a("2", "A earnings beat")),
            ("B".to_string(), a("2", "A earnings beat")),
            ("A".to_string(), a("3", "A revenue falls")),
        ];
        let id = |t: &str, l: &str| (t.to_string(), l.to_string());
        let python: HashSet<EventId> = [id("A", "1"), id("A", "2"), id("A", "3")].into();
        let rust: HashSet<EventId> = [id("A", "2"), id("B", "2")].into();
        let d = differences(&pairs, &python, &rust, &kw(&["upgrade", "earnings", "revenue"]));
        assert_eq!(
            d,
            Differences {
                python_only: 2,
                rust_only: 1,
                explained_by_keywords: 1,
                keyword_rule_differs: 1,
            }
        );
        assert_eq!(d.total(), 3);
    }
}
