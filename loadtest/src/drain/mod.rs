//! `mt5-loadtest drain`: draining one preloaded backlog with the original Python design and with
//! `mt5-hub filter`, in the same run, on the same private Redis, timed the same way.
//!
//! Each round generates N (ticker, article) pairs with the reference's seeded generator, then
//! runs the Python side and the Rust side one after the other (rounds interleave them, so slow
//! drift of a shared machine spreads over both):
//!
//! - **python**: the server is emptied and its AOF compacted; the group is created at `0`; the
//!   pairs are published by the reference's own producer (its envelope, untrimmed, pipelined);
//!   the consumer processes (`filter_consumer.py`, as `bench.py` starts them) connect, say they
//!   are ready and wait; the clock starts with the go signal.
//! - **rust**: the server is emptied and its AOF compacted; N-1 `news.raw.v1` events are
//!   published untrimmed, 500 per batch, to fresh streams by the bus's `EventProducer`; the
//!   group is created at `$`; the `mt5-hub filter` processes start and block on `>` of an empty
//!   view; the clock starts with one `MULTI`/`XGROUP SETID 0`/`XADD` of the N-th event/`EXEC`
//!   (`mt5_fixtures::admin`), which shows them all N at once.
//!
//! Both clocks stop at the first `XINFO GROUPS` poll (every ~0.6 ms) that shows the group with
//! lag 0 and nothing pending. Redis's main-thread CPU (`INFO cpu`) is read at both ends. Each
//! run is verified (nothing pending, lag 0, every event decided, as many filtered entries as the
//! consumers say they passed, no duplicate, an empty dead letter stream) and a run that fails is
//! an error. The passed sets of the two sides are compared event by event.
//!
//! With `--sentiment vader` each round also asserts issue 11's rules (`checks`): mt5-hub's
//! scorer calls per event are at least the reference's `vader_calls` per event minus 1 %; both
//! sides score the whole `title + " " + content` with the reference's title cache size (at most
//! 50 000); and, in both variants, the passed sets differ only where the keyword semantics do
//! (a listing of any other difference is printed before the run fails) and no article turns stale
//! during a round.
//!
//! Layout: `server` (the private `redis-server`), `probe` (what is asked of Redis, the drain
//! poller; streams and groups through the bus, administration and measurement through
//! `mt5_fixtures::admin`), `child` (consumer processes), `python` (the reference's side), `hub`
//! (the Rust side), `compare` (passed sets), `checks` (issue 11's rules).

mod checks;
mod child;
mod compare;
mod hub;
mod probe;
mod python;
mod server;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mt5_bus::{group, Connection, EventProducer, Redis};
use mt5_chaos::harness::{target_dir, Streams};
use mt5_fixtures::admin::Admin;
use serde_json::{json, Value as Json};

pub use checks::{ScorerCalls, TextRule};
pub use compare::Differences;
pub use python::Generated;
pub use server::{ENV_REDIS_SERVER, SERVER_SETTINGS};

use child::Proc;
use compare::Passed;
use probe::{GroupState, Poller};
use python::{Reference, ReferenceInfo};

use crate::{LoadError, Result};

/// Where the sentiment score comes from, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Sentiment {
    /// The article's own EODHD polarity: the reference's `--no-vader`, mt5-hub's
    /// `sentiment_source = "eodhd"`. What the pipeline costs without the sentiment model.
    Eodhd,
    /// VADER computed by each side (the reference's default: cheap rules first, VADER on what
    /// they let through; mt5-hub's `sentiment_source = "vader"`, on the whole content too).
    Vader,
}

impl Sentiment {
    /// `eodhd` or `vader`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sentiment::Eodhd => "eodhd",
            Sentiment::Vader => "vader",
        }
    }
}

/// One of the two implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The Python reference (`filter_consumer.py`).
    Python,
    /// `mt5-hub filter`.
    Rust,
}

impl Side {
    /// `python` or `rust`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Python => "python",
            Side::Rust => "rust",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Events in the backlog.
    pub events: u64,
    /// Rounds (each runs both sides once).
    pub rounds: u32,
    /// Consumer processes per side.
    pub consumers: usize,
    /// Round r uses the generator's seed `seed + r`.
    pub seed: u64,
    /// The sentiment variant.
    pub sentiment: Sentiment,
    /// The Python interpreter.
    pub python: PathBuf,
    /// The reference's folder.
    pub python_ref: PathBuf,
    /// The `mt5-hub` binary.
    pub hub_bin: PathBuf,
    /// The `redis-server` binary.
    pub redis_server: OsString,
    /// Logs, configs and consumer summaries (emptied at start, kept afterwards).
    pub work_dir: PathBuf,
}

impl Options {
    /// The defaults: 50 000 events, 3 rounds, 2 consumers per side, seed 1000 (as `bench.py`'s
    /// drains), `eodhd`, the interpreter and reference found by [`default_python`] and
    /// [`default_python_ref`], `redis-server` from `MT5_REDIS_SERVER` or `PATH`, work dir
    /// `<target>/loadtest/drain`.
    pub fn new(hub_bin: PathBuf) -> Self {
        Options {
            events: 50_000,
            rounds: 3,
            consumers: 2,
            seed: 1000,
            sentiment: Sentiment::Eodhd,
            python: default_python(),
            python_ref: default_python_ref(),
            hub_bin,
            redis_server: server::PrivateRedis::binary(),
            work_dir: target_dir().join("loadtest").join("drain"),
        }
    }
}

/// `<target>/pyref-venv/bin/python` when it exists (made by `ci/pyref-venv`), else `python3`.
pub fn default_python() -> PathBuf {
    let venv = target_dir().join("pyref-venv").join("bin").join("python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// `../shared/anchors/python_ref` relative to the repository root: from the working directory
/// when it holds the reference, else from the root this crate was built in.
pub fn default_python_ref() -> PathBuf {
    let rel = Path::new("..").join("shared").join("anchors").join("python_ref");
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&rel);
    [rel.clone(), built_in]
        .into_iter()
        .find(|d| d.join("filter_consumer.py").is_file())
        .unwrap_or(rel)
}

/// One side's drain in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Which side.
    pub side: Side,
    /// Which round (1-based).
    pub round: u32,
    /// Events drained.
    pub events: u64,
    /// From the start signal until the group was seen drained.
    pub elapsed: Duration,
    /// Redis main-thread CPU (user + sys) over that window, seconds.
    pub redis_cpu_s: f64,
    /// CPU time (user + system) the side's consumer processes used in that window, seconds.
    pub consumer_cpu_s: f64,
    /// `XINFO GROUPS` polls of the harness in that window.
    pub polls: u64,
    /// Events that passed (the filtered stream's length, checked against the consumers' count).
    pub passed: u64,
    /// The highest peak RSS (VmHWM) of the side's consumer processes, KiB.
    pub peak_rss_kib: u64,
    /// Texts the side's sentiment scorer scored (the reference's `vader_calls`, mt5-hub's
    /// `mt5_news_sentiment_scored_total`); 0 with EODHD's polarity.
    pub scorer_calls: u64,
    /// Scores answered from the title cache.
    pub cache_hits: u64,
}

impl Run {
    /// The scorer's work in this run.
    pub fn scorer(&self) -> ScorerCalls {
        ScorerCalls {
            calls: self.scorer_calls,
            cache_hits: self.cache_hits,
            events: self.events,
        }
    }

    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The mean time between two polls of the drain's end, ms.
    pub fn poll_interval_ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e3 / self.polls.max(1) as f64
    }

    /// Redis main-thread CPU per event, µs.
    pub fn cpu_us_per_event(&self) -> f64 {
        self.redis_cpu_s * 1e6 / self.events.max(1) as f64
    }

    /// The consumer processes' CPU per event, µs.
    pub fn consumer_cpu_us_per_event(&self) -> f64 {
        self.consumer_cpu_s * 1e6 / self.events.max(1) as f64
    }
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// Of `values` (all 0 when empty).
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 0 {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }
}

/// One side over all rounds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SideSummary {
    /// Events per second.
    pub rate: Spread,
    /// Redis main-thread CPU per event, µs (median).
    pub cpu_us_per_event: f64,
    /// The Redis-bound ceiling: 1 s ÷ that CPU per event, events/s.
    pub ceiling: f64,
    /// The median rate as a share of the ceiling.
    pub share: f64,
    /// Filtered-stream length ÷ events (median).
    pub pass_rate: f64,
    /// The highest consumer peak RSS, KiB.
    pub peak_rss_kib: u64,
    /// The consumer processes' CPU per event, µs (median).
    pub consumer_cpu_us_per_event: f64,
}

impl SideSummary {
    fn of(runs: &[&Run]) -> Self {
        let rate = Spread::of(&runs.iter().map(|r| r.rate()).collect::<Vec<_>>());
        let cpu = Spread::of(&runs.iter().map(|r| r.cpu_us_per_event()).collect::<Vec<_>>()).median;
        let ceiling = if cpu > 0.0 { 1e6 / cpu } else { f64::INFINITY };
        SideSummary {
            rate,
            cpu_us_per_event: cpu,
            ceiling,
            share: if ceiling.is_finite() {
                rate.median / ceiling
            } else {
                0.0
            },
            pass_rate: Spread::of(
                &runs
                    .iter()
                    .map(|r| r.passed as f64 / r.events.max(1) as f64)
                    .collect::<Vec<_>>(),
            )
            .median,
            peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
            consumer_cpu_us_per_event: Spread::of(
                &runs.iter().map(|r| r.consumer_cpu_us_per_event()).collect::<Vec<_>>(),
            )
            .median,
        }
    }
}

/// One round's facts behind issue 11's rules (see `checks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoundRules {
    /// The scorer's settings against the round's longest content and the reference's cache.
    pub text: TextRule,
    /// What the generator left out of the backlog (title-cache ambiguity, `vader` only).
    pub generated: Generated,
    /// Articles that turned stale between the round's start and its end (must be 0).
    pub crossing_freshness: usize,
}

/// The comparison.
#[derive(Debug, Clone)]
pub struct Report {
    /// Events per backlog.
    pub events: u64,
    /// Rounds.
    pub rounds: u32,
    /// Consumer processes per side.
    pub consumers: usize,
    /// The sentiment variant.
    pub sentiment: Sentiment,
    /// The server's version.
    pub redis_version: String,
    /// The interpreter's and the reference's library versions.
    pub python_versions: String,
    /// Every run, in the order they ran.
    pub runs: Vec<Run>,
    /// Per round: how the passed sets differ.
    pub differences: Vec<Differences>,
    /// Per round: what the rules of a drain with sentiment were checked against.
    pub rules: Vec<RoundRules>,
    /// Redis main-thread CPU of one harness poll, µs (measured at start).
    pub poll_cost_us: f64,
    /// The Python side.
    pub python: SideSummary,
    /// The Rust side.
    pub rust: SideSummary,
}

impl Report {
    fn new(opts: &Options, redis_version: String, info: &ReferenceInfo, poll_cost_us: f64) -> Self {
        let versions: Vec<String> = info.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
        Report {
            events: opts.events,
            rounds: opts.rounds,
            consumers: opts.consumers,
            sentiment: opts.sentiment,
            redis_version,
            python_versions: format!("Python {} ({})", info.python, versions.join(", ")),
            runs: Vec::new(),
            differences: Vec::new(),
            rules: Vec::new(),
            poll_cost_us,
            python: SideSummary::default(),
            rust: SideSummary::default(),
        }
    }

    fn summarise(&mut self) {
        let side = |s: Side| -> Vec<&Run> { self.runs.iter().filter(|r| r.side == s).collect() };
        self.python = SideSummary::of(&side(Side::Python));
        self.rust = SideSummary::of(&side(Side::Rust));
    }

    /// Rust's median events/s ÷ Python's.
    pub fn ratio(&self) -> f64 {
        self.rust.rate.median / self.python.rate.median.max(1e-9)
    }

    /// The differing pass decisions of every round.
    pub fn differing(&self) -> u64 {
        self.differences.iter().map(Differences::total).sum()
    }

    fn side(&self, s: Side) -> &SideSummary {
        match s {
            Side::Python => &self.python,
            Side::Rust => &self.rust,
        }
    }

    /// The harness's polls' share of the Redis CPU per event of `s`, µs (median over rounds).
    fn poll_us_per_event(&self, s: Side) -> f64 {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.side == s)
            .map(|r| r.polls as f64 * self.poll_cost_us / r.events.max(1) as f64)
            .collect();
        Spread::of(&v).median
    }

    /// The printed comparison.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let settings: Vec<String> = SERVER_SETTINGS
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    format!("{k} \"\"")
                } else {
                    format!("{k} {v}")
                }
            })
            .collect();
        out.push_str(&format!(
            "drain: {} events preloaded, {} consumer processes per side, {} round(s) (python, rust, ...), sentiment {}\n",
            self.events,
            self.consumers,
            self.rounds,
            self.sentiment.as_str()
        ));
        out.push_str(&format!(
            "  Redis {} (private: {}); {}; mt5-hub filter with the reference's rules\n\n",
            self.redis_version,
            settings.join(", "),
            self.python_versions
        ));
        out.push_str(&format!(
            "{:<7} {:>28} {:>12} {:>13} {:>7} {:>10} {:>10} {:>16}\n",
            "side",
            "ev/s median (min-max)",
            "Redis µs/ev",
            "ceiling ev/s",
            "share",
            "pass rate",
            "peak RSS",
            "consumers µs/ev"
        ));
        for s in [Side::Python, Side::Rust] {
            let m = self.side(s);
            out.push_str(&format!(
                "{:<7} {:>28} {:>12.2} {:>13.0} {:>6.0}% {:>9.1}% {:>6.1} MiB {:>16.1}\n",
                s.as_str(),
                format!("{:.0} ({:.0}-{:.0})", m.rate.median, m.rate.min, m.rate.max),
                m.cpu_us_per_event,
                m.ceiling,
                m.share * 100.0,
                m.pass_rate * 100.0,
                m.peak_rss_kib as f64 / 1024.0,
                m.consumer_cpu_us_per_event
            ));
        }
        out.push_str(&format!("ratio rust/python (median ev/s): {:.2}\n", self.ratio()));
        for (i, d) in self.differences.iter().enumerate() {
            let round = i as u32 + 1;
            if self.sentiment == Sentiment::Vader {
                out.push_str(&self.rules_text(round));
            }
            out.push_str(&format!(
                "round {round}: pass decisions differ on {} of {} events (python only {}, rust only {}); {} of them explained by the keyword semantics (substring vs whole word: {} events in all), {} unexplained\n",
                d.total(),
                self.events,
                d.python_only,
                d.rust_only,
                d.explained_by_keywords,
                d.keyword_rule_differs,
                d.unexplained()
            ));
        }
        out.push_str(&format!(
            "Redis CPU includes the harness's XINFO GROUPS polls: {:.1} µs each, {:.2} µs/ev on the python side, {:.2} on the rust side (medians)\n",
            self.poll_cost_us,
            self.poll_us_per_event(Side::Python),
            self.poll_us_per_event(Side::Rust)
        ));
        out
    }

    /// The runs of `round` on each side.
    fn round_runs(&self, round: u32) -> (Option<&Run>, Option<&Run>) {
        let of = |s: Side| self.runs.iter().find(|r| r.round == round && r.side == s);
        (of(Side::Python), of(Side::Rust))
    }

    /// The rule lines of `round` (a drain with sentiment).
    fn rules_text(&self, round: u32) -> String {
        let mut out = String::new();
        if let (Some(py), Some(rs)) = self.round_runs(round) {
            let (p, r) = (py.scorer(), rs.scorer());
            out.push_str(&format!(
                "round {round}: scorer calls per event python {:.4} ({} vader_calls, {} cache hits), rust {:.4} ({} scored, {} cache hits); rust must be ≥ {:.4}\n",
                p.per_event(),
                p.calls,
                p.cache_hits,
                r.per_event(),
                r.calls,
                r.cache_hits,
                checks::least_calls_per_event(p.per_event())
            ));
        }
        if let Some(rules) = self.rules.get(round as usize - 1) {
            let t = rules.text;
            out.push_str(&format!(
                "round {round}: text: sentiment_content_chars {} ≥ longest content {} chars; title cache {} per process (reference {}, ≤ {}); {} events ({} titles) left out: texts of one title on both sides of the threshold; {} articles turned stale during the round\n",
                t.content_chars,
                t.longest_content_chars,
                t.cache_size,
                t.reference_cache_size,
                checks::MAX_CACHE_SIZE,
                rules.generated.left_out_events,
                rules.generated.left_out_titles,
                rules.crossing_freshness
            ));
        }
        out
    }

    /// The comparison as JSON.
    pub fn to_json(&self) -> Json {
        let side = |s: Side| {
            let m = self.side(s);
            json!({
                "ev_per_s": {"median": m.rate.median, "min": m.rate.min, "max": m.rate.max},
                "redis_cpu_us_per_event": m.cpu_us_per_event,
                "redis_ceiling_ev_per_s": m.ceiling,
                "share_of_ceiling": m.share,
                "pass_rate": m.pass_rate,
                "peak_rss_kib": m.peak_rss_kib,
                "consumer_cpu_us_per_event": m.consumer_cpu_us_per_event,
                "poll_cpu_us_per_event": self.poll_us_per_event(s),
            })
        };
        json!({
            "events": self.events,
            "rounds": self.rounds,
            "consumers": self.consumers,
            "sentiment": self.sentiment.as_str(),
            "redis_version": self.redis_version,
            "python_versions": self.python_versions,
            "poll_cost_us": self.poll_cost_us,
            "python": side(Side::Python),
            "rust": side(Side::Rust),
            "ratio_rust_python": self.ratio(),
            "differences": self.differences.iter().map(|d| json!({
                "python_only": d.python_only,
                "rust_only": d.rust_only,
                "explained_by_keywords": d.explained_by_keywords,
                "keyword_rule_differs": d.keyword_rule_differs,
                "unexplained": d.unexplained(),
            })).collect::<Vec<_>>(),
            "rules": self.rules.iter().enumerate().map(|(i, rules)| {
                let (py, rs) = self.round_runs(i as u32 + 1);
                let calls = |r: Option<&Run>| r.map(|r| {
                    let s = r.scorer();
                    json!({"calls": s.calls, "cache_hits": s.cache_hits, "per_event": s.per_event()})
                });
                let t = rules.text;
                json!({
                    "round": i + 1,
                    "scorer_calls": {
                        "python": calls(py),
                        "rust": calls(rs),
                        "least_rust_per_event": py.map(|p| checks::least_calls_per_event(p.scorer().per_event())),
                    },
                    "sentiment_content_chars": t.content_chars,
                    "longest_content_chars": t.longest_content_chars,
                    "sentiment_cache_size": t.cache_size,
                    "reference_cache_size": t.reference_cache_size,
                    "left_out_events": rules.generated.left_out_events,
                    "left_out_titles": rules.generated.left_out_titles,
                    "crossing_freshness": rules.crossing_freshness,
                })
            }).collect::<Vec<_>>(),
            "runs": self.runs.iter().map(|r| json!({
                "side": r.side.as_str(),
                "round": r.round,
                "events": r.events,
                "elapsed_s": r.elapsed.as_secs_f64(),
                "ev_per_s": r.rate(),
                "redis_cpu_s": r.redis_cpu_s,
                "redis_cpu_us_per_event": r.cpu_us_per_event(),
                "consumer_cpu_s": r.consumer_cpu_s,
                "polls": r.polls,
                "poll_interval_ms": r.poll_interval_ms(),
                "passed": r.passed,
                "peak_rss_kib": r.peak_rss_kib,
                "scorer_calls": r.scorer_calls,
                "cache_hits": r.cache_hits,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Runs the comparison. Progress goes to stderr, a line per run.
///
/// # Errors
/// [`LoadError::Setup`] when something is missing (the interpreter, the reference, `mt5-hub`,
/// `redis-server`); [`LoadError::Check`] when a run lost, duplicated or dead-lettered events or
/// did not drain; [`LoadError::Run`], [`LoadError::Bus`] or [`LoadError::Admin`] for anything
/// else that failed.
/// Every child process is gone when this returns (also when the future is dropped).
pub async fn run(opts: &Options) -> Result<Report> {
    if opts.events == 0 || opts.rounds == 0 || opts.consumers == 0 {
        return Err(LoadError::Setup(
            "events, rounds and consumers must be at least 1".into(),
        ));
    }
    if !opts.hub_bin.is_file() {
        return Err(LoadError::Setup(format!(
            "mt5-hub not found at {}: run `cargo build -p mt5-hub` (--release for figures), or set MT5_HUB_BIN",
            opts.hub_bin.display()
        )));
    }
    let work = &opts.work_dir;
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(|e| LoadError::Setup(format!("emptying {}: {e}", work.display())))?;
    }
    std::fs::create_dir_all(work).map_err(|e| LoadError::Setup(format!("creating {}: {e}", work.display())))?;
    let work = std::fs::canonicalize(work).map_err(|e| LoadError::Setup(format!("{}: {e}", work.display())))?;
    // Python runs in the work dir: relative paths are made absolute first (a bare name such
    // as `python3` is looked up on PATH). Not canonicalized: a venv's python is a symlink that
    // must keep its own path to find the venv.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let python = if opts.python.components().count() > 1 {
        absolute(&opts.python)
    } else {
        opts.python.clone()
    };
    let python_ref = std::fs::canonicalize(&opts.python_ref).unwrap_or_else(|_| absolute(&opts.python_ref));
    let reference = Reference::new(python, python_ref, work.clone());
    let info = reference.info().await?;
    let server = server::PrivateRedis::start(&opts.redis_server).await?;
    let result = Harness::connect(opts, &server, &reference, &info, &work).await;
    let result = match result {
        Ok(mut h) => h.rounds().await,
        Err(e) => Err(e),
    };
    server.stop().await;
    result
}

/// Events per second below which a drain counts as stuck (bounds the wait).
const SLOWEST_RATE: f64 = 200.0;
/// How long consumers may take to connect and wait.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a consumer may take to exit after SIGTERM (mt5-hub's shutdown timeout is 8 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Harness<'a> {
    opts: &'a Options,
    reference: &'a Reference,
    info: &'a ReferenceInfo,
    url: String,
    /// Streams and groups (the bus's queries).
    bus: Connection,
    /// Administration and measurement (`INFO cpu`, `CLIENT LIST`, resets, the start signals).
    admin: Admin,
    /// The Rust side's preload.
    producer: EventProducer,
    work: &'a Path,
    report: Report,
}

/// One side's run and what it passed.
struct Outcome {
    run: Run,
    passed: Passed,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(LoadError::Check(what()))
    }
}

impl<'a> Harness<'a> {
    async fn connect(
        opts: &'a Options,
        server: &server::PrivateRedis,
        reference: &'a Reference,
        info: &'a ReferenceInfo,
        work: &'a Path,
    ) -> Result<Harness<'a>> {
        let url = server.url().to_string();
        let mut bus = Redis::from_url(&url)?.connect().await?;
        let mut admin = Admin::connect(&url).await?;
        let producer = hub::producer(&url).await?;
        let version = probe::server_version(&mut admin).await?;
        let poll_cost = Poller::connect(&url)
            .await?
            .poll_cost_us(&mut admin, &mut bus, 2000)
            .await?;
        Ok(Harness {
            opts,
            reference,
            info,
            url,
            bus,
            admin,
            producer,
            work,
            report: Report::new(opts, version, info, poll_cost),
        })
    }

    fn drain_timeout(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_secs_f64(self.opts.events as f64 / SLOWEST_RATE)
    }

    async fn rounds(&mut self) -> Result<Report> {
        for round in 1..=self.opts.rounds {
            let dump = self.work.join(format!("round{round}-pairs.jsonl"));
            let generated = self
                .reference
                .generate(
                    self.opts.events,
                    self.opts.seed + u64::from(round),
                    self.opts.sentiment,
                    &dump,
                )
                .await?;
            let pairs = read_pairs(&dump)?;
            check(pairs.len() as u64 == self.opts.events, || {
                format!("the generator made {} pairs, not {}", pairs.len(), self.opts.events)
            })?;
            let vader = self.opts.sentiment == Sentiment::Vader;
            let scorer = hub::ScorerSettings::of(self.info);
            let text = TextRule {
                content_chars: scorer.content_chars,
                longest_content_chars: longest_content_chars(&pairs),
                cache_size: scorer.cache_size,
                reference_cache_size: self.info.cache_size,
            };
            if vader {
                checks::same_text(text).map_err(|e| LoadError::Check(format!("round {round}: {e}")))?;
            }
            let start = chrono::Utc::now();
            let py = self.python_run(round, &dump).await?;
            eprintln!("{}", progress(&py.run));
            let rs = self.rust_run(round, &pairs, scorer).await?;
            eprintln!("{}", progress(&rs.run));
            let dates = article_dates(&pairs)?;
            let max_age = chrono::TimeDelta::hours(i64::try_from(self.info.max_age_hours).unwrap_or(i64::MAX / 3600));
            let crossing = checks::crossing_freshness(&dates, start, chrono::Utc::now(), max_age);
            let (d, unexplained) = compare::differences(&pairs, &py.passed, &rs.passed, &self.info.keywords);
            let (py_calls, rs_calls) = (py.run.scorer(), rs.run.scorer());
            self.report.differences.push(d);
            self.report.rules.push(RoundRules {
                text,
                generated,
                crossing_freshness: crossing,
            });
            self.report.runs.push(py.run);
            self.report.runs.push(rs.run);
            if vader {
                eprint!("{}", self.report.rules_text(round));
            }
            if !unexplained.is_empty() {
                let listing = self.listing(&pairs, &unexplained);
                let file = self.work.join(format!("round{round}-unexplained.txt"));
                std::fs::write(&file, &listing)
                    .map_err(|e| LoadError::Run(format!("writing {}: {e}", file.display())))?;
                eprint!(
                    "round {round}: differences the keyword semantics do not explain (also in {}):\n{listing}",
                    file.display()
                );
            }
            let _ = std::fs::remove_file(&dump);
            let fail = |e: String| LoadError::Check(format!("round {round}: {e}"));
            check(crossing == 0, || {
                format!("round {round}: {crossing} articles turned stale during the round: the sides judged their freshness at different times")
            })?;
            if vader {
                checks::calls_per_event(py_calls, rs_calls).map_err(fail)?;
            }
            checks::only_keyword_differences(&d).map_err(fail)?;
        }
        self.report.summarise();
        Ok(self.report.clone())
    }

    /// The Python side's drain of `round`: the group created at `0`, `dump` published by the
    /// reference's producer, its consumers started until they say they are ready, the clock
    /// started by the go signal; then the consumers stopped, their summaries and the streams
    /// checked.
    async fn python_run(&mut self, round: u32, dump: &Path) -> Result<Outcome> {
        let n = self.opts.events;
        probe::reset(&mut self.admin).await?;
        group::create_group(&mut self.bus, python::RAW_STREAM, python::GROUP, "0").await?;
        let published = self.reference.preload(&self.url, dump).await?;
        let len = probe::xlen(&mut self.bus, python::RAW_STREAM).await?;
        check(published == n && len == n, || {
            format!("the reference's producer published {published} events ({len} in the stream), not {n}")
        })?;
        probe::compact_aof(&mut self.admin).await?;
        let (mut procs, stats) = self.spawn_reference_consumers(round)?;
        self.wait_ready(Side::Python, &mut procs).await?;
        let streams = python_streams();
        let go = vec!["go"; procs.len()];
        let window = self.timed_drain(&procs, &streams, Start::Go(&go)).await?;

        stop_python(&mut self.admin, &mut procs).await?;
        let sum = sum_stats(&stats)?;
        check(
            sum.processed == n && sum.errors == 0 && sum.dead_lettered == 0 && sum.trimmed_while_pending == 0,
            || {
                format!("python round {round}: the consumers processed {} of {n} events, {} errors, {} dead-lettered, {} trimmed while pending", sum.processed, sum.errors, sum.dead_lettered, sum.trimmed_while_pending)
            },
        )?;
        let passed = verify(&mut self.bus, Side::Python, round, &streams, sum.passed).await?;
        Ok(window.outcome(Side::Python, round, n, passed, sum.vader_calls, sum.cache_hits))
    }

    /// Starts the reference's consumers of `round` (`consumer-1`, ...), each with a stats file
    /// and a log in the work dir. Returns them and their stats files.
    fn spawn_reference_consumers(&self, round: u32) -> Result<(Vec<Proc>, Vec<PathBuf>)> {
        let mut procs = Vec::new();
        let mut stats = Vec::new();
        for i in 1..=self.opts.consumers {
            let name = format!("consumer-{i}");
            let stats_file = self.work.join(format!("round{round}-python-{name}.stats.json"));
            let log = self.work.join(format!("round{round}-python-{name}.log"));
            procs.push(
                self.reference
                    .spawn_consumer(&self.url, &name, self.opts.sentiment, &stats_file, &log)?,
            );
            stats.push(stats_file);
        }
        Ok((procs, stats))
    }

    /// Waits up to [`START_TIMEOUT`] until all of `side`'s `procs` are ready (see
    /// [`ready_consumers`]); fails as soon as one of them has exited, or at the deadline.
    async fn wait_ready(&mut self, side: Side, procs: &mut [Proc]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while ready_consumers(&mut self.admin, side).await? < procs.len() as u64 {
            for p in procs.iter_mut() {
                p.ensure_running()?;
            }
            if Instant::now() >= deadline {
                let what = match side {
                    Side::Python => "the Python consumers did not get ready",
                    Side::Rust => "the mt5-hub filters did not block on the group",
                };
                return Err(LoadError::Run(format!("{what}; logs in {}", self.work.display())));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// The timed window of one side's run, the same for both: reads the consumers' CPU and
    /// Redis's, starts the clock and sends `start` at once, polls until the group of `streams`
    /// is drained (at most [`Self::drain_timeout`]), then reads both CPUs again and the
    /// consumers' peak RSS while they still run. Fails when an AOF rewrite overlapped it.
    async fn timed_drain(&mut self, procs: &[Proc], streams: &Streams, start: Start<'_>) -> Result<Window> {
        let timeout = self.drain_timeout();
        let admin = &mut self.admin;
        let poller = Poller::connect(&self.url).await?;
        let rewrites0 = probe::aof_rewrites(admin).await?;
        let consumers0 = consumers_cpu_s(procs)?;
        let cpu0 = probe::main_thread_cpu_s(admin).await?;
        let t0 = Instant::now();
        match start {
            Start::Go(go) => {
                admin.push(python::GO_KEY, go).await?;
            }
            Start::Release(last) => hub::release(admin, streams, last).await?,
        }
        let drained = poller.wait_drained(&streams.raw, &streams.group, t0, timeout).await?;
        let cpu1 = probe::main_thread_cpu_s(admin).await?;
        let consumers1 = consumers_cpu_s(procs)?;
        let peak_rss_kib = peak_rss(procs)?;
        let rewrites = probe::aof_rewrites(admin).await? - rewrites0;
        check(rewrites == 0, || {
            format!("{rewrites} AOF rewrite(s) overlapped the timed drain of {}: a forked child's CPU would be in the figures", streams.raw)
        })?;
        Ok(Window {
            drained,
            redis_cpu_s: cpu1 - cpu0,
            consumer_cpu_s: consumers1 - consumers0,
            peak_rss_kib,
        })
    }

    /// The listing of `unexplained` differences: each event with both sides' decisions, the
    /// VADER score of its own text and the rules' verdict without a cache, and the other texts
    /// of its title with their scores.
    fn listing(&self, pairs: &[(String, Json)], unexplained: &[compare::Unexplained]) -> String {
        let by_link: HashMap<&str, &Json> = pairs
            .iter()
            .filter_map(|(_, a)| Some((a.get("link")?.as_str()?, a)))
            .collect();
        let own_score = |a: &Json| {
            let f = |k: &str| a.get(k).and_then(Json::as_str).unwrap_or_default();
            mt5_news::vader::compound(&format!("{} {}", f("title"), f("content")))
        };
        let now = chrono::Utc::now();
        let mut out = String::new();
        for u in unexplained {
            let mut u = u.clone();
            let own = by_link.get(u.id.1.as_str()).map(|a| {
                let score = own_score(a);
                (score, self.uncached_verdict(&u.id.0, a, score, now))
            });
            for link in &mut u.same_title {
                if let Some(a) = by_link.get(link.as_str()) {
                    *link = format!("{link} (scores {})", own_score(a));
                }
            }
            out.push_str("  ");
            out.push_str(&u.line(own.as_ref().map(|(s, v)| (*s, v.as_str()))));
            out.push('\n');
        }
        out
    }

    /// What the reference's rules decide on `article` for `ticker` at `now` scored `score`
    /// (keywords aside: the listing gives both keyword rules).
    fn uncached_verdict(&self, ticker: &str, article: &Json, score: f64, now: chrono::DateTime<chrono::Utc>) -> String {
        if !self.info.tickers.iter().any(|t| t == ticker) {
            return "ticker".into();
        }
        let date = article
            .get("date")
            .and_then(Json::as_str)
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok());
        match date {
            None => return "no date".into(),
            Some(d) if now.signed_duration_since(d).num_seconds() > self.info.max_age_hours as i64 * 3600 => {
                return "stale".into()
            }
            Some(_) => {}
        }
        if score > self.info.threshold {
            format!("pass ({score} > {})", self.info.threshold)
        } else {
            format!("sentiment ({score} ≤ {})", self.info.threshold)
        }
    }

    /// The Rust side's drain of `round`: N-1 events of `pairs` published to fresh streams, the
    /// group created at `$`, the `mt5-hub filter` processes started until they block on it, the
    /// clock started by releasing the N-th event; then the filters' counts scraped, the filters
    /// stopped and the streams checked.
    async fn rust_run(&mut self, round: u32, pairs: &[(String, Json)], scorer: hub::ScorerSettings) -> Result<Outcome> {
        let n = self.opts.events;
        probe::reset(&mut self.admin).await?;
        let streams = Streams::under(&format!("drain:r{round}"));
        let fetch_time = mt5_bus::envelope::format_time(&chrono::Utc::now());
        let events: Vec<mt5_bus::Event> = pairs.iter().map(|(t, a)| hub::raw_event(t, a, &fetch_time)).collect();
        let Some((last, backlog)) = events.split_last() else {
            return Err(LoadError::Setup("no events".into()));
        };
        hub::preload(&self.producer, &streams.raw, backlog).await?;
        // The group exists before the filters start (a service refuses a missing group on a
        // non-empty stream) and shows them an empty view until the release.
        group::create_group(&mut self.bus, &streams.raw, &streams.group, "$").await?;
        probe::compact_aof(&mut self.admin).await?;
        let config = self.write_filter_config(round, &streams, scorer)?;
        let (mut procs, addrs) = self.start_filters(round, &config).await?;
        self.wait_ready(Side::Rust, &mut procs).await?;
        let window = self.timed_drain(&procs, &streams, Start::Release(last)).await?;

        let said = scrape_decisions(&addrs).await?;
        stop_filters(&mut procs).await?;
        check(said.decided == n, || {
            format!("rust round {round}: the filters decided {} of {n} events", said.decided)
        })?;
        let passed = verify(&mut self.bus, Side::Rust, round, &streams, said.passed).await?;
        Ok(window.outcome(Side::Rust, round, n, passed, said.scored, said.cache_hits))
    }

    /// Writes the filters' config of `round` (`round<r>-rust.toml` in the work dir) and returns
    /// its path.
    fn write_filter_config(&self, round: u32, streams: &Streams, scorer: hub::ScorerSettings) -> Result<PathBuf> {
        let config = self.work.join(format!("round{round}-rust.toml"));
        std::fs::write(
            &config,
            hub::config_toml(&self.url, streams, self.info, scorer, self.opts.sentiment),
        )
        .map_err(|e| LoadError::Setup(format!("writing {}: {e}", config.display())))?;
        Ok(config)
    }

    /// Starts the `mt5-hub filter` processes of `round` (`rust-1`, ...) on `config`, each with a
    /// log in the work dir, then waits for each one's HTTP address. Returns them and their
    /// addresses.
    async fn start_filters(&self, round: u32, config: &Path) -> Result<(Vec<Proc>, Vec<SocketAddr>)> {
        let hub = hub::Hub::new(self.opts.hub_bin.clone());
        let mut procs = Vec::new();
        for i in 1..=self.opts.consumers {
            let name = format!("rust-{i}");
            let log = self.work.join(format!("round{round}-rust-{name}.log"));
            procs.push(hub.spawn_filter(config, &name, &log)?);
        }
        let mut addrs = Vec::new();
        for p in &mut procs {
            addrs.push(hub::http_addr(p, START_TIMEOUT).await?);
        }
        Ok((procs, addrs))
    }
}

/// How a side's consumers are told to start; sending it is when the clock starts.
enum Start<'a> {
    /// The reference's go signal: these values (one `go` per consumer) pushed to its go list.
    Go(&'a [&'a str]),
    /// mt5-hub's: the N-th event released onto the rewound group ([`hub::release`]).
    Release(&'a mt5_bus::Event),
}

/// What one side's timed window measured.
struct Window {
    /// The elapsed time and polls until the group was seen drained.
    drained: probe::Drained,
    /// Redis main-thread CPU over the window, seconds.
    redis_cpu_s: f64,
    /// The consumer processes' CPU over the window, seconds.
    consumer_cpu_s: f64,
    /// The consumers' highest peak RSS, KiB.
    peak_rss_kib: u64,
}

impl Window {
    /// `side`'s run of `round` over `events` with this window's figures, the `passed` events
    /// and the side's scorer counts.
    fn outcome(
        self,
        side: Side,
        round: u32,
        events: u64,
        passed: Passed,
        scorer_calls: u64,
        cache_hits: u64,
    ) -> Outcome {
        Outcome {
            run: Run {
                side,
                round,
                events,
                elapsed: self.drained.elapsed,
                redis_cpu_s: self.redis_cpu_s,
                consumer_cpu_s: self.consumer_cpu_s,
                polls: self.drained.polls,
                passed: passed.len() as u64,
                peak_rss_kib: self.peak_rss_kib,
                scorer_calls,
                cache_hits,
            },
            passed,
        }
    }
}

/// How many of `side`'s consumers are ready: the reference's consumers' entries in its ready
/// list; for mt5-hub, the clients blocked in a read (the filters on the group's empty view).
async fn ready_consumers(admin: &mut Admin, side: Side) -> Result<u64> {
    Ok(match side {
        Side::Python => admin.list_len(python::READY_KEY).await?,
        Side::Rust => probe::blocked_readers(admin).await? as u64,
    })
}

/// The reference's fixed stream and group names.
fn python_streams() -> Streams {
    Streams {
        raw: python::RAW_STREAM.into(),
        filtered: python::FILTERED_STREAM.into(),
        deadletter: python::DEADLETTER_STREAM.into(),
        group: python::GROUP.into(),
    }
}

/// The reference consumers' summaries (their `stats` files), added up.
fn sum_stats(stats: &[PathBuf]) -> Result<python::ConsumerStats> {
    let mut sum = python::ConsumerStats::default();
    for s in stats {
        let s = python::read_stats(s)?;
        sum.processed += s.processed;
        sum.passed += s.passed;
        sum.errors += s.errors;
        sum.dead_lettered += s.dead_lettered;
        sum.trimmed_while_pending += s.trimmed_while_pending;
        sum.vader_calls += s.vader_calls;
        sum.cache_hits += s.cache_hits;
    }
    Ok(sum)
}

/// The filters' decisions and scorer counts, scraped from each of `addrs` and added up.
async fn scrape_decisions(addrs: &[SocketAddr]) -> Result<hub::Decisions> {
    let mut said = hub::Decisions::default();
    for a in addrs {
        let d = hub::decisions(*a).await?;
        said.passed += d.passed;
        said.decided += d.decided;
        said.scored += d.scored;
        said.cache_hits += d.cache_hits;
    }
    Ok(said)
}

/// SIGTERMs the filters, then waits for each (at most [`STOP_TIMEOUT`]); each must exit 0.
async fn stop_filters(procs: &mut [Proc]) -> Result<()> {
    for p in procs.iter_mut() {
        p.sigterm()?;
    }
    for p in procs.iter_mut() {
        let status = p.wait(STOP_TIMEOUT).await?;
        check(status.success(), || {
            format!("{} exited with {status}:\n{}", p.label(), p.log_tail(15))
        })?;
    }
    Ok(())
}

/// The CPU time `procs` have used so far, seconds.
fn consumers_cpu_s(procs: &[Proc]) -> Result<f64> {
    let mut sum = 0.0;
    for p in procs {
        sum += p.cpu_s()?;
    }
    Ok(sum)
}

/// The highest peak RSS of `procs`, read while they still run.
fn peak_rss(procs: &[Proc]) -> Result<u64> {
    let mut max = 0;
    for p in procs {
        max = max.max(p.peak_rss_kib()?);
    }
    Ok(max)
}

/// SIGTERMs the reference's consumers and unblocks their blocked reads until they exit (their
/// `BLOCK` is 5 s), as `bench.py` stops them; each must exit 0.
async fn stop_python(admin: &mut Admin, procs: &mut [Proc]) -> Result<()> {
    for p in procs.iter_mut() {
        p.sigterm()?;
    }
    let names: Vec<String> = procs.iter().map(|p| p.label().to_string()).collect();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while procs.iter_mut().any(|p| p.exited().is_none()) && Instant::now() < deadline {
        for id in probe::blocked_client_ids(admin, &names).await? {
            admin.client_unblock(id).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in procs.iter_mut() {
        let status = p.wait(Duration::from_secs(1)).await?;
        check(status.success(), || {
            format!("{} exited with {status}:\n{}", p.label(), p.log_tail(15))
        })?;
    }
    Ok(())
}

/// Checks a drained run: nothing pending and lag 0, the filtered stream holds exactly the
/// `said_passed` events the consumers say they passed with no event twice, and the dead letter
/// stream is empty. Returns the passed events.
async fn verify(conn: &mut Connection, side: Side, round: u32, streams: &Streams, said_passed: u64) -> Result<Passed> {
    let what = format!("{} round {round}", side.as_str());
    let state = probe::group_state(conn, &streams.raw, &streams.group).await?;
    check(state.is_some_and(|s: GroupState| s.drained()), || {
        format!(
            "{what}: the group is not drained after the consumers stopped: {}",
            state.map_or_else(|| "no group".into(), |s| s.to_string())
        )
    })?;
    let filtered = probe::xlen(conn, &streams.filtered).await?;
    check(filtered == said_passed, || {
        format!(
            "{what}: {filtered} entries in {} but the consumers passed {said_passed}",
            streams.filtered
        )
    })?;
    let dead = probe::xlen(conn, &streams.deadletter).await?;
    check(dead == 0, || {
        format!(
            "{what}: {dead} entries in the dead letter stream {}",
            streams.deadletter
        )
    })?;
    let ids = compare::passed_ids(conn, &streams.filtered).await?;
    let passed: Passed = ids.iter().cloned().collect();
    check(passed.len() == ids.len(), || {
        format!("{what}: {} filtered entries are duplicates", ids.len() - passed.len())
    })?;
    Ok(passed)
}

/// The pairs of a generator dump: one `[ticker, article]` JSON array a line.
fn read_pairs(path: &Path) -> Result<Vec<(String, Json)>> {
    let f = std::fs::File::open(path).map_err(|e| LoadError::Setup(format!("opening {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| LoadError::Setup(format!("reading {}: {e}", path.display())))?;
        let pair: (String, Json) = serde_json::from_str(&line)
            .map_err(|e| LoadError::Setup(format!("{} line {}: {e}", path.display(), i + 1)))?;
        out.push(pair);
    }
    Ok(out)
}

/// The longest `content` of `pairs`, in characters.
fn longest_content_chars(pairs: &[(String, Json)]) -> usize {
    pairs
        .iter()
        .filter_map(|(_, a)| a.get("content")?.as_str())
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
}

/// The articles' dates.
fn article_dates(pairs: &[(String, Json)]) -> Result<Vec<chrono::DateTime<chrono::Utc>>> {
    pairs
        .iter()
        .map(|(_, a)| {
            let d = a.get("date").and_then(Json::as_str).unwrap_or_default();
            chrono::DateTime::parse_from_rfc3339(d)
                .map(|d| d.to_utc())
                .map_err(|e| LoadError::Run(format!("article date {d:?}: {e}")))
        })
        .collect()
}

fn progress(r: &Run) -> String {
    format!(
        "drain round {} {:<6}: {} events in {:.3} s = {:.0} ev/s, Redis {:.2} µs/ev, consumers {:.1} µs/ev, passed {}, peak RSS {:.1} MiB, polled every {:.2} ms",
        r.round,
        r.side.as_str(),
        r.events,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.cpu_us_per_event(),
        r.consumer_cpu_us_per_event(),
        r.passed,
        r.peak_rss_kib as f64 / 1024.0,
        r.poll_interval_ms()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Medians of odd and even counts; NaN is ignored.
    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).median, 5.0);
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    /// The ceiling is 1 s over the CPU per event, and the share is the rate over it.
    #[test]
    fn the_ceiling_comes_from_the_redis_cpu_per_event() {
        let run = |secs: f64, cpu: f64| Run {
            side: Side::Rust,
            round: 1,
            events: 10_000,
            elapsed: Duration::from_secs_f64(secs),
            redis_cpu_s: cpu,
            consumer_cpu_s: 0.4,
            polls: 0,
            passed: 2_500,
            peak_rss_kib: 2048,
            scorer_calls: 4_000,
            cache_hits: 1_000,
        };
        let runs = [run(1.0, 0.05), run(0.5, 0.05), run(2.0, 0.05)];
        let s = SideSummary::of(&runs.iter().collect::<Vec<_>>());
        assert_eq!(s.rate.median, 10_000.0);
        assert!((s.cpu_us_per_event - 5.0).abs() < 1e-9);
        assert!((s.ceiling - 200_000.0).abs() < 1e-6);
        assert!((s.share - 0.05).abs() < 1e-9);
        assert_eq!(s.pass_rate, 0.25);
        assert_eq!(s.peak_rss_kib, 2048);
        assert!((s.consumer_cpu_us_per_event - 40.0).abs() < 1e-9);
    }
}
