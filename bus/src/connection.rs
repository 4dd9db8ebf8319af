//! Building clients and connections from [`RedisConfig`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};

use crate::config::RedisConfig;
use crate::error::{Error, Result};
use crate::validate::InvalidConfig;

/// A Redis client for the configured URL, with the password from the config when the URL has none.
///
/// # Errors
/// [`Error::Config`] for an invalid URL (the message never contains the password).
pub fn client(cfg: &RedisConfig) -> Result<Client> {
    cfg.validate()?;
    let mut info = cfg.url.as_str().into_connection_info().map_err(|e| {
        InvalidConfig::new(
            "redis.url",
            format!("{} is not a valid Redis URL: {}", cfg.redacted_url(), e.kind_str()),
        )
    })?;
    if let Some(pw) = cfg.password.as_ref().filter(|p| !p.is_empty()) {
        if info.redis_settings().password().is_none() {
            let settings = info.redis_settings().clone().set_password(pw.expose());
            info = info.set_redis_settings(settings);
        }
    }
    Client::open(info).map_err(|e| {
        Error::from(InvalidConfig::new(
            "redis.url",
            format!("{} cannot be opened: {}", cfg.redacted_url(), e.kind_str()),
        ))
    })
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error without its detail, which may echo the URL.
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// A multiplexed connection whose response timeout is `response_timeout`.
///
/// # Errors
/// The driver's error (transient when Redis is unreachable).
pub async fn connect(client: &Client, cfg: &RedisConfig, response_timeout: Duration) -> Result<MultiplexedConnection> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(response_timeout));
    Ok(client.get_multiplexed_async_connection_with_config(&conn_cfg).await?)
}

/// A self-reconnecting connection for ordinary commands.
///
/// # Errors
/// The driver's error when the first connection cannot be made.
pub async fn connection_manager(client: &Client, cfg: &RedisConfig) -> Result<ConnectionManager> {
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(Duration::from_millis(cfg.response_timeout_ms)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_with_config(client.clone(), mcfg).await?)
}
