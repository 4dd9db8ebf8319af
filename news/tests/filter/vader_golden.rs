//! `mt5_news::vader` gives vaderSentiment 3.3.2's scores on every text of the golden corpus
//! (`fixtures/data/vader/`), and a few rules by name.

use mt5_fixtures::vader::golden;
use mt5_news::vader::{compound, compound_unrounded, polarity_scores};

/// Every golden text's compound equals Python's to 4 decimals (the rounded values are equal as
/// doubles), its unrounded compound is within 1e-12 of Python's, and pos/neu/neg are equal too.
/// A failure lists each differing text.
#[test]
fn every_golden_text_scores_as_in_python() {
    let corpus = golden().unwrap();
    assert!(corpus.len() >= 10_000, "the golden corpus has {} texts", corpus.len());
    let mut differ = Vec::new();
    let (mut bit_identical, mut max_raw_diff) = (0usize, 0.0f64);
    for g in &corpus {
        let scores = polarity_scores(&g.text);
        let raw = compound_unrounded(&g.text);
        let raw_diff = (raw - g.raw).abs();
        max_raw_diff = max_raw_diff.max(raw_diff);
        bit_identical += usize::from(raw.to_bits() == g.raw.to_bits());
        if scores.compound != g.compound
            || compound(&g.text) != g.compound
            || raw_diff >= 1e-12
            || (scores.pos, scores.neu, scores.neg) != (g.pos, g.neu, g.neg)
        {
            differ.push(format!(
                "  {}: rust {:?} (raw {raw:?}), python compound {:?} (raw {:?}) pos/neu/neg {:?}: {:?}",
                g.src,
                scores,
                g.compound,
                g.raw,
                (g.pos, g.neu, g.neg),
                g.text.chars().take(160).collect::<String>()
            ));
        }
    }
    println!(
        "vader golden: {} texts, {} differ; unrounded compound bit-identical for {bit_identical}, max |diff| {max_raw_diff:e}",
        corpus.len(),
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "{} of {} golden texts score differently from vaderSentiment 3.3.2:\n{}",
        differ.len(),
        corpus.len(),
        differ.join("\n")
    );
}

/// A negation within three words flips and scales the valence by -0.74; "n't" counts, "no"
/// negates the next word, "never so" boosts instead, and "least" negates unless after "at".
#[test]
fn negation_flips_the_valence() {
    assert_eq!(compound("good"), 0.4404);
    assert_eq!(compound("not good"), -0.3412);
    assert_eq!(compound("isn't good"), -0.3412);
    assert_eq!(compound("not very good"), -0.3865);
    assert_eq!(compound("no good"), -0.3412);
    assert_eq!(compound("never so good"), 0.5777);
    assert_eq!(compound("the least good"), -0.3412);
    assert_eq!(compound("at least good"), 0.4404);
}

/// Words before the first "but" count half, words after it one and a half.
#[test]
fn but_shifts_the_weight_to_what_follows() {
    assert_eq!(compound("good but bad"), -0.5859);
    assert_eq!(compound("bad but good"), 0.3818);
    // 3.3.2's `list.index` quirk: the second "good" rescales the first one again.
    assert_eq!(compound("good good but good"), 0.775);
}

/// An ALL CAPS word among lower-case ones gains 0.733, and so does an ALL CAPS booster; all
/// caps everywhere is no emphasis.
#[test]
fn all_caps_among_lower_case_words_emphasise() {
    assert_eq!(compound("it is GOOD"), 0.5622);
    assert_eq!(compound("it is VERY good"), 0.6028);
    assert_eq!(compound("IT IS GOOD"), compound("it is good"));
}

/// The special-case idioms of 3.3.2 with their quirks: "the bomb" replaces "bomb"'s valence only
/// when three words precede it and the third of them is not a lexicon word; "kind of" is no
/// sentiment of its own.
#[test]
fn idioms_replace_the_valence_with_their_quirks() {
    assert_eq!(compound("it was the bomb"), 0.6124);
    assert_eq!(
        compound("the bomb"),
        -0.4939,
        "too short for the idiom check: just \"bomb\""
    );
    assert_eq!(
        compound("that party was the bomb"),
        -0.128,
        "\"party\" is in the lexicon: no idiom check"
    );
    // "to die for" three words back replaces the valence of the word after it; on its own it
    // is never checked ("for" is no lexicon word), so "die" keeps its own.
    assert_eq!(compound("to die for good"), 0.0258);
    assert_eq!(compound("this cake is to die for"), -0.5994);
    assert_eq!(compound("the kiss of death good"), 0.4939);
    assert_eq!(compound("The book was only kind of good."), 0.3832);
    assert_eq!(compound("we kind of like it"), 0.2975);
}

/// Emoji are replaced by their descriptions; "!" and "??" add emphasis, a single "?" does not.
#[test]
fn emoji_and_exclamation_marks_count() {
    assert_eq!(compound("good 😁"), 0.7096);
    assert_eq!(compound("good!!!"), 0.5826);
    assert_eq!(compound("good?"), 0.4404);
    assert_eq!(compound("good??"), 0.504);
    assert_eq!(compound(""), 0.0);
}
