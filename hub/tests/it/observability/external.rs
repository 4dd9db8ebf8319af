//! The real monitoring stack for the live test: Prometheus, Alertmanager and redis_exporter
//! from Debian's packages, each on a free loopback port in a temp dir, killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A free loopback port (the fixtures' picker: never one this process handed out before).
pub(crate) fn free_port() -> u16 {
    mt5_fixtures::free_port().expect("a free loopback port")
}

/// Finds `name` on PATH or in the Debian locations; a clear message when it is missing.
pub(crate) fn binary(name: &str, package: &str) -> PathBuf {
    mt5_fixtures::find_binary(name).unwrap_or_else(|| {
        panic!("`{name}` not found: install Debian's {package} (`apt-get install {package}`; ci/test does)")
    })
}

/// One external server process with its log file.
pub(crate) struct External {
    pub(crate) name: &'static str,
    pub(crate) port: u16,
    child: Child,
    log: PathBuf,
}

impl External {
    /// Starts `program args` with stdout and stderr appended to `<dir>/<name>.log`.
    pub(crate) fn start(name: &'static str, program: &Path, args: &[String], dir: &Path, port: u16) -> External {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        External { name, port, child, log }
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until GET `path` answers 200 (at most `within`), or panics with the log.
    pub(crate) async fn wait_ready(&mut self, path: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let client = reqwest::Client::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log_tail());
            }
            let url = format!("{}{path}", self.base());
            if let Ok(r) = client.get(&url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url} within {within:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
