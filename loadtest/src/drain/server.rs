//! The comparison's own `redis-server`: a child on a free loopback port in a temporary
//! directory, with the reference benchmark's settings (`python_ref/redis_server.py`).
//!
//! Not `mt5-fixtures`'s `RedisFixture` (the test suite's server: its own settings, ports and
//! cleanup) and not the hub's demo server (private to the binary): the few lines are here. What
//! the harness asks this server besides streams (`INFO`, `CLIENT`, `FLUSHALL`, ...) goes through
//! `mt5_fixtures::admin`. The child is `kill_on_drop`, so every way out of a
//! run (an error, a panic, a signal handled by `main`) ends the server; [`PrivateRedis::stop`]
//! is the ordinary one.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mt5_bus::{Redis, RedisConfig};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::{LoadError, Result};

/// Env var naming the `redis-server` binary; `redis-server` on `PATH` without it.
pub const ENV_REDIS_SERVER: &str = "MT5_REDIS_SERVER";

/// The reference benchmark's server settings, as `redis-server` arguments.
pub const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("appendonly", "yes"),
    ("appendfsync", "everysec"),
    ("stream-node-max-bytes", "8192"),
    ("stream-node-max-entries", "200"),
    ("save", ""),
];

/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one start-up probe may take to connect, and then to get its `PING` answered.
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// Ports tried when the chosen one is taken between picking it and Redis binding it.
const PORT_ATTEMPTS: usize = 5;

/// A running private `redis-server`.
#[derive(Debug)]
pub(crate) struct PrivateRedis {
    /// `kill_on_drop`: dropping the guard on an error path still ends the server.
    child: Child,
    url: String,
    /// Holds the AOF and `redis.log`; removed on drop, after the child.
    _dir: TempDir,
}

impl PrivateRedis {
    /// The binary: `MT5_REDIS_SERVER`, else `redis-server` (looked up on `PATH`).
    pub(crate) fn binary() -> OsString {
        std::env::var_os(ENV_REDIS_SERVER)
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "redis-server".into())
    }

    /// Starts `binary` on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    /// [`LoadError::Setup`]: the binary is missing, exits at once, or does not answer in 10 s.
    pub(crate) async fn start(binary: &OsString) -> Result<Self> {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match Self::start_once(binary).await {
                Ok(r) => return Ok(r),
                Err(Start::Fatal(e)) => return Err(e),
                Err(Start::PortTaken(msg)) => last = msg,
            }
        }
        Err(LoadError::Setup(format!(
            "redis-server ({}) did not start: {last}",
            binary.to_string_lossy()
        )))
    }

    async fn start_once(binary: &OsString) -> std::result::Result<Self, Start> {
        let fatal = |e: String| Start::Fatal(LoadError::Setup(e));
        let dir = tempfile::Builder::new()
            .prefix("mt5-drain-redis-")
            .tempdir()
            .map_err(|e| fatal(format!("creating a temporary directory for redis-server: {e}")))?;
        let port = mt5_fixtures::free_port().map_err(|e| fatal(format!("finding a free loopback port: {e}")))?;
        let log = dir.path().join("redis.log");
        let mut cmd = Command::new(binary);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log);
        for (key, value) in SERVER_SETTINGS {
            cmd.arg(format!("--{key}")).arg(value);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                fatal(format!(
                    "starting {}: {e} (install redis-server 7.x, e.g. `apt-get install redis-server`, or set {ENV_REDIS_SERVER})",
                    binary.to_string_lossy()
                ))
            })?;
        let url = format!("redis://127.0.0.1:{port}");
        let mut cfg = RedisConfig::default().with_url(&url);
        cfg.connect_timeout_ms = PING_TIMEOUT.as_millis() as u64;
        cfg.response_timeout_ms = PING_TIMEOUT.as_millis() as u64;
        let client = Redis::new(&cfg).map_err(|e| fatal(format!("bad Redis URL {url}: {e}")))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&log, 5);
                return Err(if tail.contains("Address already in use") {
                    Start::PortTaken(tail)
                } else {
                    fatal(format!("redis-server exited with {status}: {tail}"))
                });
            }
            if ping(&client).await {
                tracing::debug!(port, dir = %dir.path().display(), "The drain's redis-server is up.");
                return Ok(PrivateRedis { child, url, _dir: dir });
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(fatal(format!(
                    "redis-server did not answer PING within {START_TIMEOUT:?}: {}",
                    log_tail(&log, 5)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Kills the server (its data is thrown away) and reaps it.
    pub(crate) async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "Cannot kill the drain's redis-server.");
        }
    }
}

enum Start {
    /// Another process took the port first: try another one.
    PortTaken(String),
    Fatal(LoadError),
}

/// Whether the server answers `PING` (connecting and answering within [`PING_TIMEOUT`] each).
async fn ping(client: &Redis) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(PING_TIMEOUT, client.connect()).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(PING_TIMEOUT, mt5_bus::query::ping(&mut conn)).await,
        Ok(Ok(()))
    )
}

/// The last `n` lines of `path`, joined with ` | ` (empty when unreadable).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
