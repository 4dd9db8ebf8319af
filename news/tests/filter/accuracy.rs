//! How well the default config separates interesting headlines from noise, on a labelled set
//! whose labels were assigned by reading, before the scorer existed.

use mt5_news::filter::{Decision, FilterConfig, FilterRules, RawNews, SentimentMode, EVENT_KEYWORDS};

use super::support::{raw_data, Labelled, LabelledSet};

/// Confusion counts; "positive" = interesting (label) or passed (filter).
#[derive(Debug, Default, Clone, Copy)]
struct Confusion {
    tp: usize,
    fp: usize,
    tn: usize,
    fn_: usize,
}

impl Confusion {
    fn total(&self) -> usize {
        self.tp + self.fp + self.tn + self.fn_
    }
    fn accuracy(&self) -> f64 {
        (self.tp + self.tn) as f64 / self.total() as f64
    }
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            0.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            0.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
    fn line(&self) -> String {
        format!(
            "accuracy {:.1} %, precision {:.1} %, recall {:.1} % (TP {}, FP {}, TN {}, FN {}; n = {})",
            100.0 * self.accuracy(),
            100.0 * self.precision(),
            100.0 * self.recall(),
            self.tp,
            self.fp,
            self.tn,
            self.fn_,
            self.total()
        )
    }
}

/// Runs `cfg` over the set with the clock pinned; returns the counts and the misclassified items
/// with their scores.
fn evaluate(cfg: FilterConfig, set: &LabelledSet) -> (Confusion, Vec<(&Labelled, f64)>) {
    let rules = FilterRules::new(cfg).unwrap();
    let mut c = Confusion::default();
    let mut wrong = Vec::new();
    for item in &set.items {
        // Through the same parsing as the handler.
        let data = raw_data(&item.ticker, &item.date, &item.title, &item.content, None);
        let news = RawNews::from_data(&data, None).unwrap();
        let decision = rules.decide(&news, set.clock);
        if let Decision::Reject { reason } = &decision {
            assert!(
                matches!(reason.as_str(), "sentiment" | "keywords"),
                "{}: freshness and whitelist are not under test, got {reason}",
                item.id
            );
        }
        match (item.interesting, decision.passed()) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
            (true, false) => c.fn_ += 1,
        }
        if item.interesting != decision.passed() {
            wrong.push((item, rules.sentiment(&news).score));
        }
    }
    (c, wrong)
}

/// The default config reaches at least 70 % accuracy on the labelled headlines (at least 60 of
/// them); prints accuracy, precision, recall, the confusion counts and the misclassified items.
#[test]
fn default_config_classifies_labelled_headlines() {
    let set = LabelledSet::load();
    assert!(set.items.len() >= 60, "the labelled set needs at least 60 headlines");
    assert!(!set.about.is_empty() && !set.labelled_on.is_empty());
    let (c, wrong) = evaluate(FilterConfig::default(), &set);
    println!("labelled headlines, default config: {}", c.line());
    for (item, score) in &wrong {
        println!(
            "  {} {:>5} score {:+.3} [{}] {}",
            item.id,
            if item.interesting { "FN" } else { "FP" },
            score,
            item.why,
            item.title
        );
    }
    assert!(
        c.accuracy() >= 0.70,
        "accuracy of the default config is below 70 %: {}",
        c.line()
    );
}

/// Accuracy, precision and recall in percent as `docs/news-filter.md` reports them for a
/// candidate: (labelled set, holdout set).
type Documented = ([f64; 3], [f64; 3]);

fn percent(c: &Confusion) -> [f64; 3] {
    [100.0 * c.accuracy(), 100.0 * c.precision(), 100.0 * c.recall()]
}

/// The candidate configs of `docs/news-filter.md` on the labelled set and on the holdout set
/// (labelled by reading after the default failed, before any candidate was scored) support the
/// page's claims, which this asserts:
/// - the figures are those of the page's table (to its 0.1 % rounding);
/// - tone alone cannot pass the 70 % accuracy gate: no candidate without keywords passes it on
///   either set, and every candidate with the keyword rule is more accurate than every one
///   without, on both sets;
/// - the shipped default passes the gate on both sets and, of the candidates that do, is the
///   most precise on the holdout set (the honest estimate), favouring precision;
/// - `min_sentiment = 0.05` with the same keywords trades that precision on the holdout for a
///   higher recall on both sets.
///
/// The table and the misclassified holdout items are printed.
#[test]
fn the_default_is_the_most_precise_candidate_passing_the_gate_on_both_sets() {
    const GATE: f64 = 0.70;
    let dev = LabelledSet::load();
    let holdout = LabelledSet::load_named("holdout.json");
    let no_keywords: [&str; 0] = [];
    let bare = FilterConfig::default()
        .with_keywords(no_keywords)
        .with_sentiment_mode(SentimentMode::Positive);
    // (name, config, uses the keyword rule, figures documented in docs/news-filter.md)
    let candidates: Vec<(&str, FilterConfig, bool, Documented)> = vec![
        (
            "bare: vader, positive, 0.5, no keywords",
            bare.clone(),
            false,
            ([40.8, 42.6, 52.6], [52.5, 52.9, 45.0]),
        ),
        (
            "vader, abs, 0.5, no keywords",
            bare.clone().with_sentiment_mode(SentimentMode::Abs),
            false,
            ([46.1, 47.2, 65.8], [55.0, 55.6, 50.0]),
        ),
        (
            "event keywords + positive 0.5",
            bare.clone().with_keywords(EVENT_KEYWORDS.iter().copied()),
            true,
            ([69.7, 80.0, 52.6], [67.5, 81.8, 45.0]),
        ),
        (
            "default: event keywords + abs 0.5",
            FilterConfig::default(),
            true,
            ([76.3, 83.3, 65.8], [70.0, 83.3, 50.0]),
        ),
        (
            "event keywords + abs 0.05",
            FilterConfig::default().with_min_sentiment(0.05),
            true,
            ([88.2, 83.7, 94.7], [77.5, 72.0, 90.0]),
        ),
        (
            "event keywords only (positive, -1.0)",
            bare.with_keywords(EVENT_KEYWORDS.iter().copied())
                .with_min_sentiment(-1.0),
            true,
            ([89.5, 82.6, 100.0], [77.5, 69.0, 100.0]),
        ),
    ];
    const DEFAULT: usize = 3;
    const LOW_THRESHOLD: usize = 4;
    let mut results: Vec<(Confusion, Confusion)> = Vec::new();
    for (name, cfg, _, (doc_dev, doc_holdout)) in &candidates {
        let (d, _) = evaluate(cfg.clone(), &dev);
        let (h, wrong) = evaluate(cfg.clone(), &holdout);
        println!("{name}\n  labelled: {}\n  holdout:  {}", d.line(), h.line());
        for (item, score) in wrong {
            println!(
                "    holdout {} {} {:+.3} {}",
                item.id,
                if item.interesting { "FN" } else { "FP" },
                score,
                item.title
            );
        }
        for (set, got, doc) in [
            ("labelled", percent(&d), doc_dev),
            ("holdout", percent(&h), doc_holdout),
        ] {
            assert!(
                got.iter().zip(doc.iter()).all(|(g, w)| (g - w).abs() < 0.05 + 1e-9),
                "{name} on the {set} set: acc/prec/rec {got:.1?} %, docs/news-filter.md says {doc:?} %"
            );
        }
        results.push((d, h));
    }

    let passes = |i: usize| results[i].0.accuracy() >= GATE && results[i].1.accuracy() >= GATE;
    for (i, (name, _, keywords, _)) in candidates.iter().enumerate() {
        if !keywords {
            let (d, h) = &results[i];
            assert!(
                d.accuracy() < GATE && h.accuracy() < GATE,
                "{name} (tone alone) passes the {GATE} gate: {} / {}",
                d.line(),
                h.line()
            );
            for (j, (with, _, kw, _)) in candidates.iter().enumerate() {
                if *kw {
                    assert!(
                        results[j].0.accuracy() > d.accuracy() && results[j].1.accuracy() > h.accuracy(),
                        "{with} (keywords) is not more accurate than {name} on both sets"
                    );
                }
            }
        }
    }
    assert!(passes(DEFAULT), "the default config fails the {GATE} gate on a set");
    for i in (0..candidates.len()).filter(|&i| i != DEFAULT && passes(i)) {
        assert!(
            results[i].1.precision() < results[DEFAULT].1.precision(),
            "{} passes the gate on both sets with a holdout precision of {:.1} %, not below the default's {:.1} %",
            candidates[i].0,
            100.0 * results[i].1.precision(),
            100.0 * results[DEFAULT].1.precision()
        );
    }
    let (low, default) = (&results[LOW_THRESHOLD], &results[DEFAULT]);
    assert!(
        low.0.recall() > default.0.recall() && low.1.recall() > default.1.recall(),
        "min_sentiment 0.05 must recall more than the default on both sets"
    );
    assert!(
        low.1.precision() < default.1.precision(),
        "min_sentiment 0.05 must be less precise than the default on the holdout set"
    );
}
