//! Running the binary against a fixture Redis.

use mt5_fixtures::redis;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use mt5_fixtures::redis::aio::MultiplexedConnection;
use mt5_fixtures::redis::Value;
use mt5_fixtures::RedisFixture;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mt5-hub");
/// The configured group name of tests.
pub(crate) const GROUP: &str = "g";

/// What a finished run printed and returned.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    fn from_output(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts the exit code.
    #[track_caller]
    pub(crate) fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code, expected,
            "unexpected exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// stdout as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// A command line for the binary with a clean `MT5_*` environment plus `env`.
pub(crate) fn command(env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("MT5_") || k == "EODHD_API_KEY" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("MT5_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion (at most 60 s).
pub(crate) async fn run_with(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = command(env, args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("the mt5-hub binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).await.expect("writing stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("mt5-hub {args:?} did not finish within 60 s"))
        .expect("waiting for mt5-hub");
    Run::from_output(out)
}

/// One test's Redis and stream names.
pub(crate) struct Hub {
    pub(crate) fx: RedisFixture,
    /// The group's input stream.
    pub(crate) input: String,
    /// The dead letter stream.
    pub(crate) dlq: String,
    /// A stream with no group.
    pub(crate) other: String,
    pub(crate) env: Vec<(String, String)>,
}

impl Hub {
    /// Starts a Redis and configures the binary for it through env overrides.
    pub(crate) async fn start() -> Hub {
        let fx = RedisFixture::start()
            .await
            .unwrap_or_else(|e| panic!("a Redis fixture is needed: {e}"));
        let p = fx.prefix();
        let (input, dlq, other) = (format!("{p}:in"), format!("{p}:dlq"), format!("{p}:other"));
        let env = vec![
            ("MT5_REDIS_URL".to_string(), fx.url()),
            ("MT5_BUS__DEADLETTER_STREAM".to_string(), dlq.clone()),
            (
                "MT5_BUS__GROUPS".to_string(),
                format!(r#"[{{stream = "{input}", group = "{GROUP}"}}]"#),
            ),
            ("MT5_BUS__RETRY__INITIAL_MS".to_string(), "20".to_string()),
            ("MT5_BUS__RETRY__MAX_MS".to_string(), "200".to_string()),
            ("MT5_BUS__RETRY__MAX_ATTEMPTS".to_string(), "4".to_string()),
        ];
        Hub {
            fx,
            input,
            dlq,
            other,
            env,
        }
    }

    /// Runs the binary with this hub's env.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        run_with(&self.env, args, None).await
    }

    /// Runs the binary with `stdin` as its input.
    pub(crate) async fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run_with(&self.env, args, Some(stdin)).await
    }

    /// Starts the binary without waiting.
    pub(crate) fn spawn(&self, args: &[&str]) -> Child {
        command(&self.env, args).spawn().expect("the mt5-hub binary starts")
    }

    pub(crate) async fn conn(&self) -> MultiplexedConnection {
        self.fx.connection().await
    }

    /// Waits (at most 20 s) until some client of this Redis is running `command` (lower case,
    /// as `CLIENT LIST` shows it), e.g. a tail blocked in `xread`.
    pub(crate) async fn wait_for_command(&self, command: &str) {
        let needle = format!("cmd={command}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut self.conn().await)
                .await
                .unwrap();
            if list.lines().any(|l| l.split(' ').any(|f| f == needle)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no client ran {command} within 20 s:\n{list}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn xlen(&self, stream: &str) -> u64 {
        redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }

    /// Every entry of a stream as (entry id, fields).
    pub(crate) async fn entries(&self, stream: &str) -> Vec<(String, HashMap<String, String>)> {
        let v: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn().await)
            .await
            .unwrap();
        let Value::Array(entries) = v else {
            return Vec::new();
        };
        entries
            .into_iter()
            .map(|e| {
                let Value::Array(parts) = e else {
                    panic!("entry is not an array")
                };
                let id: String = redis::from_redis_value(parts[0].clone()).unwrap();
                let fields: HashMap<String, String> = redis::from_redis_value(parts[1].clone()).unwrap();
                (id, fields)
            })
            .collect()
    }

    /// Writes a dead letter the way the bus does (original fields plus the `dlq_*` fields).
    pub(crate) async fn add_dead_letter(&self, event_id: &str, reason: &str, from_stream: &str) -> String {
        redis::cmd("XADD")
            .arg(&self.dlq)
            .arg("*")
            .arg(&[
                ("specversion", "1.0"),
                ("id", event_id),
                ("source", "test"),
                ("type", "test.v1"),
                ("time", "2026-01-01T00:00:00.000Z"),
                ("datacontenttype", "application/json"),
                ("data", r#"{"n":1}"#),
                ("dlq_stream", from_stream),
                ("dlq_entry_id", "1-0"),
                ("dlq_group", GROUP),
                ("dlq_consumer", "c1"),
                ("dlq_deliveries", "3"),
                ("dlq_reason", reason),
                ("dlq_error", "scripted failure"),
                ("dlq_time", "2026-01-01T00:00:01.000Z"),
            ])
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }
}

/// A loopback port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    mt5_fixtures::free_port().unwrap()
}

/// The sample config file.
pub(crate) fn sample_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/mt5-hub.toml")
        .display()
        .to_string()
}

/// A long-running command (`filter`, `fetch`, `run`) started with `MT5_HTTP_ADDR=127.0.0.1:0`:
/// the child, the HTTP address it printed, and its stderr so far (for failure messages).
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) addr: std::net::SocketAddr,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Service {
    /// Starts the binary with `env` plus a free HTTP port and waits (at most 20 s) for its
    /// `mt5-hub: http listening on <addr>` line.
    pub(crate) async fn start(env: &[(String, String)], args: &[&str]) -> Service {
        use tokio::io::AsyncBufReadExt;
        let mut env = env.to_vec();
        env.push(("MT5_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()));
        let mut child = command(&env, args).spawn().expect("the mt5-hub binary starts");
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let buf = stderr.clone();
        // Keeps draining stderr so the child never blocks on a full pipe.
        let reader = tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("mt5-hub: http listening on ") {
                    if let (Some(tx), Ok(addr)) = (tx.take(), addr.trim().parse()) {
                        let _ = tx.send(addr);
                    }
                }
                buf.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "mt5-hub {args:?} did not print its HTTP address within 20 s; stderr:\n{}",
                stderr.lock().unwrap()
            ),
        };
        Service {
            child,
            addr,
            stderr,
            reader,
        }
    }

    /// `http://<addr><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: status and body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(self.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nstderr:\n{}", self.stderr()));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Polls GET `path` (at most `within`) until `ok(status, body)`; returns the last answer.
    pub(crate) async fn wait_for(&self, path: &str, within: Duration, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let (status, body) = self.get(path).await;
            if ok(status, &body) {
                return (status, body);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "GET {path} still answers {status} after {within:?}: {body}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the child wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit; returns the exit code and stdout.
    pub(crate) async fn terminate(mut self, within: Duration) -> (i32, String) {
        let pid = self.child.id().expect("the child is running").to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(s) => s.unwrap(),
            Err(_) => panic!("no exit within {within:?} of SIGTERM; stderr:\n{}", self.stderr()),
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use tokio::io::AsyncReadExt;
            let _ = out.read_to_string(&mut stdout).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status.code().unwrap_or(-1), stdout)
    }
}

impl Hub {
    /// Env for the news commands: the fetcher publishes to the group's input stream, the filter
    /// reads it and writes [`Hub::filtered`], cursors under the input's name, EODHD is `mock`.
    pub(crate) fn news_env(&self, mock: &mt5_fixtures::MockEodhd) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            [
                ("MT5_EODHD_BASE_URL", mock.uri()),
                ("EODHD_API_KEY", mock.key()),
                ("MT5_NEWS__EODHD__RETRY__INITIAL_MS", "10".to_string()),
                ("MT5_NEWS__EODHD__RETRY__MAX_MS", "50".to_string()),
                ("MT5_NEWS__FETCHER__STREAM", self.input.clone()),
                ("MT5_NEWS__FETCHER__CURSOR_PREFIX", format!("{}:cursor", self.input)),
                // The samples span about 57 hours before now.
                ("MT5_NEWS__FETCHER__LOOKBACK_DAYS", "3".to_string()),
                ("MT5_NEWS__FILTER__INPUT_STREAM", self.input.clone()),
                ("MT5_NEWS__FILTER__GROUP", GROUP.to_string()),
                ("MT5_NEWS__FILTER__OUTPUT_STREAM", self.filtered()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        env
    }

    /// The filter's output stream of [`Hub::news_env`] (the fixture's `prefix()` is new on
    /// every call, so it is derived from the input stream's).
    pub(crate) fn filtered(&self) -> String {
        format!("{}:filtered", self.input)
    }
}
