//! `groups create`: the explicit way to create a consumer group at a chosen position. Services
//! create a configured group only on an absent or empty stream; on a stream with entries they
//! refuse to start and name this command.

use mt5_bus::group;
use mt5_bus::stats::stream_stats;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::println;
use crate::redis_conn::OneShot;

/// Creates `group` on `stream` at `at` (`MKSTREAM`).
///
/// # Errors
/// A bad `--at`, stream or group (exit 2); Redis unreachable after bounded retries (exit 3); the
/// group existing already, which changes nothing (exit 1, naming its position); another Redis
/// error (exit 1).
pub(crate) async fn create(
    cfg: &HubConfig,
    cancel: &CancellationToken,
    stream: &str,
    group: &str,
    at: &str,
) -> Result<(), HubError> {
    check_at(at)?;
    if stream.is_empty() || group.is_empty() {
        return Err(HubError::Usage("--stream and --group must not be empty".into()));
    }
    let redis = OneShot::connect(cfg, cancel).await?;
    // A retry after a lost reply can find the group it created: it then reports "already exists".
    let created = redis
        .run("creating a consumer group", |mut conn| {
            let (stream, group, at) = (stream.to_string(), group.to_string(), at.to_string());
            async move { group::create_group(&mut conn, &stream, &group, &at).await }
        })
        .await?;
    if created {
        println(&format!("created group {group} on {stream} at {at}"))?;
        return Ok(());
    }
    // Best effort: where the existing group stands, so the operator can tell whether it is the
    // one they meant.
    let position = redis
        .run("reading stream stats", |mut conn| {
            let stream = stream.to_string();
            async move { stream_stats(&mut conn, &stream).await }
        })
        .await
        .ok()
        .and_then(|s| s.groups.into_iter().find(|g| g.name == group))
        .map(|g| format!(" (last delivered id {}, {} pending)", g.last_delivered_id, g.pending))
        .unwrap_or_default();
    Err(HubError::Failed(format!(
        "group {group} already exists on stream {stream}{position}; nothing changed"
    )))
}

/// Checks `--at`: `0`, `$`, or an entry id `<ms>-<seq>` / `<ms>` whose parts fit Redis's 64-bit
/// numbers.
///
/// # Errors
/// [`HubError::Usage`] naming the accepted forms.
fn check_at(at: &str) -> Result<(), HubError> {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    let ok = at == "$"
        || match at.split_once('-') {
            Some((ms, seq)) => number(ms) && number(seq),
            None => number(at),
        };
    if ok {
        Ok(())
    } else {
        Err(HubError::Usage(format!(
            "--at {at:?} is not a position: expected 0 (every entry), $ (only new entries) or an entry id <ms>-<seq> such as 1700000000000-0"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `0`, `$` and entry ids pass; anything else is a usage error before Redis is asked.
    #[test]
    fn positions_are_checked_before_redis_is_asked() {
        for ok in ["0", "$", "1700000000000-0", "1700000000000", "0-1"] {
            check_at(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "-",
            "$$",
            "abc",
            "1-",
            "-1",
            "1-2-3",
            "+",
            "99999999999999999999-0",
            " 1",
        ] {
            assert!(matches!(check_at(bad), Err(HubError::Usage(_))), "{bad:?}");
        }
    }
}
