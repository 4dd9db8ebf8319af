//! `config check [--print]`.

use mt5_bus::{RedisConfig, RedisMode};

use crate::config::HubConfig;
use crate::error::HubError;
use crate::output::{print, println};

/// Prints "config OK" (and, in sentinel mode, how the master is found), or the effective config
/// with secrets redacted. The config was already loaded and validated (a failure there is exit
/// code 2 before this runs).
///
/// # Errors
/// A write error.
pub(crate) fn check(cfg: &HubConfig, print_config: bool) -> Result<(), HubError> {
    if print_config {
        print(&cfg.to_redacted_toml())?;
    } else {
        println("config OK")?;
        if let Some(text) = sentinel_setup(&cfg.redis) {
            print(&text)?;
        }
    }
    Ok(())
}

/// What sentinel mode will do with these settings; `None` in standalone mode.
fn sentinel_setup(redis: &RedisConfig) -> Option<String> {
    if redis.mode != RedisMode::Sentinel {
        return None;
    }
    let n = redis.sentinels.len();
    let mut out = format!(
        "redis: sentinel mode: the master named {:?}, as {n} sentinel{} report{} it ({}), asked in \
         that order; each connection checks ROLE on the address it gets and asks again after a \
         lost connection or READONLY/MASTERDOWN/UNBLOCKED/LOADING.\n",
        redis.sentinel_master,
        if n == 1 { "" } else { "s" },
        if n == 1 { "s" } else { "" },
        redis.sentinels.join(", "),
    );
    out.push_str(&format!(
        "redis: from redis.url only the scheme, user, password and database are used ({}); its host \
         and port are ignored.\n",
        redis.redacted_url()
    ));
    out.push_str(if redis.sentinel_password.is_empty() {
        "redis: the sentinels are asked without a password (MT5_REDIS_SENTINEL_PASSWORD is not set).\n"
    } else {
        "redis: the sentinels are asked with the password of MT5_REDIS_SENTINEL_PASSWORD.\n"
    });
    if n < 3 {
        out.push_str(&format!(
            "warning: {n} sentinel{} listed: the services still find the master through {}, but a \
             failover needs a quorum of sentinels that stay up; run three on separate hosts \
             (configs/redis/sentinel.conf: quorum 2).\n",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" },
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standalone mode adds nothing to "config OK"; sentinel mode names the master, the
    /// sentinels in order, what the URL still gives (password redacted), the sentinels' password
    /// source, and warns below three sentinels.
    #[test]
    fn a_sentinel_setup_is_explained() {
        assert_eq!(sentinel_setup(&RedisConfig::default()), None);
        let three = RedisConfig::default()
            .with_url("redis://u:pw-s3cret@ignored:1/2")
            .with_sentinels("m1", ["a:26379", "b:26379", "c:26379"]);
        let text = sentinel_setup(&three).unwrap();
        assert!(
            text.contains("\"m1\"") && text.contains("a:26379, b:26379, c:26379"),
            "{text}"
        );
        assert!(
            text.contains("redis://u:***@ignored:1/2") && !text.contains("pw-s3cret"),
            "{text}"
        );
        assert!(
            text.contains("without a password") && !text.contains("warning"),
            "{text}"
        );
        let one = RedisConfig::default().with_sentinels("m1", ["a:26379"]);
        let text = sentinel_setup(&one).unwrap();
        assert!(text.contains("warning: 1 sentinel listed"), "{text}");
    }
}
