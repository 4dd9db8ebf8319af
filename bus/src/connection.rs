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
pub(crate) fn client(cfg: &RedisConfig) -> Result<Client> {
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
pub(crate) async fn connect(
    client: &Client,
    cfg: &RedisConfig,
    response_timeout: Duration,
) -> Result<MultiplexedConnection> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(response_timeout));
    Ok(client.get_multiplexed_async_connection_with_config(&conn_cfg).await?)
}

/// A self-reconnecting connection for ordinary commands.
///
/// # Errors
/// The driver's error when the first connection cannot be made.
pub(crate) async fn connection_manager(client: &Client, cfg: &RedisConfig) -> Result<ConnectionManager> {
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(Duration::from_millis(cfg.response_timeout_ms)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_with_config(client.clone(), mcfg).await?)
}

/// The one way into Redis for the rest of the workspace: a client for one [`RedisConfig`] that
/// hands out [`Connection`]s. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    cfg: RedisConfig,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.cfg.redacted_url())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A client for `cfg` (its password added when the URL has none).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid URL or setting (the message never contains the password).
    pub fn new(cfg: &RedisConfig) -> Result<Redis> {
        Ok(Redis {
            client: client(cfg)?,
            cfg: cfg.clone(),
        })
    }

    /// A client for `url` with the default timeouts: for tools and harnesses that are given a URL
    /// only.
    ///
    /// # Errors
    /// As [`Redis::new`].
    pub fn from_url(url: &str) -> Result<Redis> {
        Redis::new(&RedisConfig {
            url: url.to_string(),
            ..RedisConfig::default()
        })
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// A new multiplexed connection whose commands time out after `redis.response_timeout_ms`.
    ///
    /// # Errors
    /// The driver's error (transient when Redis is unreachable).
    pub async fn connect(&self) -> Result<Connection> {
        self.connect_with_timeout(Duration::from_millis(self.cfg.response_timeout_ms))
            .await
    }

    /// A new multiplexed connection whose commands time out after `response_timeout`: for blocking
    /// reads, whose timeout must exceed their longest block.
    ///
    /// # Errors
    /// The driver's error (transient when Redis is unreachable).
    pub async fn connect_with_timeout(&self, response_timeout: Duration) -> Result<Connection> {
        Ok(Connection(Inner::Direct(
            connect(&self.client, &self.cfg, response_timeout).await?,
        )))
    }

    /// A self-reconnecting connection for ordinary (non-blocking) commands.
    ///
    /// # Errors
    /// The driver's error when the first connection cannot be made.
    pub async fn managed(&self) -> Result<Connection> {
        Ok(Connection(Inner::Managed(
            connection_manager(&self.client, &self.cfg).await?,
        )))
    }
}

/// A connection made by [`Redis`]: pass it to the bus's queries and operations ([`crate::query`],
/// [`crate::stats`], [`crate::dead_letter`], ...). Clones share the connection (commands are
/// pipelined over it).
#[derive(Clone)]
pub struct Connection(Inner);

#[derive(Clone)]
enum Inner {
    Direct(MultiplexedConnection),
    Managed(ConnectionManager),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Direct(_) => "Connection(direct)",
            Inner::Managed(_) => "Connection(managed)",
        })
    }
}

impl From<ConnectionManager> for Connection {
    fn from(c: ConnectionManager) -> Self {
        Connection(Inner::Managed(c))
    }
}

impl From<MultiplexedConnection> for Connection {
    fn from(c: MultiplexedConnection) -> Self {
        Connection(Inner::Direct(c))
    }
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match &mut self.0 {
            Inner::Direct(c) => c.req_packed_command(cmd),
            Inner::Managed(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match &mut self.0 {
            Inner::Direct(c) => c.req_packed_commands(cmd, offset, count),
            Inner::Managed(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Direct(c) => c.get_db(),
            Inner::Managed(c) => c.get_db(),
        }
    }
}
