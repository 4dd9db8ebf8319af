//! The VADER scorer alone: `mt5_news::vader::compound` against the `vader_sentiment` crate the
//! filter used before, on the same texts, uncached.
//!
//! The texts are the first 1 000 articles of the Python reference's generator,
//! `NewsGenerator(seed=42)` (`../shared/anchors/python_ref/newsgen.py`), each scored as
//! `title + " " + content` in full (~700 characters), exactly as the reference filter scores
//! them: the golden corpus's `newsgen:42:full:0..999` (`mt5_fixtures::vader::bench_texts()`),
//! whose Python scores the golden test checks.
//!
//! - `vader/ours`: [`mt5_news::vader::compound`].
//! - `vader/vader_sentiment_crate`: `SentimentIntensityAnalyzer::polarity_scores(text)["compound"]`
//!   of `vader_sentiment` 0.1 (one analyzer, built before timing).
//!
//! Each iteration scores the next text of the 1 000, round robin, so a figure is the mean cost
//! per text. Time is the bench thread's CPU time (see `support/cpu_time.rs`). Before measuring,
//! one timed pass over the 1 000 texts prints each scorer's mean per text.
//! `cargo bench -p mt5-news --bench vader` measures; `cargo test -p mt5-news --bench vader`
//! runs each once. Profile with
//! `perf record -e cpu-clock -g target/release/deps/vader-* --bench --profile-time 20 vader/ours`.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mt5_news::vader;
use vader_sentiment::SentimentIntensityAnalyzer;

#[path = "support/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

fn texts() -> Vec<String> {
    let texts = mt5_fixtures::vader::bench_texts().expect("the golden corpus is readable");
    assert_eq!(
        texts.len(),
        1000,
        "the bench texts are newsgen seed 42's first 1 000 articles"
    );
    texts
}

/// One pass over `texts`, returning the mean CPU time per text in microseconds.
fn pass_mean_us(texts: &[String], score: impl Fn(&str) -> f64) -> f64 {
    let start = ThreadCpuTime::now_ns();
    for t in texts {
        black_box(score(black_box(t)));
    }
    (ThreadCpuTime::now_ns() - start) as f64 / texts.len() as f64 / 1000.0
}

fn bench_vader(c: &mut Criterion<ThreadCpuTime>) {
    let texts = texts();
    let analyzer = SentimentIntensityAnalyzer::new();
    let crate_compound = |t: &str| analyzer.polarity_scores(t).get("compound").copied().unwrap_or(0.0);
    // Warm both (lexicons, buffers), then one pass each.
    pass_mean_us(&texts, vader::compound);
    pass_mean_us(&texts, crate_compound);
    let chars = texts.iter().map(|t| t.chars().count()).sum::<usize>() / texts.len();
    println!(
        "vader bench: {} texts (mean {chars} chars): one pass, mean per text: ours {:.2} µs, vader_sentiment crate {:.2} µs",
        texts.len(),
        pass_mean_us(&texts, vader::compound),
        pass_mean_us(&texts, crate_compound),
    );

    let mut group = c.benchmark_group("vader");
    group.throughput(Throughput::Elements(1));
    let mut next = texts.iter().cycle();
    group.bench_function("ours", |b| {
        b.iter(|| vader::compound(next.next().expect("cycle never ends")));
    });
    let mut next = texts.iter().cycle();
    group.bench_function("vader_sentiment_crate", |b| {
        b.iter(|| crate_compound(next.next().expect("cycle never ends")));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = bench_vader
}
criterion_main!(benches);
