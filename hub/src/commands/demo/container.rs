//! The demo's Redis in a Docker container, for a machine with Docker but no `redis-server`: the
//! image `MT5_REDIS_IMAGE` (default `redis:7.0`), used when present locally and pulled
//! otherwise, published on a free loopback port that Docker picks, with persistence off.
//!
//! This is production code of the binary, so it drives the `docker` CLI itself (a few commands
//! through `tokio::process`) instead of using `mt5-fixtures`: the binary never depends on the
//! testbed, like the libraries.
//!
//! The container is started detached with `--rm`, a name of the demo's own
//! (`mt5-hub-demo-<pid>-<random>`) and the label `org.mt5-hub.demo` (value: the demo's pid).
//! The guard exists before `docker run` is called, and `docker run` itself is never cancelled
//! (killing the CLI would not stop the daemon from creating the container): so
//! [`RedisContainer::stop`] removes it when the demo ends, Ctrl-C included (the first signal
//! ends the demo through its cancellation token), and on any other way out (an error, a panic)
//! the guard's `Drop` runs `docker rm -f <name>`. Only a second Ctrl-C, which exits at once, or
//! a SIGKILL leave it running: `docker rm -f $(docker ps -q --filter label=org.mt5-hub.demo)`
//! removes such leftovers.

use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::local_redis::ping;
use crate::error::HubError;

/// The env var naming the image.
pub(crate) const REDIS_IMAGE_ENV: &str = "MT5_REDIS_IMAGE";
/// The image when `MT5_REDIS_IMAGE` is unset or empty.
pub(crate) const DEFAULT_REDIS_IMAGE: &str = "redis:7.0";
/// The label on the demo's containers (its value is the demo's pid).
pub(crate) const LABEL: &str = "org.mt5-hub.demo";
/// The port Redis listens on inside the container.
const CONTAINER_PORT: &str = "6379/tcp";

/// Quick docker commands (`version`, `image inspect`, `port`, `rm`).
const QUICK: Duration = Duration::from_secs(20);
/// `docker run -d` (creating the container; the image is there by then).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// `docker pull`.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a fresh container may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The image to run: `MT5_REDIS_IMAGE`, else `redis:7.0`.
pub(crate) fn redis_image(env_value: Option<&str>) -> String {
    env_value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_REDIS_IMAGE)
        .to_string()
}

/// Why Docker cannot give the demo a Redis.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// No docker CLI, or no daemon answering it.
    Docker(String),
    /// Docker answers, but the image is neither present nor pullable.
    Image(String),
}

/// A running Redis container; removed by [`RedisContainer::stop`] or, failing that, on drop.
#[derive(Debug)]
pub(crate) struct RedisContainer {
    /// The container's name (ours, so it can be removed even if `docker run` timed out).
    name: String,
    /// The loopback port Docker published `6379/tcp` on.
    port: u16,
    /// The image it runs.
    image: String,
    /// Set once it is removed, so `Drop` has nothing left to do.
    removed: bool,
}

impl RedisContainer {
    /// Whether the docker CLI is installed and its daemon answers.
    ///
    /// # Errors
    /// [`Unavailable::Docker`] saying which of the two is missing.
    pub(crate) async fn check_docker(cancel: &CancellationToken) -> Result<(), Unavailable> {
        docker(&["version", "--format", "{{.Server.Version}}"], QUICK, cancel)
            .await
            .map(drop)
            .map_err(Unavailable::Docker)
    }

    /// Makes sure `image` is present: `docker image inspect`, else `docker pull`. Returns
    /// whether it was pulled. `on_pull` runs before a pull (it takes a while).
    ///
    /// # Errors
    /// [`Unavailable::Image`] when it is neither present nor pullable.
    pub(crate) async fn ensure_image(
        image: &str,
        cancel: &CancellationToken,
        on_pull: impl FnOnce(),
    ) -> Result<bool, Unavailable> {
        if docker(&["image", "inspect", "--format", "{{.Id}}", image], QUICK, cancel)
            .await
            .is_ok()
        {
            return Ok(false);
        }
        on_pull();
        match docker(&["pull", "--quiet", image], PULL_TIMEOUT, cancel).await {
            Ok(_) => Ok(true),
            Err(pull) => Err(Unavailable::Image(format!(
                "the image `{image}` is not present locally and {pull}"
            ))),
        }
    }

    /// Starts `image` (present by now) detached on a free loopback port and waits until it
    /// answers `PING`.
    ///
    /// # Errors
    /// [`HubError::Failed`] when `docker run` fails or the server does not answer within 20 s
    /// (the container is removed then, with the tail of its log in the message).
    pub(crate) async fn start(image: &str, cancel: &CancellationToken) -> Result<RedisContainer, HubError> {
        let pid = std::process::id();
        let label = format!("{LABEL}={pid}");
        // The guard first: from here on every way out removes the container.
        let mut container = RedisContainer {
            name: format!("mt5-hub-demo-{pid}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            port: 0,
            image: image.to_string(),
            removed: false,
        };
        let args = [
            "run",
            "--detach",
            "--rm",
            "--name",
            &container.name,
            "--label",
            &label,
            "--publish",
            "127.0.0.1::6379",
            image,
            // The official image's entrypoint runs `redis-server …` as is; an image without an
            // entrypoint (ci/redis-image.sh's) finds it on PATH. Protected mode off: connections
            // arrive through Docker's port mapping, not from the container's loopback.
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ];
        // Not cancellable (see the module docs); a cancel is noticed right after.
        docker(&args, RUN_TIMEOUT, &CancellationToken::new())
            .await
            .map_err(|e| HubError::Failed(format!("could not start a Redis container of `{image}`: {e}")))?;
        if cancel.is_cancelled() {
            return Err(HubError::Failed("cancelled".into()));
        }
        let mapping = docker(&["port", &container.name, CONTAINER_PORT], QUICK, cancel)
            .await
            .map_err(|e| HubError::Failed(format!("cannot read the Redis container's port: {e}")))?;
        container.port = parse_port(&mapping).ok_or_else(|| {
            HubError::Failed(format!(
                "cannot read the Redis container's port from `docker port`: {mapping:?}"
            ))
        })?;
        container.wait_ready(cancel).await?;
        Ok(container)
    }

    async fn wait_ready(&self, cancel: &CancellationToken) -> Result<(), HubError> {
        let client = mt5_bus::Redis::from_url(&self.url())
            .map_err(|e| HubError::Failed(format!("bad local Redis URL {}: {e}", self.url())))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(&client).await {
                tracing::debug!(name = %self.name, port = self.port, "The demo's Redis container is up.");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let logs = docker(&["logs", "--tail", "5", &self.name], QUICK, cancel)
                    .await
                    .unwrap_or_default();
                return Err(HubError::Failed(format!(
                    "the Redis container of `{}` did not answer PING within {} s: {}",
                    self.image,
                    START_TIMEOUT.as_secs(),
                    logs.lines().collect::<Vec<_>>().join(" | ")
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = cancel.cancelled() => return Err(HubError::Failed("cancelled".into())),
            }
        }
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The image it runs.
    pub(crate) fn image(&self) -> &str {
        &self.image
    }

    /// Removes the container (`docker rm -f`; `--rm` would also remove it once stopped).
    pub(crate) async fn stop(mut self) {
        // Not cancellable: the demo is ending, possibly because of Ctrl-C, and the container
        // must go anyway.
        let never = CancellationToken::new();
        match docker(&["rm", "--force", &self.name], QUICK, &never).await {
            Ok(_) => self.removed = true,
            Err(e) => tracing::warn!(name = %self.name, error = %e, "Could not remove the demo's Redis container."),
        }
    }
}

impl Drop for RedisContainer {
    /// The guard for error paths: a blocking `docker rm -f` (a second or so, once).
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let out = std::process::Command::new("docker")
            .args(["rm", "--force", &self.name])
            .stdin(Stdio::null())
            .output();
        let gone = match &out {
            Ok(o) => o.status.success() || String::from_utf8_lossy(&o.stderr).contains("No such container"),
            Err(_) => false,
        };
        if !gone {
            eprintln!(
                "mt5-hub: could not remove the demo's Redis container: run `docker rm -f {}`",
                self.name
            );
        }
    }
}

/// The host port of `docker port` output such as `127.0.0.1:49153` (one line per binding; the
/// first that parses wins).
fn parse_port(mapping: &str) -> Option<u16> {
    mapping
        .lines()
        .filter_map(|l| l.trim().rsplit_once(':'))
        .find_map(|(_, port)| port.parse().ok())
}

/// Runs the `docker` CLI: its trimmed stdout, or a message naming the command and its error.
/// Cancelling (or the timeout) kills the command.
async fn docker(args: &[&str], timeout: Duration, cancel: &CancellationToken) -> Result<String, String> {
    let shown = format!("docker {}", args.join(" "));
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match with_timeout(timeout, cancel, cmd.output()).await {
        Waited::TimedOut => return Err(format!("`{shown}` did not finish within {} s", timeout.as_secs())),
        Waited::Cancelled => return Err(format!("`{shown}` was cancelled")),
        Waited::Done(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("the docker CLI is not installed".to_string())
        }
        Waited::Done(Err(e)) => return Err(format!("`{shown}` could not run: {e}")),
        Waited::Done(Ok(o)) => o,
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let why = if stderr.is_empty() {
            output.status.to_string()
        } else {
            stderr.lines().last().unwrap_or(stderr).to_string()
        };
        Err(format!("`{shown}` failed: {why}"))
    }
}

enum Waited<T> {
    Done(T),
    TimedOut,
    Cancelled,
}

async fn with_timeout<T>(timeout: Duration, cancel: &CancellationToken, fut: impl Future<Output = T>) -> Waited<T> {
    tokio::select! {
        r = tokio::time::timeout(timeout, fut) => r.map_or(Waited::TimedOut, Waited::Done),
        () = cancel.cancelled() => Waited::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `MT5_REDIS_IMAGE` wins when set; blank counts as unset.
    #[test]
    fn the_image_comes_from_the_env_or_defaults_to_redis_7_0() {
        assert_eq!(redis_image(None), "redis:7.0");
        assert_eq!(redis_image(Some("  ")), "redis:7.0");
        assert_eq!(redis_image(Some("mt5-redis:7.0.15-debian")), "mt5-redis:7.0.15-debian");
    }

    /// `docker port` prints `host:port` per binding (IPv6 ones in brackets).
    #[test]
    fn the_host_port_is_read_from_docker_port() {
        assert_eq!(parse_port("127.0.0.1:49153\n"), Some(49153));
        assert_eq!(parse_port("[::1]:32768"), Some(32768));
        assert_eq!(parse_port("garbage\n127.0.0.1:6000"), Some(6000));
        assert_eq!(parse_port(""), None);
    }

    /// Cancelling ends a docker command's wait at once (the command is killed on drop).
    #[tokio::test]
    async fn a_cancelled_wait_ends_at_once() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let waited = with_timeout(Duration::from_secs(5), &cancel, std::future::pending::<()>()).await;
        assert!(matches!(waited, Waited::Cancelled));
    }
}
