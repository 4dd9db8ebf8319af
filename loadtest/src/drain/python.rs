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
    from newsgen import NewsGenerator
    n, seed, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(out, "w") as f:
        for ticker, article in NewsGenerator(seed=seed).ticker_payloads(n):
            f.write(json.dumps([ticker, article]) + "\n")
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

    /// Writes `n` (ticker, article) pairs of `NewsGenerator(seed)` to `out`, one JSON array a line.
    ///
    /// # Errors
    /// [`LoadError::Setup`] when Python fails.
    pub(crate) async fn generate(&self, n: u64, seed: u64, out: &Path) -> Result<()> {
        let out = out.display().to_string();
        self.tool(&["generate", &n.to_string(), &seed.to_string(), &out])
            .await?;
        Ok(())
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
    match (n("processed"), n("passed"), n("errors"), n("dead_lettered")) {
        (Some(processed), Some(passed), Some(errors), Some(dead_lettered)) => Ok(ConsumerStats {
            processed,
            passed,
            errors,
            dead_lettered,
            trimmed_while_pending: n("trimmed_while_pending").unwrap_or(0),
        }),
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
}
