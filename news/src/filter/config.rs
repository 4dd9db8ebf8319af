//! `[news.filter]`: the filter consumer's settings, with every default in one place.

use mt5_bus::validate::{ensure, non_empty, positive};
use mt5_bus::InvalidConfig;
use mt5_bus::{NEWS_FILTERED_STREAM, NEWS_FILTER_GROUP, NEWS_RAW_STREAM};
use serde::{Deserialize, Serialize};

use super::keywords::Keyword;

/// A suggested `keywords` list: words of market-moving corporate events (results, guidance,
/// analyst actions, deals, capital returns, regulators and courts, management changes). Matching
/// is by whole words, so inflections are listed. The default `keywords`; `keywords = []` turns
/// the rule off. `docs/news-filter.md` has what each choice does to accuracy on the labelled
/// headlines.
#[rustfmt::skip]
pub const EVENT_KEYWORDS: &[&str] = &[
    // results and guidance
    "earnings", "eps", "revenue", "revenues", "sales", "profit", "loss", "estimates", "expectations", "consensus",
    "forecast", "forecasts", "guidance", "outlook", "beats", "beat", "misses", "missed", "tops", "surprise",
    "raises", "raised", "lifts", "cuts", "lowers", "lowered", "slashes", "withdraws",
    // analysts
    "upgrade", "upgraded", "upgrades", "downgrade", "downgraded", "downgrades", "price target",
    // deals
    "acquire", "acquires", "acquisition", "to buy", "merger", "merge", "takeover", "buyout", "bid", "stake",
    "spin off", "spinoff", "contract", "agreement", "deal",
    // capital
    "dividend", "buyback", "repurchase", "stock split", "offering", "bitcoin",
    // regulators, courts, probes
    "fda", "approval", "approves", "approved", "sec", "doj", "ftc", "faa", "antitrust", "lawsuit", "sues", "sued",
    "probe", "investigation", "charges", "fine", "fines", "fined", "settlement", "recall", "recalls", "grounds",
    "wells notice",
    // corporate events
    "bankruptcy", "chapter 11", "default", "layoffs", "job cuts", "workforce", "restructuring", "ceo", "cfo",
    "resigns", "steps down", "auditor", "short seller", "trial", "trials", "s&p 500", "delisting", "halts",
];

/// How the sentiment score is compared with [`FilterConfig::min_sentiment`].
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SentimentMode {
    /// Passes when `score > min_sentiment`: only clearly positive news.
    Positive,
    /// Passes when `|score| > min_sentiment`: strongly positive or strongly negative news (a
    /// missed forecast or a probe moves a price as much as a beat). This is the default.
    #[default]
    Abs,
}

impl SentimentMode {
    /// The config value (`positive` or `abs`).
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentMode::Positive => "positive",
            SentimentMode::Abs => "abs",
        }
    }
}

/// Where the sentiment score comes from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SentimentSource {
    /// The VADER compound score of the title and the start of the content, computed here.
    /// This is the default.
    #[default]
    Vader,
    /// The article's own `sentiment.polarity` from EODHD. Articles without a usable polarity
    /// fall back to VADER, and the filtered event says so (`sentiment.model = "vader_fallback"`).
    Eodhd,
}

impl SentimentSource {
    /// The config value (`vader` or `eodhd`).
    pub fn as_str(self) -> &'static str {
        match self {
            SentimentSource::Vader => "vader",
            SentimentSource::Eodhd => "eodhd",
        }
    }
}

/// `[news.filter]`: which raw news pass to the filtered stream.
///
/// The rules run cheapest first: ticker whitelist, freshness, keywords, sentiment. An event that
/// fails one is acknowledged and counted in `mt5_news_filter_total{decision="rejected",reason}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FilterConfig {
    /// Ticker whitelist, compared case-insensitively with the event's ticker (e.g. `AAPL.US`); an
    /// entry without an exchange suffix (`AAPL`) matches that symbol on any exchange. Default `[]`:
    /// every ticker passes.
    pub tickers: Vec<String>,
    /// Keywords, matched case-insensitively as whole words in the title and content; a keyword can
    /// be several words (`"share buyback"`). An event passes when at least one matches; `[]` turns
    /// the rule off. Default [`EVENT_KEYWORDS`].
    pub keywords: Vec<String>,
    /// Sentiment threshold, a score in -1.0..=1.0 (VADER compound or EODHD polarity); an event
    /// passes when its score is strictly above it (`abs` mode: its absolute value). Default 0.5.
    pub min_sentiment: f64,
    /// `positive` (score above the threshold) or `abs` (also strongly negative news). Default
    /// `abs`.
    pub sentiment_mode: SentimentMode,
    /// `vader` (computed here) or `eodhd` (the article's own polarity). Default `vader`.
    pub sentiment_source: SentimentSource,
    /// Freshness: the article's `date` must be at most this many hours before now (dates in the
    /// future count as fresh: clock skew). Default 24.
    pub max_age_hours: u64,
    /// The stream of raw news read by the filter. Default `mt5:events:news_raw`.
    pub input_stream: String,
    /// The stream passing news are written to. Default `mt5:events:news_filtered`.
    pub output_stream: String,
    /// The filter's consumer group on `input_stream`. Default `news-filter-group`.
    pub group: String,
    /// Entries in the VADER score cache (keyed by title; the same article arrives once per
    /// ticker). Default 10000.
    pub sentiment_cache_size: u64,
    /// Characters of the content VADER scores after the title (`title + " " + content`), cut
    /// back to a word boundary; 0 scores the title alone; at least the content's length scores
    /// exactly the Python reference's text. Default 280 (the lede: longer bodies drift
    /// off-topic and push the compound score towards ±1 by sheer length).
    pub sentiment_content_chars: usize,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            tickers: Vec::new(),
            keywords: EVENT_KEYWORDS.iter().map(|k| k.to_string()).collect(),
            min_sentiment: 0.5,
            sentiment_mode: SentimentMode::Abs,
            sentiment_source: SentimentSource::Vader,
            max_age_hours: 24,
            input_stream: NEWS_RAW_STREAM.to_string(),
            output_stream: NEWS_FILTERED_STREAM.to_string(),
            group: NEWS_FILTER_GROUP.to_string(),
            sentiment_cache_size: 10_000,
            sentiment_content_chars: 280,
        }
    }
}

impl FilterConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first invalid field: an empty stream or group name, the
    /// same input and output stream, an empty ticker or keyword (or one with no letters or
    /// digits), a threshold outside -1.0..=1.0 (0.0..=1.0 in `abs` mode), a zero `max_age_hours`
    /// or `sentiment_cache_size`.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        non_empty("news.filter.input_stream", &self.input_stream)?;
        non_empty("news.filter.output_stream", &self.output_stream)?;
        non_empty("news.filter.group", &self.group)?;
        ensure(
            self.input_stream != self.output_stream,
            "news.filter.output_stream",
            "must differ from input_stream (the filter would read its own output)",
        )?;
        if let Some(t) = self.tickers.iter().find(|t| t.trim().is_empty()) {
            return Err(InvalidConfig::new("news.filter.tickers", format!("empty ticker {t:?}")));
        }
        for k in &self.keywords {
            Keyword::parse(k)?;
        }
        let range = match self.sentiment_mode {
            SentimentMode::Positive => -1.0..=1.0,
            SentimentMode::Abs => 0.0..=1.0,
        };
        // The range depends on the mode, so the reason names it.
        ensure(
            range.contains(&self.min_sentiment),
            "news.filter.min_sentiment",
            format!(
                "must be within {:?}..={:?} in {} mode, got {:?}",
                range.start(),
                range.end(),
                self.sentiment_mode.as_str(),
                self.min_sentiment
            ),
        )?;
        positive("news.filter.max_age_hours", self.max_age_hours)?;
        positive("news.filter.sentiment_cache_size", self.sentiment_cache_size)
    }

    /// Sets the ticker whitelist.
    #[must_use]
    pub fn with_tickers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tickers: I) -> Self {
        self.tickers = tickers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the keywords.
    #[must_use]
    pub fn with_keywords<I: IntoIterator<Item = S>, S: Into<String>>(mut self, keywords: I) -> Self {
        self.keywords = keywords.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the sentiment threshold.
    #[must_use]
    pub fn with_min_sentiment(mut self, min_sentiment: f64) -> Self {
        self.min_sentiment = min_sentiment;
        self
    }

    /// Sets the threshold mode.
    #[must_use]
    pub fn with_sentiment_mode(mut self, mode: SentimentMode) -> Self {
        self.sentiment_mode = mode;
        self
    }

    /// Sets the sentiment source.
    #[must_use]
    pub fn with_sentiment_source(mut self, source: SentimentSource) -> Self {
        self.sentiment_source = source;
        self
    }

    /// Sets the freshness limit in hours.
    #[must_use]
    pub fn with_max_age_hours(mut self, hours: u64) -> Self {
        self.max_age_hours = hours;
        self
    }

    /// Sets the input stream, the output stream and the group.
    #[must_use]
    pub fn with_streams(
        mut self,
        input_stream: impl Into<String>,
        output_stream: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        self.input_stream = input_stream.into();
        self.output_stream = output_stream.into();
        self.group = group.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let c = FilterConfig::default();
        assert!(c.tickers.is_empty());
        assert_eq!(c.keywords.len(), EVENT_KEYWORDS.len());
        assert_eq!(c.min_sentiment, 0.5);
        assert_eq!(c.sentiment_mode, SentimentMode::Abs);
        assert_eq!(c.sentiment_source, SentimentSource::Vader);
        assert_eq!(c.max_age_hours, 24);
        assert_eq!(c.input_stream, "mt5:events:news_raw");
        assert_eq!(c.output_stream, "mt5:events:news_filtered");
        assert_eq!(c.group, "news-filter-group");
        c.validate().unwrap();
    }

    #[test]
    fn empty_section_parses_to_the_defaults() {
        let c: FilterConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, FilterConfig::default());
    }

    #[test]
    fn enums_use_their_config_spelling() {
        let c: FilterConfig =
            serde_json::from_str(r#"{"sentiment_mode":"abs","sentiment_source":"eodhd","tickers":["AAPL.US"]}"#)
                .unwrap();
        assert_eq!(c.sentiment_mode, SentimentMode::Abs);
        assert_eq!(c.sentiment_source, SentimentSource::Eodhd);
        assert!(serde_json::from_str::<FilterConfig>(r#"{"sentiment_mode":"negative"}"#).is_err());
        // `as_str` is the config spelling, as the validation messages and logs print it.
        for (mode, text) in [(SentimentMode::Positive, "positive"), (SentimentMode::Abs, "abs")] {
            assert_eq!(mode.as_str(), text);
            assert_eq!(serde_json::to_value(mode).unwrap(), text);
        }
        for (source, text) in [(SentimentSource::Vader, "vader"), (SentimentSource::Eodhd, "eodhd")] {
            assert_eq!(source.as_str(), text);
            assert_eq!(serde_json::to_value(source).unwrap(), text);
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = serde_json::from_str::<FilterConfig>(r#"{"min_sentimnet":0.2}"#).unwrap_err();
        assert!(err.to_string().contains("min_sentimnet"), "{err}");
    }

    #[test]
    fn the_event_vocabulary_is_valid_config() {
        FilterConfig::default()
            .with_keywords(EVENT_KEYWORDS.iter().copied())
            .validate()
            .unwrap();
    }

    #[test]
    fn validate_names_the_bad_field() {
        let field = |c: FilterConfig| match c.validate() {
            Err(e) => e.key().to_string(),
            Ok(()) => panic!("expected a config error"),
        };
        let d = FilterConfig::default;
        assert_eq!(field(d().with_min_sentiment(1.5)), "news.filter.min_sentiment");
        assert_eq!(field(d().with_min_sentiment(f64::NAN)), "news.filter.min_sentiment");
        assert_eq!(
            field(d().with_sentiment_mode(SentimentMode::Abs).with_min_sentiment(-0.2)),
            "news.filter.min_sentiment"
        );
        assert_eq!(field(d().with_max_age_hours(0)), "news.filter.max_age_hours");
        assert_eq!(field(d().with_keywords(["ok", " "])), "news.filter.keywords");
        assert_eq!(field(d().with_keywords(["--"])), "news.filter.keywords");
        assert_eq!(field(d().with_tickers([""])), "news.filter.tickers");
        assert_eq!(field(d().with_streams("a", "a", "g")), "news.filter.output_stream");
        assert_eq!(field(d().with_streams("a", "b", "")), "news.filter.group");
        let mut c = d();
        c.sentiment_cache_size = 0;
        assert_eq!(field(c), "news.filter.sentiment_cache_size");
        d().with_sentiment_mode(SentimentMode::Positive)
            .with_min_sentiment(-0.3)
            .validate()
            .unwrap();
    }
}
