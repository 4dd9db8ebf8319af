//! The drain comparison (CI-sized): the real `mt5-loadtest drain` binary drains 3000 events
//! once per side with the Python reference and with `mt5-hub filter`, for both sentiment
//! variants, on the private `redis-server` it starts. The harness checks every run (nothing
//! pending, lag 0, every event decided, the filtered stream as long as the consumers' count,
//! no duplicate, no dead letter) and exits 1 otherwise; these tests check that it ran both
//! sides, printed the comparison, wrote its report row, and that the sides disagree only where
//! the rules differ. The figures are printed, not asserted.
//!
//! Needs the reference's Python environment: `ci/pyref-venv` (or `MT5_PYREF_PYTHON`), and
//! `mt5-hub` built (`cargo build -p mt5-hub`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

use mt5_chaos::harness::{hub_bin, target_dir};
use serde_json::Value;

/// Env var naming the reference's interpreter; `<target>/pyref-venv/bin/python` without it.
const ENV_PYTHON: &str = "MT5_PYREF_PYTHON";
const EVENTS: u64 = 3000;

/// One drain at a time: a run empties `target/loadtest/drain/`, and two at once would share the
/// machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The interpreter with the reference's requirements. A missing one fails the test: the
/// comparison is part of the suite, not optional.
fn python() -> PathBuf {
    let p = std::env::var_os(ENV_PYTHON)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("pyref-venv").join("bin").join("python"));
    assert!(
        p.is_file(),
        "no Python for the reference at {}: run `ci/pyref-venv` (it makes target/pyref-venv), or set {ENV_PYTHON}",
        p.display()
    );
    p
}

/// Runs `mt5-loadtest drain --events 3000 --rounds 1` with `args`; fails on a non-zero exit with
/// its output.
fn drain(args: &[&str]) -> Output {
    let hub = hub_bin().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_mt5-loadtest"))
        .args(["drain", "--events", &EVENTS.to_string(), "--rounds", "1", "--python"])
        .arg(python())
        .args(args)
        .env("MT5_HUB_BIN", hub)
        .env_remove("MT5_REDIS_URL")
        .output()
        .expect("mt5-loadtest runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stderr}{stdout}");
    assert!(
        out.status.success(),
        "mt5-loadtest drain {args:?} exited with {}:\n{stderr}\n{stdout}",
        out.status
    );
    out
}

/// The report file has the row of this run.
fn reported(run: &str) {
    let report = std::fs::read_to_string(target_dir().join("loadtest").join("report.md")).expect("the report");
    assert!(report.contains(run), "no row {run:?} in the report:\n{report}");
}

/// With EODHD's polarity both sides score the same number and apply the same ticker, freshness
/// and threshold rules, so every event they decide differently is one where the reference's
/// substring keywords and mt5-hub's whole words disagree. Both sides ran, both passed events,
/// and the table was printed.
#[test]
fn both_sides_drain_the_backlog_and_differ_only_by_keyword_semantics() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = drain(&["--sentiment", "eodhd", "--json"]);
    let r: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let runs = r["runs"].as_array().expect("runs");
    let sides: Vec<&str> = runs.iter().filter_map(|r| r["side"].as_str()).collect();
    assert_eq!(sides, ["python", "rust"], "{r:#}");
    for run in runs {
        assert_eq!(run["events"], EVENTS, "{run:#}");
        assert!(run["passed"].as_u64().unwrap() > 0, "{run:#}");
        assert!(run["ev_per_s"].as_f64().unwrap() > 0.0, "{run:#}");
        assert!(run["redis_cpu_s"].as_f64().unwrap() > 0.0, "{run:#}");
        assert!(run["peak_rss_kib"].as_u64().unwrap() > 0, "{run:#}");
    }
    for side in ["python", "rust"] {
        let pass = r[side]["pass_rate"].as_f64().unwrap();
        assert!((0.05..0.95).contains(&pass), "{side} pass rate {pass}: {r:#}");
    }
    let d = &r["differences"][0];
    let differing = d["python_only"].as_u64().unwrap() + d["rust_only"].as_u64().unwrap();
    assert_eq!(
        d["explained_by_keywords"].as_u64().unwrap(),
        differing,
        "a difference the keyword rules do not explain: {r:#}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("drain round 1 rust"),
        "no progress line"
    );
    reported("drain eodhd 3000 events ×1 (mt5-loadtest)");
}

/// With VADER on both sides the comparison runs too (the harness itself fails a run that
/// breaks issue 11's rules: scorer calls per event, the whole text, the cache size, differences
/// only by keyword semantics), and prints its table: both sides' rows, the ratio, the rules'
/// figures and the differing decisions.
#[test]
fn the_vader_variant_prints_the_comparison() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = drain(&["--sentiment", "vader"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "\npython ",
        "\nrust ",
        "ratio rust/python",
        "pass decisions differ on",
        "sentiment vader",
        "scorer calls per event python",
        "sentiment_content_chars 1000000 ≥ longest content",
        ", 0 unexplained",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    reported("drain vader 3000 events ×1 (mt5-loadtest)");
}
