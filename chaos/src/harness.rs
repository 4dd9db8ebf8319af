//! Running real `mt5-hub` processes for a scenario: finding the binary, spawning filters and
//! publishers with a scenario's streams and short bus timeouts, and crashing them.
//!
//! A crash is always a SIGKILLed child process ([`HubProcess::sigkill`]), never an aborted task:
//! only a killed process loses its in-memory state the way production does.
//!
//! ```no_run
//! use mt5_chaos::harness::{Load, Scenario};
//!
//! # async fn example() -> Result<(), mt5_chaos::harness::HarnessError> {
//! let sc = Scenario::new("consumer_crash", "redis://127.0.0.1:6390", "t1234")?;
//! let mut filter = sc.spawn_filter("f1").await?;
//! let mut load = sc.spawn_publisher(&Load::news(400.0, 3200, sc.history_path("load"))).await?;
//! load.wait_exit(std::time::Duration::from_secs(30)).await?;
//! filter.sigkill().await?;
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Env var naming the `mt5-hub` binary; without it the binary next to the test's `deps/` dir.
pub const ENV_HUB_BIN: &str = "MT5_HUB_BIN";

/// The cargo feature of `mt5-hub` that compiles its fault injection hooks (`FAILPOINTS`) and the
/// `publish --poison-*` flags; a binary built with it says `(features: chaos)` in `--version`.
pub const HUB_CHAOS_FEATURE: &str = "chaos";

/// What went wrong in the harness or the checker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The `mt5-hub` binary was not found.
    #[error("the mt5-hub binary was not found at {path}: run `cargo build -p mt5-hub` first (or set MT5_HUB_BIN)")]
    HubBinaryMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A scenario needs the fault injection hooks, and the `mt5-hub` binary has none.
    #[error(
        "the mt5-hub binary at {path} was built without the `chaos` feature, which {needs} needs: \
         run `cargo build -p mt5-hub --features chaos` (or set MT5_HUB_BIN to such a build)"
    )]
    HubWithoutChaos {
        /// The binary.
        path: PathBuf,
        /// What needed the hooks (`FAILPOINTS`, `--poison-every`).
        needs: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A Redis connection or query (made through the bus) failed.
    #[error("Redis: {0}")]
    Bus(#[from] mt5_bus::Error),
    /// A signal could not be sent.
    #[error("cannot signal {label} (pid {pid}): {source}")]
    Signal {
        /// The process label.
        label: String,
        /// Its pid.
        pid: i32,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// A line or reply could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was parsed.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// An HTTP request (a `/metrics` scrape) failed.
    #[error("HTTP request to {url} failed: {detail}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        detail: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}

/// The harness's result.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// The cargo target directory: `CARGO_TARGET_DIR`, else derived from the running test binary
/// (`<target>/debug/deps/xxx` → `<target>`), else `./target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| profile_dir(&exe).and_then(|p| p.parent().map(Path::to_path_buf)))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// `<target>/<profile>` of a test binary in `<target>/<profile>/deps/`.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// The `mt5-hub` binary: `MT5_HUB_BIN`, else `mt5-hub` in the profile dir of the running test
/// binary (`target/debug/deps/xxx` → `target/debug/mt5-hub`).
///
/// # Errors
/// [`HarnessError::HubBinaryMissing`] saying to run `cargo build -p mt5-hub`.
pub fn hub_bin() -> Result<PathBuf> {
    let path = match std::env::var_os(ENV_HUB_BIN).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().map_err(|e| HarnessError::io("locating the test binary", e))?;
            profile_dir(&exe)
                .unwrap_or_else(|| target_dir().join("debug"))
                .join(format!("mt5-hub{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::HubBinaryMissing { path })
    }
}

/// The cargo features `bin --version` reports: `mt5-hub 0.1.0 (features: chaos)` gives
/// `["chaos"]`, a plain build none.
///
/// # Errors
/// [`HarnessError::Io`] when the binary cannot run; [`HarnessError::Parse`] when it fails.
pub fn hub_features(bin: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::io(format!("running {} --version", bin.display()), e))?;
    if !out.status.success() {
        return Err(HarnessError::Parse {
            what: format!("{} --version", bin.display()),
            detail: format!("exited with {}", out.status),
        });
    }
    Ok(parse_features(&String::from_utf8_lossy(&out.stdout)))
}

/// The features of a `--version` line (see [`hub_features`]).
fn parse_features(version: &str) -> Vec<String> {
    version
        .split_once("(features:")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(list, _)| {
            list.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// What in a spawn needs the `chaos` build: `FAILPOINTS` in its env or a `--poison-*` flag.
fn needs_hooks(args: &[String], extra_env: &[(&str, &str)]) -> Option<String> {
    if extra_env.iter().any(|(k, _)| *k == "FAILPOINTS") {
        return Some("FAILPOINTS".into());
    }
    args.iter().find(|a| a.starts_with("--poison-")).cloned()
}

/// Bus timings of a scenario: short, so crashes are detected and reclaimed within seconds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BusTimings {
    /// `bus.consumer.heartbeat_ttl_ms`. Default 1000.
    pub heartbeat_ttl_ms: u64,
    /// `bus.consumer.heartbeat_interval_ms`. Default 250.
    pub heartbeat_interval_ms: u64,
    /// `bus.reclaim.interval_ms`. Default 200.
    pub reclaim_interval_ms: u64,
    /// `bus.reclaim.min_idle_ms` (stuck live consumers). Default 10000.
    pub min_idle_ms: u64,
    /// `bus.consumer.block_ms`. Default 100.
    pub block_ms: u64,
    /// `bus.consumer.max_deliveries`. Default 3.
    pub max_deliveries: u64,
    /// `bus.consumer.count` (entries per read). Default 50.
    pub read_count: u64,
    /// `bus.consumer.shutdown_timeout_ms`. Default 3000.
    pub shutdown_timeout_ms: u64,
    /// `bus.retry.max_ms`: the cap of reconnect backoff. Default 500.
    pub retry_max_ms: u64,
}

impl Default for BusTimings {
    fn default() -> Self {
        BusTimings {
            heartbeat_ttl_ms: 1000,
            heartbeat_interval_ms: 250,
            reclaim_interval_ms: 200,
            min_idle_ms: 10_000,
            block_ms: 100,
            max_deliveries: 3,
            read_count: 50,
            shutdown_timeout_ms: 3000,
            retry_max_ms: 500,
        }
    }
}

/// The streams and group of one scenario, all under its own prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    /// Raw news (the filter's input).
    pub raw: String,
    /// Filtered news (the filter's effects).
    pub filtered: String,
    /// The dead letter stream.
    pub deadletter: String,
    /// The filter's group on `raw`.
    pub group: String,
}

impl Streams {
    /// The streams under `prefix`: `<prefix>:news_raw`, `<prefix>:news_filtered`,
    /// `<prefix>:deadletter`, group `<prefix>-filter`.
    pub fn under(prefix: &str) -> Self {
        Streams {
            raw: format!("{prefix}:news_raw"),
            filtered: format!("{prefix}:news_filtered"),
            deadletter: format!("{prefix}:deadletter"),
            group: format!("{prefix}-filter"),
        }
    }
}

/// A paced load of `mt5-hub publish --rate`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Load {
    /// Events per second.
    pub rate: f64,
    /// Events in all.
    pub count: u64,
    /// The history file (appended to).
    pub history: PathBuf,
    /// `--idempotency-key-prefix`: retried publishes dedupe.
    pub idempotency_key_prefix: Option<String>,
    /// `--poison-every K`: every K-th event is a poison.
    pub poison_every: Option<u64>,
    /// `--poison-marker`: the marker in a poison's title (default `CHAOS-POISON`).
    pub poison_marker: Option<String>,
    /// `--batch`.
    pub batch: Option<u64>,
}

impl Load {
    /// `count` news events (`--template news`, every one passes the default filter) at `rate`
    /// per second, recorded in `history`.
    pub fn news(rate: f64, count: u64, history: PathBuf) -> Self {
        Load {
            rate,
            count,
            history,
            idempotency_key_prefix: None,
            poison_every: None,
            poison_marker: None,
            batch: None,
        }
    }

    /// With `--idempotency-key-prefix prefix`.
    #[must_use]
    pub fn with_idempotency_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.idempotency_key_prefix = Some(prefix.into());
        self
    }

    /// With `--poison-every k` (and `--poison-marker marker`).
    #[must_use]
    pub fn with_poison(mut self, every: u64, marker: impl Into<String>) -> Self {
        self.poison_every = Some(every);
        self.poison_marker = Some(marker.into());
        self
    }

    /// With `--batch b`.
    #[must_use]
    pub fn with_batch(mut self, batch: u64) -> Self {
        self.batch = Some(batch);
        self
    }

    /// The `publish` arguments.
    pub fn args(&self, stream: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "publish".into(),
            "--stream".into(),
            stream.into(),
            "--template".into(),
            "news".into(),
            "--rate".into(),
            self.rate.to_string(),
            "--count".into(),
            self.count.to_string(),
            "--history".into(),
            self.history.display().to_string(),
        ];
        if let Some(p) = &self.idempotency_key_prefix {
            args.extend(["--idempotency-key-prefix".into(), p.clone()]);
        }
        if let Some(k) = self.poison_every {
            args.extend(["--poison-every".into(), k.to_string()]);
        }
        if let Some(m) = &self.poison_marker {
            args.extend(["--poison-marker".into(), m.clone()]);
        }
        if let Some(b) = self.batch {
            args.extend(["--batch".into(), b.to_string()]);
        }
        args
    }
}

/// One scenario: its name, Redis, streams, bus timings, and a directory for logs and history
/// (`<target>/chaos/<name>/`, emptied at start, kept afterwards for post-mortems).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The scenario's name (the report row's key).
    pub name: String,
    /// The Redis URL every process uses.
    pub redis_url: String,
    /// Streams and group.
    pub streams: Streams,
    /// Bus timings passed as `MT5_BUS__...` env.
    pub timings: BusTimings,
    /// Logs and history files.
    pub dir: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Scenario {
    /// A scenario named `name` on `redis_url`, streams under `prefix` (the fixture's random
    /// prefix), default [`BusTimings`].
    ///
    /// # Errors
    /// The scenario directory cannot be created.
    pub fn new(name: &str, redis_url: &str, prefix: &str) -> Result<Self> {
        let dir = target_dir().join("chaos").join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| HarnessError::io(format!("emptying {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        Ok(Scenario {
            name: name.to_string(),
            redis_url: redis_url.to_string(),
            streams: Streams::under(prefix),
            timings: BusTimings::default(),
            dir,
            extra_env: Vec::new(),
        })
    }

    /// With these timings.
    #[must_use]
    pub fn with_timings(mut self, timings: BusTimings) -> Self {
        self.timings = timings;
        self
    }

    /// With one more env var for every process.
    #[must_use]
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_env.push((key.into(), value.into()));
        self
    }

    /// A file in the scenario directory for the history of `label`.
    pub fn history_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("history-{label}.jsonl"))
    }

    /// The env of every process: Redis URL, streams and group, bus timings, loopback HTTP on a
    /// free port, logs at `info`.
    pub fn env(&self) -> Vec<(String, String)> {
        let t = &self.timings;
        let s = &self.streams;
        let mut env: Vec<(String, String)> = [
            ("MT5_REDIS_URL", self.redis_url.clone()),
            ("MT5_HTTP_ADDR", "127.0.0.1:0".into()),
            ("MT5_LOG", "info".into()),
            ("MT5_LOG_FORMAT", "pretty".into()),
            ("MT5_NEWS__FILTER__INPUT_STREAM", s.raw.clone()),
            ("MT5_NEWS__FILTER__OUTPUT_STREAM", s.filtered.clone()),
            ("MT5_NEWS__FILTER__GROUP", s.group.clone()),
            ("MT5_BUS__DEADLETTER_STREAM", s.deadletter.clone()),
            (
                "MT5_BUS__GROUPS",
                format!("[{{stream = \"{}\", group = \"{}\"}}]", s.raw, s.group),
            ),
            ("MT5_BUS__CONSUMER__BLOCK_MS", t.block_ms.to_string()),
            ("MT5_BUS__CONSUMER__COUNT", t.read_count.to_string()),
            ("MT5_BUS__CONSUMER__MAX_DELIVERIES", t.max_deliveries.to_string()),
            ("MT5_BUS__CONSUMER__HEARTBEAT_TTL_MS", t.heartbeat_ttl_ms.to_string()),
            (
                "MT5_BUS__CONSUMER__HEARTBEAT_INTERVAL_MS",
                t.heartbeat_interval_ms.to_string(),
            ),
            (
                "MT5_BUS__CONSUMER__SHUTDOWN_TIMEOUT_MS",
                t.shutdown_timeout_ms.to_string(),
            ),
            ("MT5_BUS__RECLAIM__INTERVAL_MS", t.reclaim_interval_ms.to_string()),
            ("MT5_BUS__RECLAIM__MIN_IDLE_MS", t.min_idle_ms.to_string()),
            ("MT5_BUS__RETRY__MAX_MS", t.retry_max_ms.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Spawns `mt5-hub <args>` with the scenario env plus `extra_env`, labelled `label` (its
    /// stdout and stderr go to `<dir>/<label>.{out,err}`, appended, so a restarted process keeps
    /// one log).
    ///
    /// # Errors
    /// The binary is missing or cannot be started; [`HarnessError::HubWithoutChaos`] when
    /// `extra_env` sets `FAILPOINTS` or `args` hold a `--poison-*` flag and the binary was built
    /// without the `chaos` feature (its hooks would be missing, and the scenario would fail
    /// for the wrong reason).
    pub async fn spawn(&self, label: &str, args: &[String], extra_env: &[(&str, &str)]) -> Result<HubProcess> {
        let bin = hub_bin()?;
        if let Some(needs) = needs_hooks(args, extra_env) {
            if !hub_features(&bin)?.iter().any(|f| f == HUB_CHAOS_FEATURE) {
                return Err(HarnessError::HubWithoutChaos { path: bin, needs });
            }
        }
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .env_remove("MT5_CONFIG")
            .envs(self.env())
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        HubProcess::spawn(label, cmd, &self.dir)
    }

    /// Spawns `mt5-hub filter --consumer <name>`.
    ///
    /// # Errors
    /// As [`Scenario::spawn`].
    pub async fn spawn_filter(&self, name: &str) -> Result<HubProcess> {
        self.spawn_filter_with(name, &[]).await
    }

    /// Spawns `mt5-hub filter --consumer <name>` with more env (e.g. `FAILPOINTS`).
    ///
    /// # Errors
    /// As [`Scenario::spawn`].
    pub async fn spawn_filter_with(&self, name: &str, extra_env: &[(&str, &str)]) -> Result<HubProcess> {
        let args = ["filter".to_string(), "--consumer".into(), name.into()];
        self.spawn(name, &args, extra_env).await
    }

    /// Spawns the load publisher (label `publisher`) on the raw stream.
    ///
    /// # Errors
    /// As [`Scenario::spawn`].
    pub async fn spawn_publisher(&self, load: &Load) -> Result<HubProcess> {
        self.spawn("publisher", &load.args(&self.streams.raw), &[]).await
    }

    /// Runs `mt5-hub <args>` to completion (bounded by `timeout`) and returns its stdout.
    ///
    /// # Errors
    /// Spawn failure, timeout, or a non-zero exit (with the stderr tail).
    pub async fn run_to_end(&self, label: &str, args: &[String], timeout: Duration) -> Result<String> {
        let mut p = self.spawn(label, args, &[]).await?;
        let status = p.wait_exit(timeout).await?;
        if !status.success() {
            return Err(HarnessError::Parse {
                what: format!("mt5-hub {}", args.join(" ")),
                detail: format!("exited with {status}: {}", p.stderr_tail(20)),
            });
        }
        Ok(p.stdout())
    }
}

/// A spawned `mt5-hub` child. Killed when dropped.
#[derive(Debug)]
pub struct HubProcess {
    label: String,
    child: Child,
    pid: i32,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Bytes of stderr before this process started (the log is shared with earlier runs).
    stderr_offset: u64,
    /// Bytes of stdout before this process started.
    stdout_offset: u64,
    status: Option<ExitStatus>,
}

impl HubProcess {
    fn spawn(label: &str, mut cmd: Command, dir: &Path) -> Result<Self> {
        let stdout_path = dir.join(format!("{label}.out"));
        let stderr_path = dir.join(format!("{label}.err"));
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| HarnessError::io(format!("opening {}", p.display()), e))
        };
        let out: File = open(&stdout_path)?;
        let err: File = open(&stderr_path)?;
        let size = |f: &File| {
            f.metadata()
                .map(|m| m.len())
                .map_err(|e| HarnessError::io("reading the log size", e))
        };
        let stderr_offset = size(&err)?;
        let stdout_offset = size(&out)?;
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::io(format!("spawning mt5-hub ({label})"), e))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| HarnessError::Parse {
                what: "the child's pid".into(),
                detail: "none".into(),
            })?;
        Ok(HubProcess {
            label: label.to_string(),
            child,
            pid,
            stdout_path,
            stderr_path,
            stderr_offset,
            stdout_offset,
            status: None,
        })
    }

    /// The label (the consumer name for filters).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.pid), sig).map_err(|source| HarnessError::Signal {
            label: self.label.clone(),
            pid: self.pid,
            source,
        })
    }

    /// SIGKILLs the process (a crash) and reaps it.
    ///
    /// # Errors
    /// The signal cannot be sent (the process already exited and was reaped).
    pub async fn sigkill(&mut self) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(10)).await.map(|_| ())
    }

    /// SIGTERMs the process and waits for its exit (bounded by `timeout`).
    ///
    /// # Errors
    /// The signal cannot be sent, or the process outlives `timeout`.
    pub async fn sigterm_and_wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout).await
    }

    /// Waits for the process to exit, at most `timeout`.
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] (the process keeps running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => {
                self.status = Some(s);
                Ok(s)
            }
            Ok(Err(e)) => Err(HarnessError::io(format!("waiting for {}", self.label), e)),
            Err(_) => Err(HarnessError::Timeout {
                what: format!("{} to exit", self.label),
                after: timeout,
            }),
        }
    }

    /// The exit status if the process has exited (non-blocking).
    ///
    /// # Errors
    /// The status cannot be read.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| HarnessError::io(format!("polling {}", self.label), e))?;
        }
        Ok(self.status)
    }

    /// This run's stderr (the log file may hold earlier runs of the same label).
    pub fn stderr(&self) -> String {
        read_from(&self.stderr_path, self.stderr_offset)
    }

    /// The last `n` lines of this run's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// This run's stdout.
    pub fn stdout(&self) -> String {
        read_from(&self.stdout_path, self.stdout_offset)
    }

    /// The HTTP address, from the `mt5-hub: http listening on <addr>` line (waits for it).
    ///
    /// # Errors
    /// [`HarnessError::Timeout`] when the line does not appear in `timeout` (the stderr tail says
    /// why).
    pub async fn http_addr(&self, timeout: Duration) -> Result<SocketAddr> {
        const MARK: &str = "mt5-hub: http listening on ";
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = self.stderr().lines().find_map(|l| l.strip_prefix(MARK)) {
                return addr.trim().parse().map_err(|e| HarnessError::Parse {
                    what: format!("the HTTP address of {}", self.label),
                    detail: format!("{addr:?}: {e}"),
                });
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{} to listen: {}", self.label, self.stderr_tail(10)),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Scrapes `/metrics`.
    ///
    /// # Errors
    /// No HTTP address within 10 s, or the request fails.
    pub async fn metrics(&self) -> Result<Metrics> {
        let addr = self.http_addr(Duration::from_secs(10)).await?;
        let url = format!("http://{addr}/metrics");
        let http = |e: reqwest::Error| HarnessError::Http {
            url: url.clone(),
            detail: e.to_string(),
        };
        let text = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(http)?
            .get(&url)
            .send()
            .await
            .map_err(http)?
            .text()
            .await
            .map_err(http)?;
        Ok(Metrics(text))
    }
}

/// The text of `path` from byte `offset` (empty when unreadable: logs are best effort).
fn read_from(path: &Path, offset: u64) -> String {
    let all = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(offset).unwrap_or(0).min(all.len());
    String::from_utf8_lossy(&all[from..]).into_owned()
}

/// A Prometheus text exposition, with a small query helper.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub String);

impl Metrics {
    /// The sum of every sample of `name` whose labels include all of `labels`
    /// (`("kind", "dead")` matches `kind="dead"`); 0 when none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                if metric != name {
                    return None;
                }
                let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                all.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }
}

/// Polls `cond` every 50 ms until it returns `Some`, at most `timeout`.
///
/// # Errors
/// [`HarnessError::Timeout`] naming `what`; or the first error `cond` returns.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--version` lines give their features; a plain build none.
    #[test]
    fn features_are_read_from_the_version_line() {
        assert!(parse_features("mt5-hub 0.1.0\n").is_empty());
        assert_eq!(parse_features("mt5-hub 0.1.0 (features: chaos)\n"), vec!["chaos"]);
        assert_eq!(parse_features("mt5-hub 0.1.0 (features: a, b)"), vec!["a", "b"]);
    }

    /// `FAILPOINTS` and the poison flags need the chaos build; other spawns do not.
    #[test]
    fn hooks_are_needed_only_for_failpoints_and_poison() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(needs_hooks(&args(&["filter"]), &[("MT5_LOG", "info")]), None);
        assert_eq!(
            needs_hooks(&args(&["filter"]), &[("FAILPOINTS", "filter-delay=return(10)")]).as_deref(),
            Some("FAILPOINTS")
        );
        let load = Load::news(1.0, 1, PathBuf::from("/h")).with_poison(10, "BAD");
        assert_eq!(needs_hooks(&load.args("s"), &[]).as_deref(), Some("--poison-every"));
        assert_eq!(
            needs_hooks(&Load::news(1.0, 1, PathBuf::from("/h")).args("s"), &[]),
            None
        );
    }

    /// A test binary in `deps/` gives the profile dir above it.
    #[test]
    fn the_profile_dir_is_above_deps() {
        assert_eq!(
            profile_dir(Path::new("/t/debug/deps/x-123")),
            Some(PathBuf::from("/t/debug"))
        );
        assert_eq!(profile_dir(Path::new("/t/debug/x")), Some(PathBuf::from("/t/debug")));
    }

    /// Label filters select the samples to sum.
    #[test]
    fn metrics_are_summed_by_labels() {
        let m = Metrics(
            "# HELP x\nmt5_reclaimed_total{group=\"g\",kind=\"dead\",stream=\"s\"} 3\nmt5_reclaimed_total{group=\"g\",kind=\"idle\",stream=\"s\"} 2\nother 1\n"
                .into(),
        );
        assert_eq!(m.sum("mt5_reclaimed_total", &[]), 5.0);
        assert_eq!(m.sum("mt5_reclaimed_total", &[("kind", "dead")]), 3.0);
        assert_eq!(m.sum("other", &[]), 1.0);
        assert_eq!(m.sum("missing", &[]), 0.0);
    }

    /// The load's flags.
    #[test]
    fn a_load_turns_into_publish_flags() {
        let args = Load::news(100.0, 50, PathBuf::from("/h"))
            .with_idempotency_key_prefix("p")
            .with_poison(10, "BAD")
            .args("s");
        let s = args.join(" ");
        assert!(s.starts_with("publish --stream s --template news --rate 100 --count 50 --history /h"));
        assert!(s.contains("--idempotency-key-prefix p --poison-every 10 --poison-marker BAD"));
    }
}
