//! What the harness asks Redis: the group's lag and pending count (the drain's end), the
//! main thread's CPU time, stream lengths, blocked readers; and the reset between runs.

use std::time::{Duration, Instant};

use mt5_bus::reply::{int, items, pairs, text};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::{LoadError, Result};

/// Time from the start of one `XINFO GROUPS` poll of [`Poller::wait_drained`] to the start of
/// the next: the poller sleeps for what the poll left of it (a tokio timer would round a sleep
/// up to the next millisecond tick, so the poller runs on a thread of its own). On a loaded
/// machine the thread may wake later; the run reports the mean interval it achieved.
const POLL_INTERVAL: Duration = Duration::from_micros(900);

/// One group of `XINFO GROUPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GroupState {
    /// Entries delivered and not acknowledged.
    pub(crate) pending: u64,
    /// Entries not delivered yet; `None` when Redis cannot tell.
    pub(crate) lag: Option<u64>,
    /// Entries delivered to the group so far, when Redis can tell.
    pub(crate) entries_read: Option<u64>,
}

impl GroupState {
    /// Everything read and acknowledged.
    pub(crate) fn drained(&self) -> bool {
        self.pending == 0 && self.lag == Some(0)
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or_else(|| "nil".to_string(), |v| v.to_string());
        write!(
            f,
            "pending {}, lag {}, entries-read {}",
            self.pending,
            opt(self.lag),
            opt(self.entries_read)
        )
    }
}

/// `group` in an `XINFO GROUPS` reply.
pub(crate) fn group_state_of(reply: &Value, group: &str) -> Option<GroupState> {
    let count = |v: Option<&Value>| v.and_then(int).and_then(|i| u64::try_from(i).ok());
    items(reply).iter().map(pairs).find_map(|g| {
        (g.get("name").and_then(text).as_deref() == Some(group)).then(|| GroupState {
            pending: count(g.get("pending")).unwrap_or(0),
            lag: count(g.get("lag")),
            entries_read: count(g.get("entries-read")),
        })
    })
}

/// The state of `group` on `stream` (`None` when the group does not exist).
///
/// # Errors
/// The driver's error (also when the stream does not exist).
pub(crate) async fn group_state(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Result<Option<GroupState>> {
    let v: Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await?;
    Ok(group_state_of(&v, group))
}

/// `used_cpu_sys_main_thread + used_cpu_user_main_thread`, in seconds.
///
/// # Errors
/// The driver's error, or a Redis without these fields (before 6.2).
pub(crate) async fn main_thread_cpu_s(conn: &mut MultiplexedConnection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    main_thread_cpu_of(&info).ok_or_else(|| {
        LoadError::Run(format!(
            "INFO cpu has no used_cpu_*_main_thread (Redis 6.2 or newer needed): {info:?}"
        ))
    })
}

fn main_thread_cpu_of(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))?
            .parse()
            .ok()
    };
    Some(field("used_cpu_sys_main_thread")? + field("used_cpu_user_main_thread")?)
}

/// `redis_version` from `INFO server`.
///
/// # Errors
/// The driver's error.
pub(crate) async fn server_version(conn: &mut MultiplexedConnection) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_string())
}

/// `XLEN key`.
///
/// # Errors
/// The driver's error.
pub(crate) async fn xlen(conn: &mut MultiplexedConnection, key: &str) -> Result<u64> {
    Ok(redis::cmd("XLEN").arg(key).query_async(conn).await?)
}

/// Clients blocked in `XREADGROUP` right now (`CLIENT LIST`: `cmd=xreadgroup`, flag `b`).
///
/// # Errors
/// The driver's error.
pub(crate) async fn blocked_readers(conn: &mut MultiplexedConnection) -> Result<usize> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(conn).await?;
    Ok(list.lines().filter(|l| blocked_in_xreadgroup(l)).count())
}

fn blocked_in_xreadgroup(client_line: &str) -> bool {
    let field = |name: &str| {
        client_line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    field("cmd") == Some("xreadgroup") && field("flags").is_some_and(|f| f.contains('b'))
}

/// Ids of the clients named `name` whose last command is a blocking one (`XREADGROUP`, `BLPOP`):
/// a Python consumer that was told to stop wakes up at once when these are unblocked, instead
/// of after its 5 s `BLOCK`.
///
/// # Errors
/// The driver's error.
pub(crate) async fn blocked_client_ids(conn: &mut MultiplexedConnection, names: &[String]) -> Result<Vec<i64>> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(conn).await?;
    Ok(list
        .lines()
        .filter_map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            let named = field("name").is_some_and(|n| names.iter().any(|x| x == n));
            let blocking = matches!(field("cmd"), Some("xreadgroup" | "blpop"));
            if named && blocking {
                field("id")?.parse().ok()
            } else {
                None
            }
        })
        .collect())
}

/// Empties the server and compacts its AOF, so that every run starts from the same state and
/// no AOF rewrite started by an earlier run overlaps a measurement (as the reference benchmark's
/// `reset`); then lets the machine settle for half a second.
///
/// # Errors
/// The driver's error, or a rewrite still running after 120 s.
pub(crate) async fn reset(conn: &mut MultiplexedConnection) -> Result<()> {
    redis::cmd("FLUSHALL").arg("SYNC").query_async::<()>(conn).await?;
    // An error here means a rewrite is already running or scheduled: waited for below.
    let _ = redis::cmd("BGREWRITEAOF").query_async::<Value>(conn).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query_async(conn).await?;
        let busy = |f: &str| info.lines().any(|l| l.trim() == format!("{f}:1"));
        if !busy("aof_rewrite_in_progress") && !busy("aof_rewrite_scheduled") {
            break;
        }
        if Instant::now() >= deadline {
            return Err(LoadError::Run("the AOF rewrite did not finish within 120 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// When a drain ended, as the poller saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    /// From the start signal until the first poll that saw lag 0 and nothing pending.
    pub(crate) elapsed: Duration,
    /// `XINFO GROUPS` calls made meanwhile.
    pub(crate) polls: u64,
}

/// A connection of its own for timing a drain, made before the clock starts.
pub(crate) struct Poller {
    conn: redis::Connection,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller").finish_non_exhaustive()
    }
}

impl Poller {
    /// Connects to `url`.
    ///
    /// # Errors
    /// The driver's error.
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = tokio::task::spawn_blocking(move || client.get_connection())
            .await
            .map_err(|e| LoadError::Run(format!("the poller's thread: {e}")))??;
        Ok(Poller { conn })
    }

    /// Polls `XINFO GROUPS stream` every 0.9 ms on a thread of its own until `group` has
    /// lag 0 and nothing pending; the time is taken from `t0`.
    ///
    /// # Errors
    /// The driver's error, or [`LoadError::Run`] when the group is not drained by `timeout`.
    pub(crate) async fn wait_drained(
        mut self,
        stream: &str,
        group: &str,
        t0: Instant,
        timeout: Duration,
    ) -> Result<Drained> {
        let (stream, group) = (stream.to_string(), group.to_string());
        tokio::task::spawn_blocking(move || {
            let deadline = t0 + timeout;
            let mut polls = 0u64;
            let mut last = None;
            loop {
                let started = Instant::now();
                let v: Value = redis::cmd("XINFO").arg("GROUPS").arg(&stream).query(&mut self.conn)?;
                let now = Instant::now();
                polls += 1;
                let state = group_state_of(&v, &group);
                if state.is_some_and(|s| s.drained()) {
                    return Ok(Drained {
                        elapsed: now - t0,
                        polls,
                    });
                }
                last = state.or(last);
                if now >= deadline {
                    return Err(LoadError::Run(format!(
                        "group {group} on {stream} not drained after {timeout:?}: {}",
                        last.map_or_else(|| "no such group".to_string(), |s| s.to_string())
                    )));
                }
                if let Some(left) = (started + POLL_INTERVAL).checked_duration_since(Instant::now()) {
                    std::thread::sleep(left);
                }
            }
        })
        .await
        .map_err(|e| LoadError::Run(format!("the poller's thread: {e}")))?
    }

    /// The main-thread CPU one `XINFO GROUPS` poll costs Redis, in µs: `polls` polls of a
    /// one-group stream back to back, measured with `INFO cpu`. The drain's CPU figures include
    /// the harness's own polls; this says how much that is.
    ///
    /// # Errors
    /// The driver's error.
    pub(crate) async fn poll_cost_us(mut self, conn: &mut MultiplexedConnection, polls: u32) -> Result<f64> {
        const STREAM: &str = "drain:calibration";
        redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(STREAM)
            .arg("g")
            .arg("$")
            .arg("MKSTREAM")
            .query_async::<()>(conn)
            .await?;
        let before = main_thread_cpu_s(conn).await?;
        let (poller, result) = tokio::task::spawn_blocking(move || {
            let mut r = Ok(());
            for _ in 0..polls {
                if let Err(e) = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(STREAM)
                    .query::<Value>(&mut self.conn)
                {
                    r = Err(e);
                    break;
                }
            }
            (self, r)
        })
        .await
        .map_err(|e| LoadError::Run(format!("the poller's thread: {e}")))?;
        drop(poller);
        result?;
        let after = main_thread_cpu_s(conn).await?;
        redis::cmd("DEL").arg(STREAM).query_async::<()>(conn).await?;
        Ok((after - before) * 1e6 / f64::from(polls.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    /// XINFO GROUPS in RESP2: lag nil while Redis cannot tell, 0 when drained.
    #[test]
    fn the_group_is_found_by_name_and_nil_lag_is_not_drained() {
        let group = |name: &str, pending: i64, lag: Value| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                Value::Int(2),
                bulk("pending"),
                Value::Int(pending),
                bulk("last-delivered-id"),
                bulk("1-0"),
                bulk("entries-read"),
                Value::Int(10),
                bulk("lag"),
                lag,
            ])
        };
        let reply = Value::Array(vec![group("other", 0, Value::Int(0)), group("g", 0, Value::Nil)]);
        let g = group_state_of(&reply, "g").unwrap();
        assert_eq!(g.lag, None);
        assert!(!g.drained());
        let reply = Value::Array(vec![group("g", 3, Value::Int(0))]);
        assert!(!group_state_of(&reply, "g").unwrap().drained());
        let reply = Value::Array(vec![group("g", 0, Value::Int(0))]);
        assert!(group_state_of(&reply, "g").unwrap().drained());
        assert_eq!(group_state_of(&reply, "missing"), None);
    }

    /// The main thread's user + sys seconds, not the whole process's.
    #[test]
    fn main_thread_cpu_adds_user_and_sys() {
        let info = "# CPU\r\nused_cpu_sys:9.0\r\nused_cpu_user:9.0\r\nused_cpu_sys_main_thread:1.25\r\nused_cpu_user_main_thread:2.5\r\n";
        assert_eq!(main_thread_cpu_of(info), Some(3.75));
        assert_eq!(main_thread_cpu_of("used_cpu_sys:1.0\r\n"), None);
    }

    /// Only clients blocked right now in XREADGROUP count.
    #[test]
    fn blocked_readers_are_xreadgroup_clients_with_flag_b() {
        assert!(blocked_in_xreadgroup(
            "id=7 addr=127.0.0.1:1 name= age=1 idle=0 flags=b db=0 cmd=xreadgroup user=default"
        ));
        assert!(!blocked_in_xreadgroup(
            "id=7 addr=127.0.0.1:1 name= age=1 idle=0 flags=N db=0 cmd=xreadgroup user=default"
        ));
        assert!(!blocked_in_xreadgroup(
            "id=8 addr=127.0.0.1:1 name= age=1 idle=0 flags=b db=0 cmd=blpop user=default"
        ));
    }
}
