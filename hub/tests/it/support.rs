//! Running the binary against a fixture Redis.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use mt5_fixtures::RedisFixture;
use redis::aio::MultiplexedConnection;
use redis::Value;
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
        if k.starts_with("MT5_") {
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
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The sample config file.
pub(crate) fn sample_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/mt5-hub.toml")
        .display()
        .to_string()
}
