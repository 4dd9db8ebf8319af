//! A consumer process of either side: spawned with its output in a log file, killed when
//! dropped, its peak RSS read from `/proc`, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{LoadError, Result};

/// A spawned child. Killed (SIGKILL) when dropped, so an error path leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Proc {
    label: String,
    child: Child,
    pid: i32,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr both in `log` (created anew).
    ///
    /// # Errors
    /// [`LoadError::Setup`]: the log cannot be created or the program not started.
    pub(crate) fn spawn(label: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let setup = |what: &str, e: std::io::Error| LoadError::Setup(format!("{what} ({label}): {e}"));
        let out = std::fs::File::create(log).map_err(|e| setup(&format!("creating {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| setup("opening the log twice", e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| setup("spawning", e))?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| LoadError::Setup(format!("{label} has no pid")))?;
        Ok(Proc {
            label: label.to_string(),
            child,
            pid,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// The label (the consumer name).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The process's output so far.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the output.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its peak resident set size in KiB (`VmHWM` of `/proc/<pid>/status`).
    ///
    /// # Errors
    /// [`LoadError::Run`]: the file cannot be read (the process is gone) or has no `VmHWM`.
    pub(crate) fn peak_rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .map_err(|e| LoadError::Run(format!("reading {path} ({}): {e}", self.label)))?;
        vm_hwm_kib(&status).ok_or_else(|| LoadError::Run(format!("no VmHWM in {path} ({})", self.label)))
    }

    /// CPU time (user + system, every thread) the process has used so far, seconds, from
    /// `/proc/<pid>/stat` (in USER_HZ ticks, 100 a second on Linux: 10 ms resolution).
    ///
    /// # Errors
    /// [`LoadError::Run`]: the file cannot be read (the process is gone) or parsed.
    pub(crate) fn cpu_s(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path)
            .map_err(|e| LoadError::Run(format!("reading {path} ({}): {e}", self.label)))?;
        cpu_ticks(&stat)
            .map(|t| t as f64 / USER_HZ)
            .ok_or_else(|| LoadError::Run(format!("cannot parse {path} ({}): {stat:?}", self.label)))
    }

    /// The exit status when the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// An error when the process has exited already: it was meant to be running.
    ///
    /// # Errors
    /// [`LoadError::Run`] with its exit status and the tail of its output.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(s) => Err(LoadError::Run(format!(
                "{} exited early with {s}:\n{}",
                self.label,
                self.log_tail(15)
            ))),
        }
    }

    /// Sends SIGTERM (nothing when it has exited already).
    ///
    /// # Errors
    /// [`LoadError::Run`]: the signal cannot be sent.
    pub(crate) fn sigterm(&mut self) -> Result<()> {
        if self.exited().is_some() {
            return Ok(());
        }
        match kill(Pid::from_raw(self.pid), Signal::SIGTERM) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(LoadError::Run(format!(
                "cannot SIGTERM {} (pid {}): {e}",
                self.label, self.pid
            ))),
        }
    }

    /// Waits up to `timeout` for the exit; kills the process when it outlives it.
    ///
    /// # Errors
    /// [`LoadError::Run`]: it had to be killed, or waiting failed.
    pub(crate) async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(s)) => {
                self.status = Some(s);
                Ok(s)
            }
            Ok(Err(e)) => Err(LoadError::Run(format!("waiting for {}: {e}", self.label))),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(LoadError::Run(format!(
                    "{} did not exit within {timeout:?} of SIGTERM and was killed:\n{}",
                    self.label,
                    self.log_tail(15)
                )))
            }
        }
    }
}

/// Clock ticks a second of `/proc/<pid>/stat` (USER_HZ, 100 on every Linux architecture we
/// build for).
const USER_HZ: f64 = 100.0;

/// `utime + stime` in ticks from the text of `/proc/<pid>/stat` (fields 14 and 15; the command
/// name in field 2 may hold spaces and parentheses, so counting starts after its last `)`).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state): utime is field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// `VmHWM` in KiB from the text of `/proc/<pid>/status`.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peak RSS is VmHWM's figure in kB, not VmRSS.
    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let status = "Name:\tpython3\nVmPeak:\t  300000 kB\nVmHWM:\t   45312 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(45312));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
    }

    /// utime and stime are counted after the command name, whatever it holds.
    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let stat = "4242 (tokio (rt) x) S 1 2 3 0 -1 4194304 125 0 0 0 250 40 0 0 20 0 9 0 238871 3133440 413";
        assert_eq!(cpu_ticks(stat), Some(290));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
    }

    /// The running test process has a VmHWM.
    #[test]
    fn the_own_process_has_a_peak_rss() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_hwm_kib(&status).unwrap() > 0);
    }
}
