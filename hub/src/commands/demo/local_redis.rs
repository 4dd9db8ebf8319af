//! The demo's own Redis as a process: a `redis-server` child on a free loopback port in a
//! temporary directory, used when the user configured no Redis URL and a `redis-server` binary is
//! there (`MT5_REDIS_SERVER`, else on `PATH` or in the usual system directories).
//!
//! Persistence is off (`--save '' --appendonly no`): the demo's data is thrown away with the
//! directory. The child is killed and the directory removed by [`LocalRedis::stop`]; on any
//! other way out (an error, a panic, Ctrl-C unwinding the command) `kill_on_drop` and the
//! `TempDir` guard do the same. Ctrl-C in a terminal also reaches the child directly (same
//! process group), and Redis exits on SIGINT.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::CONFIG_ENV;
use crate::error::HubError;

/// Where `redis-server` is looked for after `PATH`.
const SEARCH_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/local/bin"];
/// The env var naming the `redis-server` (or `valkey-server`) binary; `none` hides it.
pub(crate) const REDIS_SERVER_ENV: &str = "MT5_REDIS_SERVER";
/// The `MT5_REDIS_SERVER` value that hides every `redis-server` (the demo then uses Docker).
const HIDDEN: &str = "none";
/// How long a fresh server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the chosen one was taken between probing and binding.
const START_ATTEMPTS: usize = 3;

/// Whether the user chose a Redis: `MT5_REDIS_URL` or `MT5_REDIS__URL` set, or `redis.url` in
/// the config file (`config_path`, else `MT5_CONFIG`). Only then does the demo use that Redis;
/// the default URL alone does not count.
///
/// A config file that cannot be read or parsed counts as "not set" here: loading the config
/// has already reported it.
pub(crate) fn redis_url_configured(config_path: Option<&Path>, env: &[(String, String)]) -> bool {
    let set = |name: &str| env.iter().any(|(k, v)| k == name && !v.trim().is_empty());
    if set("MT5_REDIS_URL") || set("MT5_REDIS__URL") {
        return true;
    }
    let path: Option<PathBuf> = config_path.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, v)| k == CONFIG_ENV && !v.trim().is_empty())
            .map(|(_, v)| PathBuf::from(v))
    });
    let Some(path) = path else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return false;
    };
    toml::from_str::<toml::Value>(&text)
        .ok()
        .and_then(|v| v.get("redis")?.get("url").cloned())
        .is_some()
}

/// Finds the binary `name` on `PATH` or in the usual system directories.
fn find_binary(name: &str, path_var: Option<&str>) -> Option<PathBuf> {
    let from_path = path_var
        .into_iter()
        .flat_map(|p| std::env::split_paths(p).collect::<Vec<_>>());
    from_path
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The `redis-server` the demo may start: `MT5_REDIS_SERVER` (`server_var`) when set (`none`:
/// none; a path; or a name looked up like `redis-server`), else `redis-server` on `PATH` or in
/// /usr/bin, /usr/sbin, /usr/local/bin. `Ok(None)` when there is none to start.
///
/// # Errors
/// [`HubError::Usage`] when `MT5_REDIS_SERVER` names a binary that does not exist: the user
/// asked for that one, so the demo does not quietly take another Redis.
pub(crate) fn redis_server(server_var: Option<&str>, path_var: Option<&str>) -> Result<Option<PathBuf>, HubError> {
    let named = server_var.map(str::trim).filter(|v| !v.is_empty());
    match named {
        None => Ok(find_binary("redis-server", path_var)),
        Some(v) if v.eq_ignore_ascii_case(HIDDEN) => Ok(None),
        Some(v) => {
            let found = if v.contains(std::path::MAIN_SEPARATOR) {
                Some(PathBuf::from(v)).filter(|p| p.is_file())
            } else {
                find_binary(v, path_var)
            };
            found.map(Some).ok_or_else(|| {
                HubError::Usage(format!(
                    "{REDIS_SERVER_ENV}={v}: no such binary (give a path or a name on PATH, or `none` to use Docker)"
                ))
            })
        }
    }
}

/// A running `redis-server` child and its directory.
#[derive(Debug)]
pub(crate) struct LocalRedis {
    /// `kill_on_drop`: dropping the guard on an error path still ends the server.
    child: Child,
    port: u16,
    /// Removed on drop, after the child is gone.
    dir: TempDir,
}

impl LocalRedis {
    /// Starts `binary` on a free loopback port and waits until it answers `PING`.
    ///
    /// # Errors
    /// [`HubError::Failed`] when the server cannot start or does not answer within 10 s;
    /// [`HubError::Io`] for the temporary directory.
    pub(crate) async fn start(binary: &Path, cancel: &CancellationToken) -> Result<LocalRedis, HubError> {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(binary, cancel).await {
                Ok(redis) => return Ok(redis),
                Err(StartError::Fatal(e)) => return Err(e),
                Err(StartError::Retry(msg)) => last_error = msg,
            }
        }
        Err(HubError::Failed(format!(
            "could not start a local redis-server ({}): {last_error}",
            binary.display()
        )))
    }

    async fn start_once(binary: &Path, cancel: &CancellationToken) -> Result<LocalRedis, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("mt5-hub-demo-redis-")
            .tempdir()
            .map_err(|e| StartError::Fatal(HubError::io("creating a temporary directory for redis-server", e)))?;
        let port = free_port().map_err(|e| StartError::Fatal(HubError::io("finding a free local port", e)))?;
        let log = dir.path().join("redis.log");
        let mut child = Command::new(binary)
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| StartError::Fatal(HubError::io(format!("starting {}", binary.display()), e)))?;
        let url = format!("redis://127.0.0.1:{port}");
        let client = mt5_bus::Redis::from_url(&url)
            .map_err(|e| StartError::Fatal(HubError::Failed(format!("bad local Redis URL {url}: {e}"))))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(3).collect();
                return Err(StartError::Retry(format!(
                    "redis-server exited with {status}: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            if ping(&client).await {
                tracing::debug!(port, dir = %dir.path().display(), "The demo's redis-server is up.");
                return Ok(LocalRedis { child, port, dir });
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(StartError::Retry("it did not answer PING within 10 s".into()));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(25)) => {}
                () = cancel.cancelled() => {
                    let _ = child.kill().await;
                    return Err(StartError::Fatal(HubError::Failed("cancelled".into())));
                }
            }
        }
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server, waits for it to exit, then removes its directory.
    pub(crate) async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "Could not stop the demo's redis-server.");
        }
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            tracing::warn!(dir = %path.display(), error = %e, "Could not remove the demo's Redis directory.");
        }
    }
}

enum StartError {
    /// Not worth another attempt.
    Fatal(HubError),
    /// The port may have been taken meanwhile: try another.
    Retry(String),
}

/// Whether the server answers `PING` within 500 ms.
pub(super) async fn ping(client: &mt5_bus::Redis) -> bool {
    let attempt = async {
        let mut conn = client.connect().await?;
        mt5_bus::query::ping(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(_))
    )
}

/// A loopback port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Only an explicit URL counts: the env names, or `redis.url` in the file.
    #[test]
    fn a_redis_url_counts_as_configured_only_when_set_explicitly() {
        assert!(!redis_url_configured(None, &env(&[("PATH", "/bin")])));
        assert!(redis_url_configured(None, &env(&[("MT5_REDIS_URL", "redis://h:1")])));
        assert!(redis_url_configured(None, &env(&[("MT5_REDIS__URL", "redis://h:1")])));
        assert!(!redis_url_configured(None, &env(&[("MT5_REDIS_URL", " ")])));

        let dir = tempfile::tempdir().unwrap();
        let with_url = dir.path().join("with.toml");
        std::fs::write(&with_url, "[redis]\nurl = \"redis://h:2\"\n").unwrap();
        let without_url = dir.path().join("without.toml");
        std::fs::write(&without_url, "[redis]\nconnect_timeout_ms = 100\n").unwrap();
        assert!(redis_url_configured(Some(&with_url), &[]));
        assert!(!redis_url_configured(Some(&without_url), &[]));
        let via_env = env(&[(CONFIG_ENV, with_url.to_str().unwrap())]);
        assert!(redis_url_configured(None, &via_env));
    }

    /// `redis-server` is found on the given PATH before the system directories.
    #[test]
    fn redis_server_is_looked_up_on_path_first() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("redis-server");
        std::fs::write(&fake, "").unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        assert_eq!(redis_server(None, Some(&path)).unwrap(), Some(fake.clone()));
        assert_eq!(redis_server(Some(" "), Some(&path)).unwrap(), Some(fake));
    }

    /// `MT5_REDIS_SERVER`: `none` hides every server; a path or a name picks that binary; one
    /// that does not exist is a usage error, not a quiet fallback.
    #[test]
    fn mt5_redis_server_names_or_hides_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["redis-server", "valkey-server"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let path = dir.path().to_str().unwrap().to_string();
        assert_eq!(redis_server(Some("none"), Some(&path)).unwrap(), None);
        assert_eq!(redis_server(Some("NONE"), Some(&path)).unwrap(), None);
        assert_eq!(
            redis_server(Some("valkey-server"), Some(&path)).unwrap(),
            Some(dir.path().join("valkey-server"))
        );
        let full = dir.path().join("valkey-server");
        assert_eq!(redis_server(full.to_str(), None).unwrap(), Some(full.clone()));
        let err = redis_server(Some("/nowhere/redis-server"), Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("MT5_REDIS_SERVER=/nowhere/redis-server"),
            "{err}"
        );
        assert!(matches!(err, HubError::Usage(_)));
        assert!(redis_server(Some("no-such-server-binary"), Some(&path)).is_err());
    }
}
