//! Consumer group creation.
//!
//! Services create a configured group only where that cannot replay anything: on an absent or
//! empty stream ([`ensure_group`]). A group missing on a stream with entries (deleted by hand,
//! lost with a restored backup) is an error that names the explicit way out, [`create_group`]
//! at a position the operator chooses (`mt5-hub groups create`): recreating it at `0` silently
//! would process the whole retained stream again.

use redis::aio::ConnectionLike;
use redis::Value;

use crate::error::{is_no_such_key, Error, Result};
use crate::reply::{items, pairs, text};
use crate::script::Scripts;

/// Creates `group` on `stream` at id `0` (so it sees every entry, creating the stream if needed)
/// when the stream is absent or empty, atomically (one Lua script). An existing group is left as
/// it is. Returns whether the group was created.
///
/// Under memory pressure (`maxmemory` with `noeviction`) Redis refuses the creation with `OOM`.
/// The script writes only when it creates, so an existing group is found without a write and a
/// service can (re)start while Redis is full.
///
/// # Errors
/// [`Error::GroupMissing`] when the group does not exist and the stream has entries (its message
/// names `mt5-hub groups create`); the transient `OOM` error when Redis is full and the group
/// does not exist; `WRONGTYPE` when the key is not a stream; the driver's error.
pub async fn ensure_group<C: ConnectionLike + Send>(conn: &mut C, stream: &str, group: &str) -> Result<bool> {
    let script = &Scripts::get().ensure_group;
    let cmd = script.cmd(&[stream], group);
    let reply: Value = script.run(conn, &cmd).await?;
    match items(&reply).first().and_then(text).as_deref() {
        Some("created") => {
            tracing::info!(stream, group, "Created consumer group at 0.");
            Ok(true)
        }
        Some("exists") => Ok(false),
        Some("missing") => Err(Error::GroupMissing {
            stream: stream.into(),
            group: group.into(),
        }),
        _ => Err(Error::UnexpectedReply {
            command: "ensure_group",
            detail: format!("{reply:?}"),
        }),
    }
}

/// Creates `group` on `stream` at `at`, creating the stream if needed (`MKSTREAM`): the explicit
/// way to create a group on a stream with entries. `at` is `0` (every entry), `$` (only entries
/// added from now on) or an entry id (`<ms>-<seq>` or `<ms>`: the entries after it; the last id
/// the group processed, to resume where it stopped). Returns `false`, changing nothing, when the
/// group already exists (also when Redis is full and refuses the command with `OOM`, but the
/// group is there).
///
/// # Errors
/// The driver's error: an invalid `at` (`ERR`), `WRONGTYPE`, or the transient `OOM` when Redis is
/// full and the group does not exist.
pub async fn create_group<C: ConnectionLike + Send>(conn: &mut C, stream: &str, group: &str, at: &str) -> Result<bool> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(at)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r.map_err(Error::from) {
        Ok(()) => {
            tracing::info!(stream, group, at, "Created consumer group.");
            Ok(true)
        }
        Err(e) if e.has_code("BUSYGROUP") => Ok(false),
        Err(e) if e.has_code("OOM") => exists_despite_oom(conn, stream, group, e).await.map(|_| false),
        Err(e) => Err(e),
    }
}

/// Whether `group` exists on `stream` (`XINFO GROUPS`); `false` when the stream does not exist.
///
/// # Errors
/// The driver's error (`WRONGTYPE` for a key that is not a stream).
pub async fn group_exists<C: ConnectionLike + Send>(conn: &mut C, stream: &str, group: &str) -> Result<bool> {
    let r: redis::RedisResult<Value> = redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(conn).await;
    match r {
        Ok(v) => Ok(items(&v)
            .iter()
            .any(|g| pairs(g).get("name").and_then(text).as_deref() == Some(group))),
        // `ERR no such key`: no stream, so no group.
        Err(e) if is_no_such_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// After an `OOM` refusal of a creation: `Ok(false)` when the group exists (nothing needed
/// creating), else the `OOM` error (transient: retry once memory is freed).
async fn exists_despite_oom<C: ConnectionLike + Send>(
    conn: &mut C,
    stream: &str,
    group: &str,
    oom: Error,
) -> Result<bool> {
    match group_exists(conn, stream, group).await {
        Ok(true) => {
            tracing::debug!(stream, group, "Redis is out of memory, but the consumer group exists.");
            Ok(false)
        }
        _ => Err(oom),
    }
}
