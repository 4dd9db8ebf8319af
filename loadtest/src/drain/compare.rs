//! Which events passed on each side, and why the sides disagree.
//!
//! An event is identified by its ticker and its article's link (the generator numbers its
//! links, and an article yields one event per ticker): both sides drain the same pairs, in
//! different envelopes. The reference matches keywords as substrings of the lower-cased title
//! and content; mt5-hub matches whole words (`news/src/filter/keywords.rs`). Both rules are
//! computed here for every differing event, so a difference they explain is counted as such;
//! any other difference is listed with what each side decided and why it may have, and fails the
//! run.

use std::collections::HashMap;

use mt5_bus::query::RangeReader;
use mt5_bus::Connection;
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

/// The score a filtered event passed with: the reference's `sentiment_score`, mt5-hub's
/// `sentiment.score`.
fn data_score(data: &Json) -> Option<f64> {
    data.get("sentiment_score")
        .or_else(|| data.get("sentiment")?.get("score"))?
        .as_f64()
}

/// The identity and passing score of every event in `stream`, in stream order.
///
/// # Errors
/// [`LoadError::Run`] when a page cannot be read, or for an entry whose `data` has no ticker and
/// link.
pub(crate) async fn passed_ids(conn: &mut Connection, stream: &str) -> Result<Vec<(EventId, Option<f64>)>> {
    let mut out = Vec::new();
    let mut pages = RangeReader::new(stream, 1000);
    loop {
        let batch = pages
            .next_page(conn)
            .await
            .map_err(|e| LoadError::Run(format!("reading {stream}: {e}")))?;
        let Some(batch) = batch else {
            return Ok(out);
        };
        for e in &batch {
            let data = e.field("data").and_then(|d| serde_json::from_str::<Json>(d).ok());
            let id = data
                .as_ref()
                .and_then(data_id)
                .ok_or_else(|| LoadError::Run(format!("entry {} of {stream} has no ticker and article link", e.id)))?;
            out.push((id, data.as_ref().and_then(data_score)));
        }
    }
}

/// What one side passed: each event with the score it passed with (when the event says).
pub(crate) type Passed = HashMap<EventId, Option<f64>>;

/// How the passed sets of the two sides differ on one round's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Differences {
    /// Events passed by the reference only.
    pub python_only: u64,
    /// Events passed by mt5-hub only.
    pub rust_only: u64,
    /// Of the differing events, those the keyword semantics explain: passed by the reference
    /// only and a keyword is a substring of the text but not a whole word of it, or passed by
    /// mt5-hub only and the other way round.
    pub explained_by_keywords: u64,
    /// Events (of all) on which the two keyword rules disagree, whatever the other rules say.
    pub keyword_rule_differs: u64,
}

impl Differences {
    /// Events whose pass decision differs.
    pub fn total(&self) -> u64 {
        self.python_only + self.rust_only
    }

    /// Differing events the keyword semantics do not explain; the run fails when there is one.
    pub fn unexplained(&self) -> u64 {
        self.total() - self.explained_by_keywords
    }
}

/// A differing event the keyword semantics do not explain, with what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unexplained {
    /// Ticker and article link.
    pub(crate) id: EventId,
    /// The article's title.
    pub(crate) title: String,
    /// The article's date.
    pub(crate) date: String,
    /// The reference's decision: `Some(score it passed with)` when it passed.
    pub(crate) python: Option<Option<f64>>,
    /// mt5-hub's decision, the same way.
    pub(crate) rust: Option<Option<f64>>,
    /// Whether each keyword rule hits: (substring, whole word).
    pub(crate) keywords: (bool, bool),
    /// Other articles of the round with the same title and a different text: their links.
    pub(crate) same_title: Vec<String>,
}

impl Unexplained {
    /// One line for the listing; `score` gives the VADER score of an article's own text and
    /// `verdict` the rules' decision on the event without a title cache (`None` to leave it out).
    pub(crate) fn line(&self, own: Option<(f64, &str)>) -> String {
        let side = |d: &Option<Option<f64>>| match d {
            Some(Some(s)) => format!("passed (score {s})"),
            Some(None) => "passed".to_string(),
            None => "rejected".to_string(),
        };
        let mut line = format!(
            "{} {} {:?} (date {}): python {}, rust {}; keyword substring {} / whole word {}",
            self.id.0,
            self.id.1,
            self.title,
            self.date,
            side(&self.python),
            side(&self.rust),
            self.keywords.0,
            self.keywords.1
        );
        if let Some((score, verdict)) = own {
            line.push_str(&format!("; own text scores {score}, uncached rules: {verdict}"));
        }
        if !self.same_title.is_empty() {
            line.push_str(&format!("; same title, other text: {}", self.same_title.join(", ")));
        }
        line
    }
}

/// Compares the passed sets over the round's `pairs`, with the reference's `keywords`; returns
/// the counts and the differing events the keyword semantics do not explain.
pub(crate) fn differences(
    pairs: &[(String, Json)],
    python: &Passed,
    rust: &Passed,
    keywords: &[String],
) -> (Differences, Vec<Unexplained>) {
    let mut d = Differences::default();
    let mut unexplained = Vec::new();
    let field = |a: &Json, k: &str| a.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
    for (ticker, article) in pairs {
        let text = format!("{} {}", field(article, "title"), field(article, "content"));
        let (substring, whole) = (substring_hit(&text, keywords), whole_word_hit(&text, keywords));
        d.keyword_rule_differs += u64::from(substring != whole);
        let id = pair_id(ticker, article);
        let (p, r) = (python.get(&id), rust.get(&id));
        if p.is_some() == r.is_some() {
            continue;
        }
        // The keyword rule explains it only in its own direction: the side whose rule hits is
        // the side that passed.
        let explained = if p.is_some() {
            d.python_only += 1;
            substring && !whole
        } else {
            d.rust_only += 1;
            whole && !substring
        };
        if explained {
            d.explained_by_keywords += 1;
            continue;
        }
        let title = field(article, "title");
        let content = field(article, "content");
        let mut same_title: Vec<String> = pairs
            .iter()
            .filter(|(_, a)| field(a, "title") == title && field(a, "content") != content)
            .map(|(_, a)| field(a, "link"))
            .collect();
        same_title.dedup();
        unexplained.push(Unexplained {
            id,
            title,
            date: field(article, "date"),
            python: p.copied(),
            rust: r.copied(),
            keywords: (substring, whole),
            same_title,
        });
    }
    (d, unexplained)
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

    /// Both envelopes give the same identity, and their scores.
    #[test]
    fn both_envelopes_name_the_same_event() {
        let py = json!({"ticker": "AAPL.US", "payload": {"link": "https://x/1"}, "sentiment_score": 0.61});
        let rs = json!({"ticker": "AAPL.US", "article": {"link": "https://x/1"}, "sentiment": {"score": 0.61, "model": "vader"}});
        assert_eq!(data_id(&py), data_id(&rs));
        assert_eq!(data_id(&json!({"ticker": "A"})), None);
        assert_eq!((data_score(&py), data_score(&rs)), (Some(0.61), Some(0.61)));
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
        let id = |t: &str, l: &str| ((t.to_string(), l.to_string()), None);
        let python: Passed = [id("A", "1"), id("A", "2"), id("A", "3")].into();
        let rust: Passed = [id("A", "2"), id("B", "2")].into();
        let (d, unexplained) = differences(&pairs, &python, &rust, &kw(&["upgrade", "earnings", "revenue"]));
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
        assert_eq!(d.unexplained(), 2);
        let links: Vec<&str> = unexplained.iter().map(|u| u.id.1.as_str()).collect();
        assert_eq!(links, ["2", "3"], "{unexplained:?}");
    }

    /// A keyword difference explains a difference only in its own direction: the reference
    /// (substring) passing an "Upgrades" event mt5-hub rejected, never mt5-hub passing it alone.
    #[test]
    fn keyword_semantics_explain_only_their_own_direction() {
        let article = json!({"link": "1", "title": "Citi upgrades A", "content": ""});
        let pairs = vec![("A".to_string(), article)];
        let k = kw(&["upgrade"]);
        let passed: Passed = [(("A".to_string(), "1".to_string()), Some(0.7))].into();
        let none = Passed::new();
        let (d, u) = differences(&pairs, &passed, &none, &k);
        assert_eq!((d.explained_by_keywords, d.unexplained()), (1, 0));
        assert!(u.is_empty());
        let (d, u) = differences(&pairs, &none, &passed, &k);
        assert_eq!((d.rust_only, d.explained_by_keywords, d.unexplained()), (1, 0, 1));
        assert_eq!(u[0].rust, Some(Some(0.7)));
        assert_eq!(u[0].python, None);
        assert!(u[0]
            .line(Some((0.7, "pass")))
            .contains("python rejected, rust passed (score 0.7)"));
    }

    /// The listing names the other articles that share the title with another text: the title
    /// cache may have answered the event with their score.
    #[test]
    fn unexplained_differences_name_same_title_articles() {
        let a = |link: &str, content: &str| json!({"link": link, "title": "Same", "content": content, "date": "d"});
        let pairs = vec![
            ("A".to_string(), a("1", "good")),
            ("B".to_string(), a("1", "good")),
            ("A".to_string(), a("2", "bad")),
        ];
        let python: Passed = [(("A".to_string(), "1".to_string()), Some(0.6))].into();
        let (_, u) = differences(&pairs, &python, &Passed::new(), &[]);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].same_title, ["2"]);
        assert!(
            u[0].line(None).contains("same title, other text: 2"),
            "{}",
            u[0].line(None)
        );
    }
}
