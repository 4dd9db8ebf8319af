//! Sentiment scores: VADER's compound score computed here (cached by title), or EODHD's own
//! polarity.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::IntCounter;

use crate::vader;

/// Which model produced a score (`sentiment.model` in the filtered event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SentimentModel {
    /// VADER's compound score, computed by the filter (`vader`).
    Vader,
    /// The article's own EODHD polarity (`eodhd`).
    Eodhd,
    /// VADER, because `sentiment_source = "eodhd"` but the article had no usable polarity
    /// (`vader_fallback`).
    VaderFallback,
}

impl SentimentModel {
    /// The `sentiment.model` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentModel::Vader => "vader",
            SentimentModel::Eodhd => "eodhd",
            SentimentModel::VaderFallback => "vader_fallback",
        }
    }
}

impl std::fmt::Display for SentimentModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// VADER scoring ([`crate::vader`], vaderSentiment 3.3.2's exact scores) with a bounded cache
/// keyed by title.
///
/// The same article arrives once per ticker it mentions, so the cache saves re-scoring the
/// duplicates. Cheap to share behind an `Arc`; the cache is internally synchronised.
///
/// It counts what [`SentimentScorer::vader`] did: texts scored (cache misses that ran VADER) and
/// cache hits, into counters that are unregistered unless [`SentimentScorer::with_counters`]
/// gave it the filter's (`mt5_news_sentiment_scored_total`, `mt5_news_sentiment_cache_hits_total`).
pub struct SentimentScorer {
    cache: TitleCache,
    content_chars: usize,
    scored: IntCounter,
    cache_hits: IntCounter,
}

impl std::fmt::Debug for SentimentScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentimentScorer")
            .field("cached", &self.cache.len())
            .field("content_chars", &self.content_chars)
            .field("scored", &self.scored.get())
            .field("cache_hits", &self.cache_hits.get())
            .finish_non_exhaustive()
    }
}

impl SentimentScorer {
    /// A scorer caching up to `cache_size` titles and scoring the title with the first
    /// `content_chars` characters of the content.
    pub fn new(cache_size: u64, content_chars: usize) -> Self {
        let counter = |name: &str| IntCounter::new(name, "unregistered").expect("static metric definition is valid");
        SentimentScorer {
            cache: TitleCache::new(usize::try_from(cache_size).unwrap_or(usize::MAX)),
            content_chars,
            scored: counter("scored"),
            cache_hits: counter("cache_hits"),
        }
    }

    /// Counts into `scored` (texts VADER scored) and `cache_hits` (scores answered from the
    /// cache) instead of the scorer's own unregistered counters.
    #[must_use]
    pub fn with_counters(mut self, scored: IntCounter, cache_hits: IntCounter) -> Self {
        self.scored = scored;
        self.cache_hits = cache_hits;
        self
    }

    /// VADER's compound score (-1.0..=1.0) of [`SentimentScorer::text`], cached by `title`.
    pub fn vader(&self, title: &str, content: &str) -> f64 {
        if let Some(score) = self.cache.get(title) {
            self.cache_hits.inc();
            return score;
        }
        // The text is built in a buffer kept per thread rather than a `String` per score.
        let score = TEXT.with_borrow_mut(|text| {
            text.clear();
            self.write_text(title, content, text);
            let score = self.score_text(text);
            if text.capacity() > TEXT_KEPT {
                *text = String::new();
            }
            score
        });
        self.scored.inc();
        self.cache.insert(title, score);
        score
    }

    /// Texts VADER scored through [`SentimentScorer::vader`] (cache misses).
    pub fn scored(&self) -> u64 {
        self.scored.get()
    }

    /// Scores [`SentimentScorer::vader`] answered from the cache.
    pub fn cache_hits(&self) -> u64 {
        self.cache_hits.get()
    }

    /// VADER's compound score of `text`, uncached: [`vader::compound`], the value Python's
    /// `polarity_scores(text)["compound"]` gives (rounded to four decimals, as Python rounds).
    pub fn score_text(&self, text: &str) -> f64 {
        vader::compound(text)
    }

    /// The text VADER scores: `title + " " + content`, the content cut to its first
    /// `content_chars` characters (back to a word boundary when that cuts a word). With
    /// `content_chars` at least the content's length this is exactly the text the Python
    /// reference scores (`f"{title} {content}"`); nothing is trimmed, which changes no score.
    pub fn text(&self, title: &str, content: &str) -> String {
        let mut text = String::new();
        self.write_text(title, content, &mut text);
        text
    }

    /// Appends [`SentimentScorer::text`] to `out`.
    fn write_text(&self, title: &str, content: &str, out: &mut String) {
        let lede = lede(content, self.content_chars);
        out.reserve(title.len() + 1 + lede.len());
        out.push_str(title);
        out.push(' ');
        out.push_str(lede);
    }

    /// Titles currently cached.
    pub fn cached(&self) -> u64 {
        u64::try_from(self.cache.len()).unwrap_or(u64::MAX)
    }
}

thread_local! {
    /// The text [`SentimentScorer::vader`] scores, reused from call to call.
    static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The largest text buffer a thread keeps between scores (a news text is a few KB).
const TEXT_KEPT: usize = 64 * 1024;

/// Scores by title, at most `capacity` of them, the oldest title evicted first: the Python
/// reference's cache (a `dict` whose first key is deleted when it is full), so both sides score
/// the same texts. One lock around a map and the titles' insertion order; a title is stored
/// once, shared by both.
///
/// The map hashes with foldhash's seeded quality hasher: a title is hashed on every event that
/// reaches VADER, and SipHash was the cache's largest cost in a profile; the per-process random
/// seed still keeps titles from choosing their buckets.
struct TitleCache {
    capacity: usize,
    inner: Mutex<Fifo>,
}

#[derive(Default)]
struct Fifo {
    scores: HashMap<Arc<str>, f64, foldhash::quality::RandomState>,
    /// The cached titles, oldest first.
    order: VecDeque<Arc<str>>,
}

impl TitleCache {
    fn new(capacity: usize) -> Self {
        TitleCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// The map is whole after every step of the methods below, so a panic elsewhere while the
    /// lock was held leaves nothing to repair.
    fn lock(&self) -> MutexGuard<'_, Fifo> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, title: &str) -> Option<f64> {
        self.lock().scores.get(title).copied()
    }

    /// Caches `title`'s score, first evicting the oldest title when full. A title already
    /// cached (two tasks scored it at once) keeps its place, as a `dict` assignment does.
    fn insert(&self, title: &str, score: f64) {
        if self.capacity == 0 {
            return;
        }
        let mut fifo = self.lock();
        if let Some(cached) = fifo.scores.get_mut(title) {
            *cached = score;
            return;
        }
        if fifo.scores.len() >= self.capacity {
            if let Some(oldest) = fifo.order.pop_front() {
                fifo.scores.remove(&oldest);
            }
        }
        let title: Arc<str> = Arc::from(title);
        fifo.order.push_back(Arc::clone(&title));
        fifo.scores.insert(title, score);
    }

    fn len(&self) -> usize {
        self.lock().scores.len()
    }
}

/// The first `max_chars` characters of `content`, cut back to the last whitespace when that
/// cuts a word (unless the cut would drop more than half).
fn lede(content: &str, max_chars: usize) -> &str {
    // No more bytes than `max_chars` means no more characters either: nothing to count.
    if content.len() <= max_chars {
        return content;
    }
    let Some((end, _)) = content.char_indices().nth(max_chars) else {
        return content;
    };
    let head = &content[..end];
    if content[end..].starts_with(char::is_whitespace) {
        return head.trim_end();
    }
    match head.rfind(char::is_whitespace) {
        Some(i) if i >= end / 2 => head[..i].trim_end(),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model prints as its `sentiment.model` value.
    #[test]
    fn a_model_displays_as_its_value() {
        let shown: Vec<String> = [
            SentimentModel::Vader,
            SentimentModel::Eodhd,
            SentimentModel::VaderFallback,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(shown, ["vader", "eodhd", "vader_fallback"]);
    }

    #[test]
    fn text_is_the_title_a_space_and_the_lede() {
        let s = SentimentScorer::new(10, 12);
        assert_eq!(s.text("Title", "one two three four"), "Title one two");
        assert_eq!(s.text("Big win!", "one two three four"), "Big win! one two");
        assert_eq!(s.text("Title", ""), "Title ");
        assert_eq!(s.text("", "short"), " short");
        assert_eq!(SentimentScorer::new(10, 0).text("Title", "anything"), "Title ");
        // Long enough: exactly the reference's f"{title} {content}", whitespace included.
        let whole = SentimentScorer::new(10, usize::MAX);
        assert_eq!(whole.text(" Title ", "one two\n"), " Title  one two\n");
    }

    #[test]
    fn lede_respects_char_boundaries_and_words() {
        assert_eq!(lede("héllo wörld again", 11), "héllo wörld");
        assert_eq!(lede("héllo wörld again", 9), "héllo");
        assert_eq!(lede("abcdefghijkl", 5), "abcde", "a single long word is cut");
        assert_eq!(
            lede("a bcdefghij", 8),
            "a bcdefg",
            "a word is cut rather than going back to a space that would drop more than half"
        );
        assert_eq!(lede("abcd efghij", 8), "abcd", "back to a space at half");
        assert_eq!(lede("short", 100), "short");
        assert_eq!(lede("🚀🚀🚀 up", 2), "🚀🚀");
        assert_eq!(
            lede("🚀🚀", 2),
            "🚀🚀",
            "more bytes than characters allowed, but not more characters"
        );
        assert_eq!(lede("abc", 3), "abc");
        assert_eq!(lede("abcd", 3), "abc");
    }

    #[test]
    fn vader_scores_clear_cases() {
        let s = SentimentScorer::new(10, 280);
        assert!(s.score_text("Great results, strong growth, excellent quarter") > 0.5);
        assert!(s.score_text("Terrible losses, fraud charges and a collapse") < -0.5);
        assert_eq!(s.score_text(""), 0.0);
        assert_eq!(s.score_text("   "), 0.0);
        assert_eq!(
            s.score_text("VADER is smart, handsome, and funny."),
            0.8316,
            "Python's score"
        );
    }

    #[test]
    fn scores_are_cached_by_title() {
        let s = SentimentScorer::new(10, 280);
        let first = s.vader("Same title", "wonderful amazing superb");
        // Same title, different content: the cached score is returned.
        assert_eq!(s.vader("Same title", "awful horrible disaster"), first);
        assert_eq!(s.cached(), 1);
        assert_ne!(s.vader("Other title", "awful horrible disaster"), first);
    }

    /// A miss runs VADER and counts as scored; a hit counts as a hit and scores nothing.
    #[test]
    fn scorer_calls_and_cache_hits_are_counted() {
        let scored = IntCounter::new("s", "s").unwrap();
        let hits = IntCounter::new("h", "h").unwrap();
        let s = SentimentScorer::new(10, 280).with_counters(scored.clone(), hits.clone());
        s.vader("A", "good");
        s.vader("A", "bad");
        s.vader("B", "good");
        s.vader("B", "bad");
        s.vader("A", "worse");
        // Scoring a text directly is not a call through the cache.
        s.score_text("good");
        assert_eq!((s.scored(), s.cache_hits()), (2, 3));
        assert_eq!(
            (scored.get(), hits.get()),
            (2, 3),
            "the given counters are the ones counted"
        );
    }

    #[test]
    fn cache_is_bounded() {
        let s = SentimentScorer::new(5, 280);
        for i in 0..100 {
            s.vader(&format!("title {i}"), "good");
        }
        assert_eq!(s.cached(), 5);
    }

    /// As in the reference: when full, the oldest title goes, whatever was read since.
    #[test]
    fn a_full_cache_evicts_the_oldest_title() {
        let scored = IntCounter::new("s", "s").unwrap();
        let hits = IntCounter::new("h", "h").unwrap();
        let s = SentimentScorer::new(3, 280).with_counters(scored.clone(), hits.clone());
        for title in ["a", "b", "c"] {
            s.vader(title, "good");
        }
        // A hit does not refresh "a" (no LRU): "d" still evicts it, and "b", "c" stay.
        s.vader("a", "good");
        s.vader("d", "good");
        assert_eq!((scored.get(), hits.get()), (4, 1));
        for title in ["b", "c", "d"] {
            s.vader(title, "bad");
        }
        assert_eq!((scored.get(), hits.get()), (4, 4), "b, c and d are cached");
        s.vader("a", "good");
        assert_eq!((scored.get(), hits.get()), (5, 4), "a was evicted");
        assert_eq!(s.cached(), 3);
    }

    /// The per-thread text buffer is kept for the next score, unless a huge text grew it past
    /// `TEXT_KEPT`. (Each test runs on its own thread, so the buffer starts empty.)
    #[test]
    fn the_text_buffer_is_kept_unless_a_text_was_huge() {
        let s = SentimentScorer::new(10, usize::MAX);
        s.vader("A", "good news");
        assert!(TEXT.with_borrow(String::capacity) > 0);
        // A long news text (16 KB) is kept too.
        s.vader("L", &"y ".repeat(8 * 1024));
        assert!(TEXT.with_borrow(String::capacity) >= 16 * 1024);
        s.vader("B", &"x ".repeat(TEXT_KEPT));
        assert_eq!(TEXT.with_borrow(String::capacity), 0);
    }

    /// The text buffer kept per thread does not carry one text into the next score.
    #[test]
    fn each_score_is_of_its_own_text() {
        let s = SentimentScorer::new(10, 10_000);
        let long = "wonderful ".repeat(10_000);
        assert!(s.vader("A", &long) > 0.9);
        assert_eq!(s.vader("B", "awful"), s.score_text("B awful"));
        assert_eq!(s.vader("C", ""), s.score_text("C "));
    }
}
