//! The filter's decision: whitelist, freshness, keywords, sentiment, cheapest first.

use chrono::{DateTime, TimeDelta, Utc};
use prometheus::IntCounter;

use super::config::{FilterConfig, SentimentMode, SentimentSource};
use super::keywords::Keywords;
use super::news::RawNews;
use super::sentiment::{SentimentModel, SentimentScorer};
use crate::error::Result;

/// Why an event did not pass (the `reason` label of `mt5_news_filter_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The ticker is not on the whitelist (`ticker`).
    Ticker,
    /// The article is older than `max_age_hours` (`stale`).
    Stale,
    /// No keyword matched (`keywords`).
    Keywords,
    /// The sentiment score is not above the threshold (`sentiment`).
    Sentiment,
}

impl RejectReason {
    /// Every reason, in rule order.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::Ticker,
        RejectReason::Stale,
        RejectReason::Keywords,
        RejectReason::Sentiment,
    ];

    /// Its position in [`RejectReason::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            RejectReason::Ticker => 0,
            RejectReason::Stale => 1,
            RejectReason::Keywords => 2,
            RejectReason::Sentiment => 3,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Ticker => "ticker",
            RejectReason::Stale => "stale",
            RejectReason::Keywords => "keywords",
            RejectReason::Sentiment => "sentiment",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What matched for a passing event (`matched` in the filtered event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Matched {
    /// The event's ticker.
    pub ticker: String,
    /// The configured keywords found, as configured; empty when there is no keyword rule.
    pub keywords: Vec<String>,
}

/// A score and the model that produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Sentiment {
    /// -1.0 (negative) ..= 1.0 (positive).
    pub score: f64,
    /// Where it came from.
    pub model: SentimentModel,
}

/// The filter's verdict on one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward to the filtered stream.
    Pass {
        /// The sentiment score that passed the threshold.
        score: f64,
        /// The model that produced it.
        model: SentimentModel,
        /// What matched.
        matched: Matched,
    },
    /// Acknowledge and drop.
    Reject {
        /// The first rule that failed.
        reason: RejectReason,
    },
}

impl Decision {
    /// Whether the event passes.
    pub fn passed(&self) -> bool {
        matches!(self, Decision::Pass { .. })
    }
}

/// A validated [`FilterConfig`], ready to decide.
#[derive(Debug)]
pub struct FilterRules {
    cfg: FilterConfig,
    /// Upper-cased whitelist entries.
    tickers: Vec<Ticker>,
    keywords: Keywords,
    max_age: TimeDelta,
    scorer: SentimentScorer,
}

impl FilterRules {
    /// Validates `cfg` and prepares the rules.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) as [`FilterConfig::validate`].
    pub fn new(cfg: FilterConfig) -> Result<Self> {
        cfg.validate()?;
        let keywords = Keywords::parse(&cfg.keywords)?;
        let tickers = cfg.tickers.iter().map(|t| Ticker::new(t)).collect();
        let max_age = i64::try_from(cfg.max_age_hours)
            .ok()
            .and_then(TimeDelta::try_hours)
            .unwrap_or(TimeDelta::MAX);
        let scorer = SentimentScorer::new(cfg.sentiment_cache_size, cfg.sentiment_content_chars);
        Ok(FilterRules {
            cfg,
            tickers,
            keywords,
            max_age,
            scorer,
        })
    }

    /// Counts the VADER scorer's work into `scored` and `cache_hits`
    /// ([`SentimentScorer::with_counters`]).
    #[must_use]
    pub fn with_scorer_counters(mut self, scored: IntCounter, cache_hits: IntCounter) -> Self {
        self.scorer = self.scorer.with_counters(scored, cache_hits);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &FilterConfig {
        &self.cfg
    }

    /// The VADER scorer (and its cache).
    pub fn scorer(&self) -> &SentimentScorer {
        &self.scorer
    }

    /// Decides on one event as of `now`. The rules run cheapest first and the first failure is
    /// the reason: ticker whitelist, freshness, keywords, sentiment (the only one that may run
    /// VADER).
    pub fn decide(&self, news: &RawNews<'_>, now: DateTime<Utc>) -> Decision {
        if !self.ticker_allowed(&news.ticker) {
            return Decision::Reject {
                reason: RejectReason::Ticker,
            };
        }
        if now.signed_duration_since(news.date) > self.max_age {
            return Decision::Reject {
                reason: RejectReason::Stale,
            };
        }
        let texts = [&*news.title, &*news.content];
        // EODHD's polarity costs nothing to check, unlike a keyword scan; when it fails the
        // threshold, one keyword is enough to tell which rule failed first.
        let eodhd = self.eodhd_sentiment(news);
        if eodhd.is_some_and(|s| !self.strong(s.score)) {
            let reason = if self.keywords.is_empty() || self.keywords.any(&texts) {
                RejectReason::Sentiment
            } else {
                RejectReason::Keywords
            };
            return Decision::Reject { reason };
        }
        let found = self.keywords.find(&texts);
        if found.is_empty() && !self.keywords.is_empty() {
            return Decision::Reject {
                reason: RejectReason::Keywords,
            };
        }
        let Sentiment { score, model } = eodhd.unwrap_or_else(|| self.sentiment(news));
        if !self.strong(score) {
            return Decision::Reject {
                reason: RejectReason::Sentiment,
            };
        }
        Decision::Pass {
            score,
            model,
            matched: Matched {
                ticker: news.ticker.to_string(),
                keywords: self.keywords.originals(&found),
            },
        }
    }

    /// The score the sentiment rule uses for `news`, from the configured source.
    pub fn sentiment(&self, news: &RawNews<'_>) -> Sentiment {
        if let Some(s) = self.eodhd_sentiment(news) {
            return s;
        }
        let model = match self.cfg.sentiment_source {
            SentimentSource::Eodhd => SentimentModel::VaderFallback,
            SentimentSource::Vader => SentimentModel::Vader,
        };
        Sentiment {
            score: self.scorer.vader(&news.title, &news.content),
            model,
        }
    }

    /// The article's own polarity, when that is the source and it has a usable one.
    fn eodhd_sentiment(&self, news: &RawNews<'_>) -> Option<Sentiment> {
        match (self.cfg.sentiment_source, news.polarity) {
            (SentimentSource::Eodhd, Some(p)) if p.is_finite() => Some(Sentiment {
                score: p,
                model: SentimentModel::Eodhd,
            }),
            _ => None,
        }
    }

    /// Whether `score` passes the threshold.
    fn strong(&self, score: f64) -> bool {
        match self.cfg.sentiment_mode {
            SentimentMode::Positive => score > self.cfg.min_sentiment,
            SentimentMode::Abs => score.abs() > self.cfg.min_sentiment,
        }
    }

    /// Whether `ticker` passes the whitelist: exact (case-insensitive), or an entry without an
    /// exchange suffix matching the symbol part.
    fn ticker_allowed(&self, ticker: &str) -> bool {
        self.tickers.is_empty() || Ticker::any_matches(&self.tickers, ticker)
    }
}

/// A whitelist entry.
#[derive(Debug)]
struct Ticker {
    /// Trimmed and upper-cased (`str::to_uppercase`).
    upper: String,
    /// Whether it has an exchange suffix (`AAPL.US`); without one (`AAPL`) it matches the
    /// symbol on any exchange.
    has_exchange: bool,
}

impl Ticker {
    fn new(entry: &str) -> Self {
        let upper = entry.trim().to_uppercase();
        let has_exchange = upper.contains('.');
        Ticker { upper, has_exchange }
    }

    /// Whether the event's `ticker` matches one of `entries`: compared upper-cased and trimmed,
    /// all of it or, for an entry without an exchange, its symbol (before the first `.`).
    fn any_matches(entries: &[Ticker], ticker: &str) -> bool {
        let ticker = ticker.trim();
        if ticker.is_ascii() {
            // An ASCII ticker upper-cases to ASCII and the entries are upper case, so comparing
            // ignoring ASCII case is comparing with the upper-cased ticker, without building it.
            entries
                .iter()
                .any(|t| t.matches(ticker, |entry, s| entry.eq_ignore_ascii_case(s)))
        } else {
            // Rare, and upper-casing may change lengths: build the upper-cased ticker.
            let ticker = ticker.to_uppercase();
            entries.iter().any(|t| t.matches(&ticker, |entry, s| entry == s))
        }
    }

    /// Whether `ticker` (upper case, or compared by `eq` as if it were) is this entry, or this
    /// entry has no exchange and is the ticker's symbol.
    fn matches(&self, ticker: &str, eq: impl Fn(&str, &str) -> bool) -> bool {
        let symbol = ticker.split_once('.').map_or(ticker, |(s, _)| s);
        eq(&self.upper, ticker) || (!self.has_exchange && eq(&self.upper, symbol))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 3, 12, 0, 0).unwrap()
    }

    const GOOD: &str = "Acme beats estimates and raises guidance, a great quarter";
    const BAD: &str = "Acme shares crash after fraud charges and terrible losses";
    const FLAT: &str = "Acme to hold its annual meeting on Tuesday";

    fn news<'a>(ticker: &'a str, title: &'a str) -> RawNews<'a> {
        RawNews::new(ticker, now() - TimeDelta::hours(1), title, "")
    }

    /// The defaults with the keyword rule off and `positive` mode, so each test below turns on
    /// exactly the rule it is about.
    fn base() -> FilterConfig {
        let none: [&str; 0] = [];
        FilterConfig::default()
            .with_keywords(none)
            .with_sentiment_mode(SentimentMode::Positive)
    }

    fn rules(cfg: FilterConfig) -> FilterRules {
        FilterRules::new(cfg).unwrap()
    }

    fn reason(d: Decision) -> Option<RejectReason> {
        match d {
            Decision::Reject { reason } => Some(reason),
            Decision::Pass { .. } => None,
        }
    }

    /// The reason an event was rejected prints as its metric label.
    #[test]
    fn a_reject_reason_displays_as_its_label() {
        let shown: Vec<String> = RejectReason::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["ticker", "stale", "keywords", "sentiment"]);
    }

    #[test]
    fn a_reject_reason_indexes_its_place_in_all() {
        for (i, r) in RejectReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }

    mod whitelist {
        use proptest::prelude::*;

        use super::*;

        #[test]
        fn empty_whitelist_passes_every_ticker() {
            let r = rules(base());
            assert!(r.decide(&news("ANY.XX", GOOD), now()).passed());
        }

        #[test]
        fn only_listed_tickers_pass() {
            let r = rules(base().with_tickers(["AAPL.US", "msft.us"]));
            assert!(r.decide(&news("AAPL.US", GOOD), now()).passed());
            assert!(r.decide(&news("MSFT.US", GOOD), now()).passed(), "case-insensitive");
            assert_eq!(
                reason(r.decide(&news("TSLA.US", GOOD), now())),
                Some(RejectReason::Ticker)
            );
            assert_eq!(
                reason(r.decide(&news("AAPL.LSE", GOOD), now())),
                Some(RejectReason::Ticker)
            );
        }

        #[test]
        fn an_entry_without_exchange_matches_any_exchange() {
            let r = rules(base().with_tickers(["AAPL"]));
            assert!(r.decide(&news("AAPL.US", GOOD), now()).passed());
            assert!(r.decide(&news("AAPL", GOOD), now()).passed());
            assert_eq!(
                reason(r.decide(&news("AAPLX.US", GOOD), now())),
                Some(RejectReason::Ticker)
            );
        }

        /// Entries and tickers are compared upper-cased as `str::to_uppercase` does, also when
        /// that changes their length.
        #[test]
        fn non_ascii_tickers_compare_upper_cased() {
            let r = rules(base().with_tickers(["straße.de", "ß"]));
            for t in ["STRASSE.DE", "strasse.de", "Straße.DE", "ss.us", "ß.L", "SS"] {
                assert!(r.decide(&news(t, GOOD), now()).passed(), "{t}");
            }
            assert_eq!(
                reason(r.decide(&news("strase.de", GOOD), now())),
                Some(RejectReason::Ticker)
            );
        }

        /// The old whitelist check, which upper-cased the ticker into a new `String`.
        fn old_allowed(entries: &[String], ticker: &str) -> bool {
            let entries: Vec<String> = entries.iter().map(|t| t.trim().to_uppercase()).collect();
            let ticker = ticker.trim().to_uppercase();
            let symbol = ticker.split_once('.').map_or(ticker.as_str(), |(s, _)| s);
            entries
                .iter()
                .any(|t| *t == ticker || (!t.contains('.') && t == symbol))
        }

        /// Characters whose upper case is longer (ß, ﬀ), is ASCII (ı, ſ), or keeps a mark (İ).
        fn ticker_text() -> impl Strategy<Value = String> {
            const CHARS: &[char] = &[
                'a', 'A', 'b', 's', 'S', 'I', 'i', '.', ' ', 'ß', 'ı', 'İ', 'ſ', 'ﬀ', 'F',
            ];
            prop::collection::vec(prop::sample::select(CHARS), 0..6).prop_map(|cs| cs.into_iter().collect())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            /// The allocation-free check decides as the old one did.
            #[test]
            fn whitelist_matches_like_the_old_check(
                entries in prop::collection::vec(ticker_text(), 1..4),
                ticker in ticker_text(),
            ) {
                let tickers: Vec<Ticker> = entries.iter().map(|e| Ticker::new(e)).collect();
                prop_assert_eq!(Ticker::any_matches(&tickers, &ticker), old_allowed(&entries, &ticker));
            }
        }

        #[test]
        fn the_whitelist_runs_before_everything_else() {
            let r = rules(base().with_tickers(["AAPL.US"]).with_keywords(["nothing"]));
            let mut n = news("TSLA.US", FLAT);
            n.date = now() - TimeDelta::days(30);
            assert_eq!(reason(r.decide(&n, now())), Some(RejectReason::Ticker));
        }
    }

    mod freshness {
        use super::*;

        #[test]
        fn articles_within_max_age_pass_and_older_ones_are_stale() {
            let r = rules(base());
            let mut n = news("A.US", GOOD);
            n.date = now() - TimeDelta::hours(24);
            assert!(r.decide(&n, now()).passed(), "exactly 24 h is still fresh");
            n.date = now() - TimeDelta::hours(24) - TimeDelta::seconds(1);
            assert_eq!(reason(r.decide(&n, now())), Some(RejectReason::Stale));
        }

        #[test]
        fn the_clock_decides_not_the_wall_time() {
            let r = rules(base().with_max_age_hours(2));
            let n = RawNews::new("A.US", now(), GOOD, "");
            assert!(r.decide(&n, now() + TimeDelta::hours(2)).passed());
            assert_eq!(
                reason(r.decide(&n, now() + TimeDelta::hours(3))),
                Some(RejectReason::Stale)
            );
            // An article "from the future" (clock skew) is fresh.
            assert!(r.decide(&n, now() - TimeDelta::hours(5)).passed());
        }

        #[test]
        fn freshness_runs_before_keywords_and_sentiment() {
            let r = rules(base().with_keywords(["absent"]));
            let mut n = news("A.US", FLAT);
            n.date = now() - TimeDelta::days(3);
            assert_eq!(reason(r.decide(&n, now())), Some(RejectReason::Stale));
        }

        #[test]
        fn a_huge_max_age_does_not_overflow() {
            let r = rules(base().with_max_age_hours(u64::MAX));
            let mut n = news("A.US", GOOD);
            n.date = DateTime::<Utc>::MIN_UTC;
            assert!(r.decide(&n, now()).passed());
        }
    }

    mod keywords_rule {
        use super::*;

        #[test]
        fn no_keywords_means_no_keyword_rule() {
            let r = rules(base());
            match r.decide(&news("A.US", GOOD), now()) {
                Decision::Pass { matched, .. } => assert!(matched.keywords.is_empty()),
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn any_keyword_in_title_or_content_passes_and_is_reported() {
            let r = rules(base().with_keywords(["guidance", "Share Buyback", "merger"]));
            let mut n = news("A.US", GOOD);
            n.content = "The board also approved a share buyback.".into();
            match r.decide(&n, now()) {
                Decision::Pass { matched, .. } => {
                    assert_eq!(
                        matched.keywords,
                        vec!["guidance".to_string(), "Share Buyback".to_string()]
                    );
                    assert_eq!(matched.ticker, "A.US");
                }
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn keywords_match_case_insensitively() {
            let r = rules(base().with_keywords(["GUIDANCE"]));
            assert!(r.decide(&news("A.US", GOOD), now()).passed());
        }

        #[test]
        fn keywords_match_whole_words_only() {
            let r = rules(base().with_keywords(["guid", "quarte", "beat"]));
            assert_eq!(
                reason(r.decide(&news("A.US", GOOD), now())),
                Some(RejectReason::Keywords)
            );
            let r = rules(base().with_keywords(["beats"]));
            assert!(r.decide(&news("A.US", GOOD), now()).passed());
        }

        /// With EODHD's polarity the threshold is checked before the keyword scan, but a
        /// missing keyword is still the reason when both fail.
        #[test]
        fn a_missing_keyword_is_the_reason_also_with_a_failing_polarity() {
            let r = rules(
                base()
                    .with_keywords(["guidance", "merger"])
                    .with_sentiment_source(SentimentSource::Eodhd),
            );
            let weak = |title: &'static str| news("A.US", title).with_polarity(Some(0.1));
            assert_eq!(reason(r.decide(&weak(FLAT), now())), Some(RejectReason::Keywords));
            assert_eq!(reason(r.decide(&weak(GOOD), now())), Some(RejectReason::Sentiment));
            let strong = news("A.US", FLAT).with_polarity(Some(0.9));
            assert_eq!(reason(r.decide(&strong, now())), Some(RejectReason::Keywords));
            assert_eq!(r.scorer().cached(), 0, "VADER did not run");
        }

        #[test]
        fn keywords_run_before_sentiment() {
            let r = rules(base().with_keywords(["absent"]));
            assert_eq!(
                reason(r.decide(&news("A.US", FLAT), now())),
                Some(RejectReason::Keywords)
            );
            assert_eq!(r.scorer().cached(), 0, "VADER did not run");
        }
    }

    mod threshold {
        use super::*;

        #[test]
        fn positive_mode_passes_only_scores_above_the_threshold() {
            let r = rules(base());
            assert!(r.decide(&news("A.US", GOOD), now()).passed());
            assert_eq!(
                reason(r.decide(&news("A.US", BAD), now())),
                Some(RejectReason::Sentiment)
            );
            assert_eq!(
                reason(r.decide(&news("A.US", FLAT), now())),
                Some(RejectReason::Sentiment)
            );
        }

        #[test]
        fn abs_mode_also_passes_strongly_negative_news() {
            let r = rules(base().with_sentiment_mode(SentimentMode::Abs));
            assert!(r.decide(&news("A.US", GOOD), now()).passed());
            match r.decide(&news("A.US", BAD), now()) {
                Decision::Pass { score, .. } => assert!(score < -0.5, "{score}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                reason(r.decide(&news("A.US", FLAT), now())),
                Some(RejectReason::Sentiment)
            );
        }

        #[test]
        fn the_threshold_is_strict() {
            let n = news("A.US", FLAT).with_polarity(Some(0.5));
            let eodhd = base().with_sentiment_source(SentimentSource::Eodhd);
            assert_eq!(
                reason(rules(eodhd.clone()).decide(&n, now())),
                Some(RejectReason::Sentiment)
            );
            assert!(rules(eodhd.clone().with_min_sentiment(0.49)).decide(&n, now()).passed());
            let n = n.with_polarity(Some(-0.5));
            let abs = eodhd.with_sentiment_mode(SentimentMode::Abs);
            assert_eq!(
                reason(rules(abs.clone()).decide(&n, now())),
                Some(RejectReason::Sentiment)
            );
            assert!(rules(abs.with_min_sentiment(0.49)).decide(&n, now()).passed());
        }
    }

    mod source {
        use super::*;

        #[test]
        fn vader_source_ignores_the_eodhd_polarity() {
            let r = rules(base());
            let n = news("A.US", FLAT).with_polarity(Some(0.99));
            assert_eq!(reason(r.decide(&n, now())), Some(RejectReason::Sentiment));
            assert_eq!(r.sentiment(&n).model, SentimentModel::Vader);
        }

        #[test]
        fn eodhd_source_uses_the_article_polarity() {
            let r = rules(base().with_sentiment_source(SentimentSource::Eodhd));
            let n = news("A.US", FLAT).with_polarity(Some(0.9));
            assert_eq!(
                r.decide(&n, now()),
                Decision::Pass {
                    score: 0.9,
                    model: SentimentModel::Eodhd,
                    matched: Matched {
                        ticker: "A.US".into(),
                        keywords: vec![]
                    },
                }
            );
            let n = news("A.US", GOOD).with_polarity(Some(0.1));
            assert_eq!(reason(r.decide(&n, now())), Some(RejectReason::Sentiment));
        }

        /// A polarity set through the library that is not a finite number (the JSON reader
        /// already drops those) is no polarity: VADER scores the text.
        #[test]
        fn a_polarity_that_is_not_finite_falls_back_to_vader() {
            let r = rules(base().with_sentiment_source(SentimentSource::Eodhd));
            for p in [f64::NAN, f64::INFINITY] {
                match r.decide(&news("A.US", GOOD).with_polarity(Some(p)), now()) {
                    Decision::Pass { score, model, .. } => {
                        assert_eq!(model, SentimentModel::VaderFallback, "{p}");
                        assert_eq!(score, r.scorer().vader(GOOD, ""), "{p}");
                    }
                    other => panic!("{p}: {other:?}"),
                }
            }
        }

        #[test]
        fn eodhd_source_falls_back_to_vader_and_says_so() {
            let r = rules(base().with_sentiment_source(SentimentSource::Eodhd));
            match r.decide(&news("A.US", GOOD), now()) {
                Decision::Pass { score, model, .. } => {
                    assert_eq!(model, SentimentModel::VaderFallback);
                    assert_eq!(score, r.scorer().vader(GOOD, ""));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
