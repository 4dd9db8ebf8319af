//! What the harness asks Redis: the group's lag and pending count (the drain's end), the
//! main thread's CPU time, stream lengths, blocked readers; and the reset between runs. Streams
//! and groups go through the bus (`mt5_bus::query`, `stats`, `group`); server administration and
//! measurement (`INFO`, `CLIENT LIST`, `FLUSHALL`, AOF rewrites, the poller's blocking
//! `XINFO GROUPS`) through `mt5_fixtures::admin`.

use std::time::{Duration, Instant};

use mt5_bus::{group, query, stats, Connection};
use mt5_fixtures::admin::{Admin, BlockingAdmin, ClientInfo, GroupInfo};

use crate::{LoadError, Result};

/// Time from the start of one `XINFO GROUPS` poll of [`Poller::wait_drained`] to the start of
/// the next: the poller sleeps for what the poll left of it (a tokio timer would round a sleep
/// up to the next millisecond tick, so the poller runs on a thread of its own, on a blocking
/// connection). On a loaded machine the thread may wake later; the run reports the mean
/// interval it achieved.
const POLL_INTERVAL: Duration = Duration::from_micros(900);
/// How long the reset waits for the AOF rewrite.
const REWRITE_TIMEOUT: Duration = Duration::from_secs(120);

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

impl From<&GroupInfo> for GroupState {
    fn from(g: &GroupInfo) -> Self {
        GroupState {
            pending: g.pending,
            lag: g.lag,
            entries_read: g.entries_read,
        }
    }
}

impl From<&stats::GroupStats> for GroupState {
    fn from(g: &stats::GroupStats) -> Self {
        GroupState {
            pending: g.pending,
            lag: g.lag,
            entries_read: g.entries_read,
        }
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

/// `group` among the groups of an `XINFO GROUPS`.
pub(crate) fn group_state_of(groups: &[GroupInfo], group: &str) -> Option<GroupState> {
    groups.iter().find(|g| g.name == group).map(GroupState::from)
}

/// The state of `group` on `stream` (`None` when the group or the stream does not exist).
///
/// # Errors
/// The bus's error.
pub(crate) async fn group_state(bus: &mut Connection, stream: &str, group: &str) -> Result<Option<GroupState>> {
    let s = stats::stream_stats(bus, stream).await?;
    Ok(s.groups.iter().find(|g| g.name == group).map(GroupState::from))
}

/// `used_cpu_sys_main_thread + used_cpu_user_main_thread`, in seconds.
///
/// # Errors
/// The admin's error, also for a Redis without these fields (before 6.2).
pub(crate) async fn main_thread_cpu_s(admin: &mut Admin) -> Result<f64> {
    Ok(admin.used_cpu_main_thread().await?)
}

/// `redis_version` from `INFO server`.
///
/// # Errors
/// The admin's error.
pub(crate) async fn server_version(admin: &mut Admin) -> Result<String> {
    Ok(admin.server_version().await?)
}

/// The length of `stream` (0 when it does not exist).
///
/// # Errors
/// The bus's error.
pub(crate) async fn xlen(bus: &mut Connection, stream: &str) -> Result<u64> {
    Ok(query::len(bus, stream).await?)
}

/// Clients blocked in `XREADGROUP` right now (`CLIENT LIST`: `cmd=xreadgroup`, flag `b`).
///
/// # Errors
/// The admin's error.
pub(crate) async fn blocked_readers(admin: &mut Admin) -> Result<usize> {
    Ok(admin
        .client_list()
        .await?
        .iter()
        .filter(|c| blocked_in_xreadgroup(c))
        .count())
}

fn blocked_in_xreadgroup(c: &ClientInfo) -> bool {
    c.cmd == "xreadgroup" && c.blocked()
}

/// Ids of the clients named `name` whose last command is a blocking one (`XREADGROUP`, `BLPOP`):
/// a Python consumer that was told to stop wakes up at once when these are unblocked, instead
/// of after its 5 s `BLOCK`.
///
/// # Errors
/// The admin's error.
pub(crate) async fn blocked_client_ids(admin: &mut Admin, names: &[String]) -> Result<Vec<u64>> {
    Ok(admin
        .client_list()
        .await?
        .into_iter()
        .filter(|c| names.contains(&c.name) && matches!(c.cmd.as_str(), "xreadgroup" | "blpop"))
        .map(|c| c.id)
        .collect())
}

/// Empties the server and compacts its AOF, so that every run starts from the same state and
/// no AOF rewrite started by an earlier run overlaps a measurement (as the reference benchmark's
/// `reset`); then lets the machine settle for half a second.
///
/// # Errors
/// The admin's error, also a rewrite still running after 120 s.
pub(crate) async fn reset(admin: &mut Admin) -> Result<()> {
    admin.flushall().await?;
    compact_aof(admin).await
}

/// Compacts the AOF again once the backlog is written, then lets the machine settle for half a
/// second. Without it the preload's own bytes (~60 MB for 50 000 events) bring the AOF close to
/// Redis's automatic rewrite (`auto-aof-rewrite-min-size` 64 MB, growth 100 %), and the drain's
/// writes then start one inside the timed window: a forked child compressing the whole dataset,
/// about 0.25 s of a core, which took ~15 % of the two cores from a 0.7 s drain and ~2 % from a
/// 5 s one. Both sides get it; [`aof_rewrites`] checks that none overlapped.
///
/// # Errors
/// The admin's error, also a rewrite still running after 120 s.
pub(crate) async fn compact_aof(admin: &mut Admin) -> Result<()> {
    admin.rewrite_aof_and_wait(REWRITE_TIMEOUT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

/// AOF rewrites started so far: `aof_rewrites` (done) of `INFO persistence`, plus one when a
/// rewrite runs or is scheduled. The difference over a window counts the rewrites that
/// overlapped it.
///
/// # Errors
/// The admin's error; [`LoadError::Run`] when Redis does not report `aof_rewrites`.
pub(crate) async fn aof_rewrites(admin: &mut Admin) -> Result<u64> {
    let info = admin.info("persistence").await?;
    let done = info
        .number("aof_rewrites")
        .ok_or_else(|| LoadError::Run("INFO persistence has no aof_rewrites (Redis 7.0 or later has it)".into()))?;
    Ok(done as u64 + u64::from(info.aof_rewrite_busy()))
}

/// When a drain ended, as the poller saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    /// From the start signal until the first poll that saw lag 0 and nothing pending.
    pub(crate) elapsed: Duration,
    /// `XINFO GROUPS` calls made meanwhile.
    pub(crate) polls: u64,
}

/// A connection of its own for timing a drain (blocking, for the poller's thread), made before
/// the clock starts.
pub(crate) struct Poller {
    conn: BlockingAdmin,
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
    /// The admin's error.
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let url = url.to_string();
        let conn = tokio::task::spawn_blocking(move || BlockingAdmin::connect(&url))
            .await
            .map_err(|e| LoadError::Run(format!("the poller's thread: {e}")))??;
        Ok(Poller { conn })
    }

    /// Polls `XINFO GROUPS stream` every 0.9 ms on a thread of its own until `group` has
    /// lag 0 and nothing pending; the time is taken from `t0`.
    ///
    /// # Errors
    /// The admin's error, or [`LoadError::Run`] when the group is not drained by `timeout`.
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
                let groups = self.conn.groups(&stream)?;
                let now = Instant::now();
                polls += 1;
                let state = group_state_of(&groups, &group);
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
    /// The bus's or the admin's error.
    pub(crate) async fn poll_cost_us(mut self, admin: &mut Admin, bus: &mut Connection, polls: u32) -> Result<f64> {
        const STREAM: &str = "drain:calibration";
        group::create_group(bus, STREAM, "g", "$").await?;
        let before = main_thread_cpu_s(admin).await?;
        let (poller, result) = tokio::task::spawn_blocking(move || {
            let mut r = Ok(());
            for _ in 0..polls {
                if let Err(e) = self.conn.groups(STREAM) {
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
        let after = main_thread_cpu_s(admin).await?;
        query::delete(bus, &[STREAM]).await?;
        Ok((after - before) * 1e6 / f64::from(polls.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, pending: u64, lag: Option<u64>) -> GroupInfo {
        GroupInfo {
            name: name.into(),
            consumers: 2,
            pending,
            last_delivered_id: "1-0".into(),
            entries_read: Some(10),
            lag,
        }
    }

    /// The group is found by name; a nil lag (Redis cannot tell) is not drained, nor is anything
    /// pending.
    #[test]
    fn the_group_is_found_by_name_and_nil_lag_is_not_drained() {
        let groups = [group("other", 0, Some(0)), group("g", 0, None)];
        let g = group_state_of(&groups, "g").unwrap();
        assert_eq!(g.lag, None);
        assert!(!g.drained());
        assert!(!group_state_of(&[group("g", 3, Some(0))], "g").unwrap().drained());
        let groups = [group("g", 0, Some(0))];
        assert!(group_state_of(&groups, "g").unwrap().drained());
        assert_eq!(group_state_of(&groups, "missing"), None);
    }

    /// Only clients blocked right now in XREADGROUP count.
    #[test]
    fn blocked_readers_are_xreadgroup_clients_with_flag_b() {
        let c = |line: &str| ClientInfo::parse(line).unwrap();
        assert!(blocked_in_xreadgroup(&c(
            "id=7 addr=127.0.0.1:1 name= age=1 idle=0 flags=b db=0 cmd=xreadgroup user=default"
        )));
        assert!(!blocked_in_xreadgroup(&c(
            "id=7 addr=127.0.0.1:1 name= age=1 idle=0 flags=N db=0 cmd=xreadgroup user=default"
        )));
        assert!(!blocked_in_xreadgroup(&c(
            "id=8 addr=127.0.0.1:1 name= age=1 idle=0 flags=b db=0 cmd=blpop user=default"
        )));
    }
}
