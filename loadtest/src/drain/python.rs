//! The Python side: the reference implementation (`python_ref/`) run by its own interpreter.
//!
//! Everything the reference knows comes from the reference: the generator makes the articles
//! (both sides drain the same ones), its `FilterRules` defaults give the rules the Rust filters
//! are configured with, `NewsProducer.publish_many(..., maxlen=None)` preloads its backlog, and
//! `filter_consumer.py` processes drain it, started and released the way `bench.py` does it.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::child::Proc;
use super::Sentiment;
use crate::{LoadError, Result};

/// The reference's stream and group names (`python_ref/config.py`; not configurable there).
pub(crate) const RAW_STREAM: &str = "mt5:events:news_raw";
/// Where the reference's consumers write passing events.
pub(crate) const FILTERED_STREAM: &str = "mt5:events:news_filtered";
/// The reference's dead letter stream.
pub(crate) const DEADLETTER_STREAM: &str = "mt5:events:deadletter";
/// The reference's group.
pub(crate) const GROUP: &str = "news-filter-group";
/// The list each consumer `RPUSH`es to once connected (`--ready-key`).
pub(crate) const READY_KEY: &str = "drain:ready";
/// The list the consumers `BLPOP` before they start reading (`--go-key`).
pub(crate) const GO_KEY: &str = "drain:go";

/// The harness's calls into the reference, one `python -c` program with a command argument.
const TOOL: &str = r#"
import json, sys
from importlib import metadata
cmd = sys.argv[1]
if cmd == "info":
    from filter_consumer import FilterRules
    r = FilterRules()
    versions = {m: metadata.version(m) for m in ("redis", "hiredis", "vaderSentiment")}
    print(json.dumps({
        "python": sys.version.split()[0], "versions": versions,
        "tickers": sorted(r.whitelist), "keywords": list(r.keywords), "threshold": r.threshold,
        "max_age_s": r.max_age_s, "cache_size": r.cache_size,
    }))
elif cmd == "generate":
    # The pairs of NewsGenerator(seed).ticker_payloads(n). With "vader", articles whose title
    # another article with a different text also carries, the two texts' VADER scores lying on
    # both sides of the threshold, are left out (and more generated in their place): the
    # title cache answers such an event with whichever of the texts its process scored first,
    # so its decision depends on the order of delivery, not on the rules.
    from newsgen import NewsGenerator
    n, seed, out, variant = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    gen = NewsGenerator(seed=seed)
    articles, pairs, ambiguous = [], 0, set()
    target = n + (n // 100 if variant == "vader" else 0)
    while True:
        while pairs < target:
            a = gen.article()
            articles.append(a)
            pairs += len(a["symbols"])
        if variant == "vader":
            from filter_consumer import FilterRules
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
            analyzer, threshold = SentimentIntensityAnalyzer(), FilterRules().threshold
            texts = {}
            for a in articles:
                texts.setdefault(a["title"], set()).add(a["content"])
            ambiguous = set()
            for title, contents in texts.items():
                if len(contents) > 1:
                    sides = {analyzer.polarity_scores(f"{title} {c}")["compound"] > threshold for c in contents}
                    if len(sides) > 1:
                        ambiguous.add(title)
        kept = [(t, a) for a in articles if a["title"] not in ambiguous for t in a["symbols"]]
        if len(kept) >= n:
            break
        target += n - len(kept)
    with open(out, "w") as f:
        for ticker, article in kept[:n]:
            f.write(json.dumps([ticker, article]) + "\n")
    left_out = [(t, a) for a in articles if a["title"] in ambiguous for t in a["symbols"]]
    print(json.dumps({"left_out_events": len(left_out), "left_out_titles": len(ambiguous)}))
elif cmd == "preload":
    from config import connect
    from producer import NewsProducer
    url, path = sys.argv[2], sys.argv[3]
    with open(path) as f:
        pairs = [tuple(json.loads(line)) for line in f]
    ids = NewsProducer(connect(url, name="drain-preload"), maxlen=None).publish_many(pairs, batch=100)
    print(len(ids))
else:
    sys.exit("unknown command " + cmd)
"#;

/// What the reference says about itself and its filter rules.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReferenceInfo {
    /// The interpreter's version.
    pub(crate) python: String,
    /// `redis`, `hiredis`, `vaderSentiment` versions.
    pub(crate) versions: Vec<(String, String)>,
    /// The ticker whitelist.
    pub(crate) tickers: Vec<String>,
    /// The keywords (lower case, matched as substrings).
    pub(crate) keywords: Vec<String>,
    /// Passes when the score is above this.
    pub(crate) threshold: f64,
    /// Freshness limit in hours.
    pub(crate) max_age_hours: u64,
    /// Titles in the VADER cache.
    pub(crate) cache_size: u64,
}

/// The reference and the interpreter that runs it.
#[derive(Debug, Clone)]
pub(crate) struct Reference {
    python: PathBuf,
    dir: PathBuf,
    /// The working directory of every Python process (the reference's folder is read-only).
    work: PathBuf,
}

impl Reference {
    pub(crate) fn new(python: PathBuf, dir: PathBuf, work: PathBuf) -> Self {
        Reference { python, dir, work }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.env("PYTHONPATH", &self.dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&self.work)
            .kill_on_drop(true);
        cmd
    }

    fn venv_hint(&self) -> String {
        format!(
            "the reference needs Python 3.11+ with its requirements (redis, hiredis, vaderSentiment): run `ci/pyref-venv`, or pass --python (tried {})",
            self.python.display()
        )
    }

    /// Runs the tool with `args` and returns its stdout.
    async fn tool(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .arg("-c")
            .arg(TOOL)
            .args(args)
            .output()
            .await
            .map_err(|e| LoadError::Setup(format!("running {}: {e}; {}", self.python.display(), self.venv_hint())))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(LoadError::Setup(format!(
                "python {} exited with {}:\n{}\n{}",
                args.first().copied().unwrap_or(""),
                out.status,
                tail.join("\n"),
                self.venv_hint()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Checks the interpreter and the reference, and reads the reference's rules.
    ///
    /// # Errors
    /// [`LoadError::Setup`] saying to run `ci/pyref-venv` when the interpreter or a requirement
    /// is missing, or naming `--python-ref` when the reference is not where it was looked for.
    pub(crate) async fn info(&self) -> Result<ReferenceInfo> {
        if !self.dir.join("filter_consumer.py").is_file() {
            return Err(LoadError::Setup(format!(
                "no filter_consumer.py in {}: where is the Python reference? (--python-ref DIR)",
                self.dir.display()
            )));
        }
        let out = self.tool(&["info"]).await?;
        parse_info(&out).ok_or_else(|| LoadError::Setup(format!("unexpected output of the reference's info: {out:?}")))
    }

    /// Writes `n` (ticker, article) pairs of `NewsGenerator(seed)` to `out`, one JSON array a
    /// line. With [`Sentiment::Vader`], the articles whose title is shared with another text that
    /// VADER puts on the other side of the threshold are left out (see [`Generated`]).
    ///
    /// # Errors
    /// [`LoadError::Setup`] when Python fails.
    pub(crate) async fn generate(&self, n: u64, seed: u64, sentiment: Sentiment, out: &Path) -> Result<Generated> {
        let out = out.display().to_string();
        let said = self
            .tool(&["generate", &n.to_string(), &seed.to_string(), &out, sentiment.as_str()])
            .await?;
        parse_generated(&said).ok_or_else(|| LoadError::Setup(format!("unexpected output of the generator: {said:?}")))
    }

    /// Publishes the pairs of `dump` to the reference's raw stream, untrimmed and pipelined 100
    /// at a time, in the reference's envelope (`NewsProducer.publish_many(..., maxlen=None)`).
    /// Returns how many it published.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when Python fails.
    pub(crate) async fn preload(&self, url: &str, dump: &Path) -> Result<u64> {
        let out = self.tool(&["preload", url, &dump.display().to_string()]).await?;
        out.trim()
            .parse()
            .map_err(|_| LoadError::Setup(format!("unexpected output of the preload: {out:?}")))
    }

    /// Starts one `filter_consumer.py` named `name` that says it is ready on [`READY_KEY`] and
    /// waits for [`GO_KEY`], writing its summary to `stats` on exit.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when it cannot be started.
    pub(crate) fn spawn_consumer(
        &self,
        url: &str,
        name: &str,
        sentiment: Sentiment,
        stats: &Path,
        log: &Path,
    ) -> Result<Proc> {
        let mut cmd = self.command();
        cmd.arg(self.dir.join("filter_consumer.py"))
            .args(["--url", url, "--name", name])
            .arg("--stats-file")
            .arg(stats)
            .args(["--ready-key", READY_KEY, "--go-key", GO_KEY]);
        if sentiment == Sentiment::Eodhd {
            cmd.arg("--no-vader");
        }
        Proc::spawn(name, cmd, log)
    }
}

fn parse_info(out: &str) -> Option<ReferenceInfo> {
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let strings = |key: &str| -> Option<Vec<String>> {
        v.get(key)?
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let max_age_s = v.get("max_age_s")?.as_f64()?;
    Some(ReferenceInfo {
        python: v.get("python")?.as_str()?.to_string(),
        versions: v
            .get("versions")?
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
            .collect(),
        tickers: strings("tickers")?,
        keywords: strings("keywords")?,
        threshold: v.get("threshold")?.as_f64()?,
        max_age_hours: (max_age_s / 3600.0).round() as u64,
        cache_size: v.get("cache_size")?.as_u64()?,
    })
}

/// What the generator left out of a backlog.
///
/// The title cache (both sides: per process, keyed by title) answers an event with the score of
/// whichever text of its title that process scored first. Where two texts of one title score on
/// both sides of the threshold, the event's decision depends on which consumer saw which entry
/// first: two runs of the reference itself can disagree on it. Those articles' events are left
/// out of the `vader` backlog (and as many more generated), so that every difference between the
/// sides is one of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generated {
    /// Events (ticker, article pairs) left out.
    pub left_out_events: u64,
    /// Titles they carried.
    pub left_out_titles: u64,
}

fn parse_generated(out: &str) -> Option<Generated> {
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    Some(Generated {
        left_out_events: v.get("left_out_events")?.as_u64()?,
        left_out_titles: v.get("left_out_titles")?.as_u64()?,
    })
}

/// A consumer's summary (`--stats-file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ConsumerStats {
    /// Entries handled (passed or rejected).
    pub(crate) processed: u64,
    /// Entries forwarded to the filtered stream.
    pub(crate) passed: u64,
    /// Entries whose handling raised (left pending).
    pub(crate) errors: u64,
    /// Entries dead-lettered.
    pub(crate) dead_lettered: u64,
    /// Entries found trimmed while pending.
    pub(crate) trimmed_while_pending: u64,
    /// Texts VADER scored (title-cache misses).
    pub(crate) vader_calls: u64,
    /// Scores answered from the title cache.
    pub(crate) cache_hits: u64,
}

/// Reads a consumer's stats file.
///
/// # Errors
/// [`LoadError::Run`]: missing or not the reference's shape.
pub(crate) fn read_stats(path: &Path) -> Result<ConsumerStats> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Run(format!("reading {}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LoadError::Run(format!("parsing {}: {e}", path.display())))?;
    let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    match (
        n("processed"),
        n("passed"),
        n("errors"),
        n("dead_lettered"),
        n("vader_calls"),
        n("cache_hits"),
    ) {
        (Some(processed), Some(passed), Some(errors), Some(dead_lettered), Some(vader_calls), Some(cache_hits)) => {
            Ok(ConsumerStats {
                processed,
                passed,
                errors,
                dead_lettered,
                trimmed_while_pending: n("trimmed_while_pending").unwrap_or(0),
                vader_calls,
                cache_hits,
            })
        }
        _ => Err(LoadError::Run(format!(
            "{} is not a consumer summary: {text}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's info line becomes the rules the Rust filters get.
    #[test]
    fn info_is_parsed_into_rules() {
        let out = r#"{"python": "3.11.7", "versions": {"redis": "8.1.0"}, "tickers": ["AAPL.US"], "keywords": ["earnings"], "threshold": 0.5, "max_age_s": 86400.0, "cache_size": 50000}"#;
        let i = parse_info(out).unwrap();
        assert_eq!(i.max_age_hours, 24);
        assert_eq!(i.tickers, vec!["AAPL.US".to_string()]);
        assert_eq!(i.threshold, 0.5);
        assert_eq!(i.versions, vec![("redis".to_string(), "8.1.0".to_string())]);
        assert_eq!(parse_info("nope"), None);
    }

    /// The reference's stats file gives the scorer's calls and cache hits too.
    #[test]
    fn stats_carry_vader_calls_and_cache_hits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"name": "consumer-1", "processed": 10, "passed": 3, "rejected": {"ticker": 7}, "errors": 0, "dead_lettered": 0, "trimmed_while_pending": 0, "vader_calls": 4, "cache_hits": 2, "vader_seconds": 0.002}"#,
        )
        .unwrap();
        let s = read_stats(&path).unwrap();
        assert_eq!((s.processed, s.passed, s.vader_calls, s.cache_hits), (10, 3, 4, 2));
        std::fs::write(
            &path,
            r#"{"processed": 10, "passed": 3, "errors": 0, "dead_lettered": 0}"#,
        )
        .unwrap();
        assert!(
            read_stats(&path).is_err(),
            "a summary without vader_calls is not the reference's"
        );
        let g = parse_generated(r#"{"left_out_events": 7, "left_out_titles": 3}"#).unwrap();
        assert_eq!((g.left_out_events, g.left_out_titles), (7, 3));
    }
}
