//! The demo's output: a table of the news that passed the filter and a summary, as text for
//! people (about 100 columns wide) or as one JSON document (`--json`).

use mt5_news::parse_article_date;
use serde_json::{json, Value};

use super::pipeline::{percentile, Outcome, PassedNews};
use crate::output::human_ms;

/// Width the table is fitted to.
const WIDTH: usize = 100;
/// Widest `REASON` cell.
const REASON_WIDTH: usize = 30;
/// Narrowest `TITLE` cell.
const MIN_TITLE_WIDTH: usize = 20;

/// Where the run's data came from and went to, for the header and the JSON.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    /// `sample` or `eodhd`.
    pub(crate) source: &'static str,
    /// `local` (the demo's own redis-server), `container` (its own Redis container) or
    /// `configured`.
    pub(crate) redis: &'static str,
    /// The (redacted) Redis URL.
    pub(crate) redis_url: String,
    pub(crate) tickers: Vec<String>,
    pub(crate) raw_stream: String,
    pub(crate) filtered_stream: String,
    /// How a passing score is judged, e.g. `|score| > 0.50`.
    pub(crate) sentiment_rule: String,
    /// Every rule a passing item met, e.g. `≤ 24h old, a keyword, |score| > 0.50`.
    pub(crate) pass_rule: String,
}

/// `+0.83` / `-0.41`.
fn score(s: f64) -> String {
    format!("{s:+.2}")
}

/// Terminal columns of one character: 0 for combining marks and zero-width characters, 2 for
/// East Asian wide characters and emoji, else 1. An approximation of Unicode's East Asian Width
/// that covers what news titles hold, without a dependency for it.
fn char_width(c: char) -> usize {
    match u32::from(c) {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F680..=0x1F6FF
        | 0x1F900..=0x1F9FF
        | 0x1FA70..=0x1FAFF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// Terminal columns of `s`.
pub(crate) fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// Cuts `s` (whitespace runs folded to one space) to at most `max` terminal columns, ending in
/// `…` when cut; never splits a character.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if width(&s) <= max {
        return s;
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = char_width(c);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Aligned columns (two spaces apart) by terminal width; the last column is not padded.
fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i].saturating_sub(width(cell)) + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn reason(n: &PassedNews, rule: &str) -> String {
    if n.keywords.is_empty() {
        format!("sentiment {rule}")
    } else {
        n.keywords.join(", ")
    }
}

/// The latency line values: p50, p95, max.
fn latencies(passed: &[PassedNews]) -> (Option<u64>, Option<u64>, Option<u64>) {
    let mut v: Vec<u64> = passed.iter().filter_map(|n| n.latency_ms).collect();
    v.sort_unstable();
    (percentile(&v, 50), percentile(&v, 95), v.last().copied())
}

/// The news rows, by ticker, newest first.
fn sorted(passed: &[PassedNews]) -> Vec<&PassedNews> {
    let mut rows: Vec<&PassedNews> = passed.iter().collect();
    rows.sort_by(|a, b| {
        let date = |n: &PassedNews| parse_article_date(&n.date);
        a.ticker.cmp(&b.ticker).then_with(|| date(b).cmp(&date(a)))
    });
    rows
}

/// The text report: header, table, summary.
pub(crate) fn text(setting: &Setting, out: &Outcome) -> String {
    let redis = match setting.redis {
        "local" => format!("a temporary redis-server at {} (removed on exit)", setting.redis_url),
        "container" => format!("a temporary Redis container at {} (removed on exit)", setting.redis_url),
        _ => format!("the configured Redis at {}", setting.redis_url),
    };
    let source = match setting.source {
        "sample" => "bundled sample news (dates relative to now)",
        _ => "the EODHD API",
    };
    let mut s = format!(
        "mt5-hub demo: {source} for {}
",
        setting.tickers.join(", ")
    );
    s.push_str(&format!(
        "through {redis}

"
    ));
    s.push_str(&passed_table(setting, &out.passed));
    s.push_str(&summary(setting, out));
    s
}

/// The table of the news that passed, or a line saying none did.
fn passed_table(setting: &Setting, passed: &[PassedNews]) -> String {
    let rows = sorted(passed);
    if rows.is_empty() {
        return "No news passed the filter in this run.\n".to_string();
    }
    let reasons: Vec<String> = rows
        .iter()
        .map(|n| truncate(&reason(n, &setting.sentiment_rule), REASON_WIDTH))
        .collect();
    let ticker_w = rows.iter().map(|n| width(&n.ticker)).max().unwrap_or(0).max(6);
    let reason_w = reasons.iter().map(|r| width(r)).max().unwrap_or(0).max(6);
    let title_w = WIDTH
        .saturating_sub(ticker_w + 2 + "SENTIMENT".len() + 2 + reason_w + 2)
        .max(MIN_TITLE_WIDTH);
    let mut table = vec![vec![
        "TICKER".into(),
        "SENTIMENT".into(),
        "TITLE".into(),
        "REASON".into(),
    ]];
    for (n, r) in rows.iter().zip(reasons) {
        table.push(vec![n.ticker.clone(), score(n.score), truncate(&n.title, title_w), r]);
    }
    render(&table)
}

/// The summary lines: fetched, published, passed, rejected, dead-lettered, latency, time, and
/// the tickers that failed.
fn summary(setting: &Setting, out: &Outcome) -> String {
    let r = &out.round;
    let invalid: usize = r.tickers.iter().map(|t| t.rejected).sum();
    let c = &out.filter;
    let (p50, p95, max) = latencies(&out.passed);
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"));
    let rejected: Vec<String> = c
        .rejected
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let skipped = match invalid {
        0 => String::new(),
        1 => " (1 invalid item skipped)".to_string(),
        n => format!(" ({n} invalid items skipped)"),
    };
    let mut s = String::from("\nSummary\n");
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<16}{v}\n"));
    line(
        "fetched",
        format!("{} articles for {} tickers{skipped}", r.fetched(), r.tickers.len()),
    );
    line(
        "published",
        format!(
            "{} events to {} ({} already published before)",
            r.published(),
            setting.raw_stream,
            r.duplicates()
        ),
    );
    line(
        "passed",
        format!(
            "{} to {} (rule: {})",
            c.passed, setting.filtered_stream, setting.pass_rule
        ),
    );
    line(
        "rejected",
        if rejected.is_empty() {
            format!("{}", c.rejected_total())
        } else {
            format!("{}: {}", c.rejected_total(), rejected.join(", "))
        },
    );
    line("dead-lettered", format!("{}", out.dead_lettered));
    line(
        "e2e latency",
        format!(
            "p50 {}, p95 {}, max {} (raw entry → filtered entry)",
            ms(p50),
            ms(p95),
            ms(max)
        ),
    );
    line("took", human_ms(out.took.as_millis() as u64));
    if r.failed() > 0 {
        line(
            "failed tickers",
            r.tickers
                .iter()
                .filter_map(|t| t.error.as_ref().map(|e| format!("{} ({e})", t.ticker)))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    s
}

/// The JSON report.
pub(crate) fn json(setting: &Setting, out: &Outcome) -> Value {
    let r = &out.round;
    let c = &out.filter;
    let (p50, p95, max) = latencies(&out.passed);
    let rejected: serde_json::Map<String, Value> = c.rejected.iter().map(|(k, n)| (k.clone(), json!(n))).collect();
    json!({
        "source": setting.source,
        "redis": setting.redis,
        "redis_url": setting.redis_url,
        "tickers": r.tickers.iter().map(|t| json!({
            "ticker": t.ticker,
            "fetched": t.fetched,
            "published": t.published,
            "duplicates": t.duplicates,
            "invalid": t.rejected,
            "error": t.error,
        })).collect::<Vec<_>>(),
        "fetched": r.fetched(),
        "published": r.published(),
        "duplicates": r.duplicates(),
        "invalid_items": r.tickers.iter().map(|t| t.rejected).sum::<usize>(),
        "passed": c.passed,
        "rejected": c.rejected_total(),
        "rejected_by_reason": rejected,
        "dead_lettered": out.dead_lettered,
        "latency_ms": { "p50": p50, "p95": p95, "max": max },
        "took_ms": out.took.as_millis() as u64,
        "news": sorted(&out.passed).into_iter().map(|n| json!({
            "ticker": n.ticker,
            "score": n.score,
            "model": n.model,
            "title": n.title,
            "date": n.date,
            "reason": reason(n, &setting.sentiment_rule),
            "keywords": n.keywords,
            "entry_id": n.entry_id,
            "raw_entry_id": n.raw_entry_id,
            "latency_ms": n.latency_ms,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Truncation counts characters, not bytes, and marks the cut.
    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("Apple 苹果 Ärger über", 11), "Apple 苹果…");
        assert_eq!(width("Apple 苹果…"), 11);
        assert_eq!(truncate("a\n  b", 10), "a b");
        assert_eq!(truncate("🚀🚀🚀🚀", 5), "🚀🚀…");
        assert_eq!(truncate("Über", 4), "Über");
    }

    /// Columns line up by terminal width, wide characters included.
    #[test]
    fn columns_align_by_display_width() {
        let rows = vec![
            vec!["A".to_string(), "日本".to_string(), "x".to_string()],
            vec!["B".to_string(), "ab".to_string(), "y".to_string()],
        ];
        assert_eq!(render(&rows), "A  日本  x\nB  ab    y\n");
    }

    /// Scores carry their sign.
    #[test]
    fn scores_are_signed() {
        assert_eq!(score(0.834), "+0.83");
        assert_eq!(score(-0.41), "-0.41");
    }
}
