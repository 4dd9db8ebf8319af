//! Consumer group creation.

use redis::aio::ConnectionLike;

use crate::error::{Error, Result};

/// Creates `group` on `stream` at id `0` (so it sees every entry), creating the stream if needed.
/// An existing group is left as it is.
///
/// # Errors
/// The driver's error, other than `BUSYGROUP`.
pub async fn ensure_group<C: ConnectionLike + Send>(conn: &mut C, stream: &str, group: &str) -> Result<bool> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Ok(()) => {
            tracing::info!(stream, group, "Created consumer group at 0.");
            Ok(true)
        }
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(Error::from(e)),
    }
}
