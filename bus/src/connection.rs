//! The one connection layer: [`Redis`] builds every connection of the workspace from a
//! [`RedisConfig`], to one standalone server or, in sentinel mode, to the master the sentinels
//! name (checked with `ROLE`), so every connection follows a failover.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::{sentinel_addr, RedisConfig, RedisMode};
use crate::error::{needs_new_connection, Error, Result};
use crate::metrics::BusMetrics;
use crate::validate::InvalidConfig;

/// The connection settings of the configured URL, with the password from the config when the
/// URL has none.
///
/// # Errors
/// [`Error::Config`] for an invalid URL (the message never contains the password).
fn connection_info(cfg: &RedisConfig) -> Result<ConnectionInfo> {
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
    Ok(info)
}

/// A client for `info`; an error names `redis.url` without showing the password.
fn open(info: ConnectionInfo, cfg: &RedisConfig) -> Result<Client> {
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
async fn connect(client: &Client, cfg: &RedisConfig, response_timeout: Duration) -> Result<MultiplexedConnection> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(response_timeout));
    Ok(client.get_multiplexed_async_connection_with_config(&conn_cfg).await?)
}

/// A self-reconnecting connection for ordinary commands.
///
/// # Errors
/// The driver's error when the first connection cannot be made.
async fn connection_manager(client: &Client, cfg: &RedisConfig) -> Result<ConnectionManager> {
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
    cfg: Arc<RedisConfig>,
    target: Arc<Target>,
    /// Where a master change is counted (sentinel mode), when set.
    metrics: Option<BusMetrics>,
}

/// The master each sentinel topology (its name and sentinels) had when this process last
/// connected with metrics: a change is a failover, counted once per process.
fn known_masters() -> &'static std::sync::Mutex<HashMap<String, String>> {
    static KNOWN: std::sync::OnceLock<std::sync::Mutex<HashMap<String, String>>> = std::sync::OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// Where connections go.
enum Target {
    /// The server of `redis.url`.
    Standalone(Client),
    /// The master the sentinels name.
    Sentinel(Sentinels),
}

/// Sentinel mode's settings, resolved once.
struct Sentinels {
    /// `redis.url`'s settings (scheme, user, password, database); the address is replaced by
    /// the master's.
    template: ConnectionInfo,
    /// `(host, port)` of each sentinel, asked in order.
    addrs: Vec<(String, u16)>,
    master: String,
    password: Option<String>,
    tls: bool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Redis");
        d.field("url", &self.cfg.redacted_url());
        if let Target::Sentinel(s) = &*self.target {
            d.field("sentinel_master", &s.master).field("sentinels", &s.addrs);
        }
        d.finish_non_exhaustive()
    }
}

impl Redis {
    /// A client for `cfg` (its password added when the URL has none).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid URL or setting (the message never contains the password).
    pub fn new(cfg: &RedisConfig) -> Result<Redis> {
        let info = connection_info(cfg)?;
        let target = match cfg.mode {
            RedisMode::Standalone => Target::Standalone(open(info, cfg)?),
            RedisMode::Sentinel => Target::Sentinel(Sentinels {
                tls: matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
                template: info,
                addrs: cfg
                    .sentinels
                    .iter()
                    .map(|s| sentinel_addr(s))
                    .collect::<std::result::Result<_, _>>()?,
                master: cfg.sentinel_master.clone(),
                password: (!cfg.sentinel_password.is_empty()).then(|| cfg.sentinel_password.expose().to_string()),
            }),
        };
        Ok(Redis {
            cfg: Arc::new(cfg.clone()),
            target: Arc::new(target),
            metrics: None,
        })
    }

    /// Counts master changes (sentinel mode) in `metrics`: `mt5_redis_failovers_total` and
    /// `mt5_redis_master_info{addr}`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: BusMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Notes that the master of `s` is at `addr`; logs and counts a change.
    fn observe_master(&self, s: &Sentinels, addr: &str) {
        let Some(metrics) = &self.metrics else { return };
        let key = format!(
            "{}@{}",
            s.master,
            s.addrs
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let previous = {
            let mut known = known_masters()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            known.insert(key, addr.to_string())
        };
        if previous.as_deref() != Some(addr) {
            if let Some(prev) = &previous {
                tracing::warn!(master = %s.master, from = %prev, to = %addr, "The master moved (failover).");
            }
            metrics.master_seen(previous.as_deref(), addr);
        }
    }

    /// A client for `url` with the default timeouts: for tools and harnesses that are given a URL
    /// only.
    ///
    /// # Errors
    /// As [`Redis::new`].
    pub fn from_url(url: &str) -> Result<Redis> {
        Redis::new(&RedisConfig::default().with_url(url))
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
        Ok(Connection(Inner::Direct(self.multiplexed(response_timeout).await?)))
    }

    /// A self-reconnecting connection for ordinary (non-blocking) commands. In sentinel mode it
    /// asks the sentinels again after a lost connection or a reply that says the server is no
    /// longer the master (`READONLY`, `MASTERDOWN`, `UNBLOCKED`, `LOADING`).
    ///
    /// # Errors
    /// The driver's error when the first connection cannot be made.
    pub async fn managed(&self) -> Result<Connection> {
        match &*self.target {
            Target::Standalone(client) => Ok(Connection(Inner::Managed(connection_manager(client, &self.cfg).await?))),
            Target::Sentinel(_) => {
                let first = self
                    .multiplexed(Duration::from_millis(self.cfg.response_timeout_ms))
                    .await?;
                Ok(Connection(Inner::Following(Arc::new(Following {
                    redis: self.clone(),
                    slot: tokio::sync::Mutex::new(Some(first)),
                }))))
            }
        }
    }

    /// A multiplexed connection to the server (standalone) or the current master (sentinel).
    pub(crate) async fn multiplexed(&self, response_timeout: Duration) -> Result<MultiplexedConnection> {
        match &*self.target {
            Target::Standalone(client) => connect(client, &self.cfg, response_timeout).await,
            Target::Sentinel(s) => self.master_connection(s, response_timeout).await,
        }
    }

    /// Asks every sentinel for the master (`SENTINEL MASTER <name>`), tries the addresses named
    /// with the newest configuration epoch first (a sentinel that has not yet heard of a failover
    /// still names the old master, which may be back, or replaced, and answer as a master), and
    /// uses the first whose `ROLE` is `master`.
    async fn master_connection(&self, s: &Sentinels, response_timeout: Duration) -> Result<MultiplexedConnection> {
        let answers =
            futures_util::future::join_all(s.addrs.iter().map(|(host, port)| self.ask_sentinel(s, host, *port))).await;
        let mut tried = Vec::with_capacity(s.addrs.len());
        let mut sightings: Vec<(u64, String, u16)> = Vec::new();
        for ((host, port), answer) in s.addrs.iter().zip(answers) {
            match answer {
                Ok(Some(seen)) => sightings.push(seen),
                Ok(None) => tried.push(format!("{host}:{port} knows no master named {}", s.master)),
                Err(e) => tried.push(format!("{host}:{port}: {e}")),
            }
        }
        // Newest epoch first; among equals, the sentinels' order.
        sightings.sort_by_key(|s| std::cmp::Reverse(s.0));
        sightings.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
        for (epoch, mhost, mport) in sightings {
            let addr = tcp_addr(s.tls, &mhost, mport);
            let client = open(s.template.clone().set_addr(addr), &self.cfg)?;
            match connect(&client, &self.cfg, response_timeout).await {
                Ok(mut conn) => match role(&mut conn).await {
                    Ok(r) if r == "master" => {
                        let addr = format!("{mhost}:{mport}");
                        tracing::debug!(master = %s.master, addr = %addr, epoch, "Connected to the master the sentinels name.");
                        self.observe_master(s, &addr);
                        return Ok(conn);
                    }
                    Ok(r) => tried.push(format!("{mhost}:{mport} (epoch {epoch}) has ROLE {r}")),
                    // Refused for good (e.g. an ACL user without ROLE): no retry helps.
                    Err(e) if !e.is_unavailable() => return Err(e),
                    Err(e) => tried.push(format!("{mhost}:{mport} (epoch {epoch}): ROLE failed: {e}")),
                },
                // The master refused our credentials (WRONGPASS, a disabled user): it is there,
                // and it says no; retrying or asking again would get the same answer.
                Err(e) if !e.is_unavailable() => return Err(e),
                Err(e) => tried.push(format!("{mhost}:{mport} (epoch {epoch}) is unreachable: {e}")),
            }
        }
        Err(Error::Redis(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            format!(
                "no master {} found through the sentinels: {}",
                s.master,
                tried.join("; ")
            ),
        ))))
    }

    /// `SENTINEL MASTER <name>` on one sentinel: the master's configuration epoch and address, or
    /// `None` when it does not monitor that name.
    async fn ask_sentinel(&self, s: &Sentinels, host: &str, port: u16) -> Result<Option<(u64, String, u16)>> {
        let addr = tcp_addr(s.tls, host, port);
        let mut settings = RedisConnectionInfo::default();
        if let Some(pw) = &s.password {
            settings = settings.set_password(pw);
        }
        let info = s.template.clone().set_addr(addr).set_redis_settings(settings);
        let client = Client::open(info)?;
        let mut conn = connect(&client, &self.cfg, Duration::from_millis(self.cfg.connect_timeout_ms)).await?;
        let reply: redis::RedisResult<redis::Value> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&s.master)
            .query_async(&mut conn)
            .await;
        let v = match reply {
            Ok(v) => v,
            Err(e) if e.to_string().contains("No such master") => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let fields = crate::reply::pairs(&v);
        let text = |k: &str| fields.get(k).and_then(crate::reply::text);
        let (Some(ip), Some(mport)) = (text("ip"), text("port").and_then(|p| p.parse().ok())) else {
            return Err(Error::UnexpectedReply {
                command: "SENTINEL MASTER",
                detail: format!("no ip/port in {v:?}"),
            });
        };
        let epoch = text("config-epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
        Ok(Some((epoch, ip, mport)))
    }
}

/// `host:port`, over TLS when `redis.url` is `rediss://`.
fn tcp_addr(tls: bool, host: &str, port: u16) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    }
}

/// The first element of `ROLE`: `master`, `slave` or `sentinel`.
async fn role(conn: &mut MultiplexedConnection) -> Result<String> {
    let v: redis::Value = redis::cmd("ROLE").query_async(conn).await?;
    crate::reply::items(&v)
        .first()
        .and_then(crate::reply::text)
        .ok_or_else(|| Error::UnexpectedReply {
            command: "ROLE",
            detail: format!("{v:?}"),
        })
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
    Following(Arc<Following>),
}

/// Sentinel mode's self-reconnecting connection: the current master's connection, forgotten
/// after an error that says it is gone or demoted, so the next command asks the sentinels again.
struct Following {
    redis: Redis,
    slot: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Following {
    async fn current(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let timeout = Duration::from_millis(self.redis.cfg.response_timeout_ms);
        let conn = self.redis.multiplexed(timeout).await.map_err(|e| match e {
            Error::Redis(e) => e,
            other => redis::RedisError::from(std::io::Error::other(other.to_string())),
        })?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after `e` when `e` means it is gone or no longer the master's.
    async fn check<T>(&self, r: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &r {
            if needs_new_connection(e) {
                tracing::warn!(error = %e, "Lost the master; asking the sentinels again on the next command.");
                *self.slot.lock().await = None;
            }
        }
        r
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Direct(_) => "Connection(direct)",
            Inner::Managed(_) => "Connection(managed)",
            Inner::Following(_) => "Connection(sentinel)",
        })
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
            Inner::Following(f) => {
                let f = Arc::clone(f);
                Box::pin(async move {
                    let mut c = f.current().await?;
                    let r = c.req_packed_command(cmd).await;
                    f.check(r).await
                })
            }
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
            Inner::Following(f) => {
                let f = Arc::clone(f);
                Box::pin(async move {
                    let mut c = f.current().await?;
                    let r = c.req_packed_commands(cmd, offset, count).await;
                    f.check(r).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Direct(c) => c.get_db(),
            Inner::Managed(c) => c.get_db(),
            Inner::Following(f) => match &*f.redis.target {
                Target::Sentinel(s) => s.template.redis_settings().db(),
                Target::Standalone(_) => 0,
            },
        }
    }
}
