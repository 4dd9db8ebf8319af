//! The scenarios' side of the fault proxy: the `toxiproxy_rust` client (blocking: each call runs
//! on `spawn_blocking`, the client is made and dropped there), plus raw HTTP where the crate has
//! no call, and [`ProxiedLink`], a proxy in front of one upstream on the server at
//! `TOXIPROXY_URL` or on an in-process [`FaultProxy`].
//!
//! Where `toxiproxy_rust` 0.1.6 falls short, and what is done instead:
//! - it has no `reset_peer` toxic (its toxic constructor is private), no removal of one toxic
//!   and no view of the proxy's extra `stats`: those are raw requests with `reqwest`;
//! - its `with_*` toxic calls ignore the server's answer (a `409` for a name taken passes
//!   silently) and panic when the server is unreachable: [`Toxiproxy::add_toxic`] turns the
//!   panic into an error and checks the toxic is listed afterwards;
//! - `Client::new` takes `host:port`, not a URL: [`Toxiproxy::new`] accepts either.
//!
//! ```no_run
//! use mt5_chaos::proxy::control::{ProxiedLink, Stream, Toxic};
//!
//! # async fn example() -> Result<(), mt5_chaos::proxy::ProxyError> {
//! let link = ProxiedLink::start("redis-link", "127.0.0.1:6379").await?;
//! println!("services use {}", link.redis_url());
//! link.toxiproxy()
//!     .add_toxic(link.name(), Stream::Downstream, Toxic::Latency { latency_ms: 300, jitter_ms: 100 }, 1.0)
//!     .await?;
//! link.toxiproxy().disable(link.name()).await?;
//! link.toxiproxy().enable(link.name()).await?;
//! # Ok(())
//! # }
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{FaultProxy, ProxyError, ProxyStats, Result};

/// Env var naming a Toxiproxy server (`http://host:port` or `host:port`) to drive instead of an
/// in-process [`FaultProxy`].
pub const ENV_TOXIPROXY_URL: &str = "TOXIPROXY_URL";

/// A toxic's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
}

impl Stream {
    /// `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// A toxic and its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Toxic {
    /// Each chunk delayed by `latency_ms` ± `jitter_ms`.
    Latency {
        /// Added delay, ms.
        latency_ms: u32,
        /// Random ± spread, ms.
        jitter_ms: u32,
    },
    /// At most `rate_kbps` KB/s.
    Bandwidth {
        /// KB per second.
        rate_kbps: u32,
    },
    /// Data stops; the connection is closed after `timeout_ms` (held open when 0).
    Timeout {
        /// ms.
        timeout_ms: u32,
    },
    /// A close is passed on `delay_ms` late.
    SlowClose {
        /// ms.
        delay_ms: u32,
    },
    /// The connection is closed once `bytes` passed.
    LimitData {
        /// Bytes.
        bytes: u32,
    },
    /// Chunks sliced into `average_size` ± `size_variation` bytes, `delay_us` apart.
    Slicer {
        /// Bytes.
        average_size: u32,
        /// Bytes.
        size_variation: u32,
        /// Microseconds.
        delay_us: u32,
    },
    /// The first chunk is dropped and the connection reset (TCP RST) `timeout_ms` later.
    ResetPeer {
        /// ms (0: at once).
        timeout_ms: u32,
    },
}

impl Toxic {
    /// The Toxiproxy type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Toxic::Latency { .. } => "latency",
            Toxic::Bandwidth { .. } => "bandwidth",
            Toxic::Timeout { .. } => "timeout",
            Toxic::SlowClose { .. } => "slow_close",
            Toxic::LimitData { .. } => "limit_data",
            Toxic::Slicer { .. } => "slicer",
            Toxic::ResetPeer { .. } => "reset_peer",
        }
    }

    /// The name `toxiproxy_rust` gives it on `stream`: `<type>_<stream>`.
    pub fn name_on(&self, stream: Stream) -> String {
        format!("{}_{}", self.type_name(), stream.as_str())
    }
}

/// A proxy as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyInfo {
    /// Name.
    pub name: String,
    /// Listen address (the bound one).
    pub listen: String,
    /// Upstream address.
    pub upstream: String,
    /// Enabled.
    pub enabled: bool,
}

impl From<toxiproxy_rust::proxy::ProxyPack> for ProxyInfo {
    fn from(p: toxiproxy_rust::proxy::ProxyPack) -> Self {
        ProxyInfo {
            name: p.name,
            listen: p.listen,
            upstream: p.upstream,
            enabled: p.enabled,
        }
    }
}

/// A toxic as the server lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ToxicInfo {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: String,
    /// `upstream` or `downstream`.
    pub stream: String,
    /// Toxicity.
    pub toxicity: f32,
}

/// A Toxiproxy API client (ours or a real server's).
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    addr: SocketAddr,
    base: String,
    http: reqwest::Client,
}

fn api_err(what: &str, detail: impl std::fmt::Display) -> ProxyError {
    ProxyError::Api {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

impl Toxiproxy {
    /// A client of the server at `api_url` (`http://host:port` or `host:port`).
    ///
    /// # Errors
    /// The address does not resolve.
    pub fn new(api_url: &str) -> Result<Self> {
        let hostport = api_url
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let addr = hostport
            .to_socket_addrs()
            .map_err(|e| api_err("address", format!("{api_url:?}: {e}")))?
            .next()
            .ok_or_else(|| api_err("address", format!("{api_url:?} resolves to nothing")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| api_err("HTTP client", e))?;
        Ok(Toxiproxy {
            addr,
            base: format!("http://{addr}"),
            http,
        })
    }

    /// The server at `TOXIPROXY_URL`, when set.
    ///
    /// # Errors
    /// The variable is set to an address that does not resolve.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(ENV_TOXIPROXY_URL) {
            Ok(url) if !url.trim().is_empty() => Self::new(&url).map(Some),
            _ => Ok(None),
        }
    }

    /// `http://host:port`.
    pub fn api_url(&self) -> &str {
        &self.base
    }

    /// Runs `f` with a fresh `toxiproxy_rust` client on a blocking thread (its blocking reqwest
    /// client must be made and dropped outside the async runtime). A panic in the crate (it
    /// panics on transport errors in its toxic calls) is an error.
    async fn blocking<T, F>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&toxiproxy_rust::client::Client) -> std::result::Result<T, String> + Send + 'static,
    {
        let addr = self.addr;
        tokio::task::spawn_blocking(move || {
            let client = toxiproxy_rust::client::Client::new(addr);
            f(&client)
        })
        .await
        .map_err(|e| api_err(what, format!("the client panicked: {e}")))?
        .map_err(|e| api_err(what, e))
    }

    /// `GET /version`.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn version(&self) -> Result<String> {
        self.blocking("version", |c| c.version()).await
    }

    /// `POST /reset`: every proxy enabled, every toxic removed.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn reset(&self) -> Result<()> {
        self.blocking("reset", |c| c.reset()).await
    }

    /// `POST /populate` with one proxy; returns it as created (with the bound listen address).
    ///
    /// # Errors
    /// The server refuses it or does not answer.
    pub async fn populate(&self, name: &str, listen: &str, upstream: &str) -> Result<ProxyInfo> {
        let pack = toxiproxy_rust::proxy::ProxyPack::new(name.into(), listen.into(), upstream.into());
        let name = name.to_string();
        let proxies = self
            .blocking("populate", move |c| {
                c.populate(vec![pack]).map(|ps| {
                    ps.into_iter()
                        .map(|p| ProxyInfo::from(p.proxy_pack))
                        .collect::<Vec<_>>()
                })
            })
            .await?;
        proxies
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| api_err("populate", format!("proxy {name} missing from the answer")))
    }

    /// `GET /proxies/{name}`.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn proxy(&self, name: &str) -> Result<ProxyInfo> {
        let name = name.to_string();
        self.blocking("find_proxy", move |c| {
            c.find_proxy(&name).map(|p| ProxyInfo::from(p.proxy_pack))
        })
        .await
    }

    /// Disables a proxy: its connections are closed and new ones refused.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn disable(&self, name: &str) -> Result<()> {
        let owned = name.to_string();
        self.blocking("disable", move |c| c.find_proxy(&owned)?.disable())
            .await?;
        self.expect_enabled("disable", name, false).await
    }

    /// Enables a proxy.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn enable(&self, name: &str) -> Result<()> {
        let owned = name.to_string();
        self.blocking("enable", move |c| c.find_proxy(&owned)?.enable()).await?;
        self.expect_enabled("enable", name, true).await
    }

    async fn expect_enabled(&self, what: &str, name: &str, enabled: bool) -> Result<()> {
        let p = self.proxy(name).await?;
        if p.enabled == enabled {
            Ok(())
        } else {
            Err(api_err(what, format!("proxy {name} is still enabled={}", p.enabled)))
        }
    }

    /// Deletes a proxy.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking("delete", move |c| c.find_proxy(&name)?.delete()).await
    }

    /// The toxics of a proxy.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn toxics(&self, name: &str) -> Result<Vec<ToxicInfo>> {
        let name = name.to_string();
        self.blocking("toxics", move |c| {
            c.find_proxy(&name)?.toxics().map(|ts| {
                ts.into_iter()
                    .map(|t| ToxicInfo {
                        name: t.name,
                        kind: t.r#type,
                        stream: t.stream,
                        toxicity: t.toxicity,
                    })
                    .collect()
            })
        })
        .await
    }

    /// Adds `toxic` on `stream` with `toxicity`; returns its name (`<type>_<stream>`). Through
    /// `toxiproxy_rust`'s `with_*` calls, except `reset_peer` (a raw `POST`). Checks the toxic is
    /// listed afterwards.
    ///
    /// # Errors
    /// The server refused the toxic or does not answer.
    pub async fn add_toxic(&self, proxy: &str, stream: Stream, toxic: Toxic, toxicity: f32) -> Result<String> {
        let name = toxic.name_on(stream);
        if let Toxic::ResetPeer { timeout_ms } = toxic {
            let body = json!({
                "name": name,
                "type": "reset_peer",
                "stream": stream.as_str(),
                "toxicity": toxicity,
                "attributes": {"timeout": timeout_ms},
            });
            self.raw(reqwest::Method::POST, &format!("/proxies/{proxy}/toxics"), Some(body))
                .await?;
        } else {
            let p = proxy.to_string();
            let s = stream.as_str().to_string();
            self.blocking("add toxic", move |c| {
                let proxy = c.find_proxy(&p)?;
                match toxic {
                    Toxic::Latency { latency_ms, jitter_ms } => proxy.with_latency(s, latency_ms, jitter_ms, toxicity),
                    Toxic::Bandwidth { rate_kbps } => proxy.with_bandwidth(s, rate_kbps, toxicity),
                    Toxic::Timeout { timeout_ms } => proxy.with_timeout(s, timeout_ms, toxicity),
                    Toxic::SlowClose { delay_ms } => proxy.with_slow_close(s, delay_ms, toxicity),
                    Toxic::LimitData { bytes } => proxy.with_limit_data(s, bytes, toxicity),
                    Toxic::Slicer {
                        average_size,
                        size_variation,
                        delay_us,
                    } => proxy.with_slicer(s, average_size, size_variation, delay_us, toxicity),
                    Toxic::ResetPeer { .. } => &proxy,
                };
                Ok(())
            })
            .await?;
        }
        let listed = self.toxics(proxy).await?;
        if listed.iter().any(|t| t.name == name && t.kind == toxic.type_name()) {
            Ok(name)
        } else {
            Err(api_err(
                "add toxic",
                format!("{name} is not listed on {proxy} after adding it (listed: {listed:?})"),
            ))
        }
    }

    /// Removes one toxic (a raw `DELETE`: the crate only removes all).
    ///
    /// # Errors
    /// No such proxy or toxic, or the server does not answer.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<()> {
        self.raw(
            reqwest::Method::DELETE,
            &format!("/proxies/{proxy}/toxics/{toxic}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Removes every toxic of a proxy.
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn clear_toxics(&self, proxy: &str) -> Result<()> {
        let p = proxy.to_string();
        self.blocking("delete_all_toxics", move |c| c.find_proxy(&p)?.delete_all_toxics())
            .await
    }

    /// The proxy's `stats` (an mt5-chaos extension; `None` from a real Toxiproxy server).
    ///
    /// # Errors
    /// No such proxy, or the server does not answer.
    pub async fn stats(&self, proxy: &str) -> Result<Option<ProxyStats>> {
        #[derive(Deserialize)]
        struct WithStats {
            stats: Option<ProxyStats>,
        }
        let v = self
            .raw(reqwest::Method::GET, &format!("/proxies/{proxy}"), None)
            .await?;
        let w: WithStats = serde_json::from_value(v).map_err(|e| api_err("stats", e))?;
        Ok(w.stats)
    }

    /// A raw request; the JSON answer (`null` for none).
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let what = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| api_err(&what, e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| api_err(&what, e))?;
        if !status.is_success() {
            return Err(api_err(&what, format!("{status}: {text}")));
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| api_err(&what, format!("{e}: {text}")))
    }
}

/// One proxy in front of one upstream: on the Toxiproxy server at `TOXIPROXY_URL`, else on an
/// in-process [`FaultProxy`] (shut down with the link).
#[derive(Debug)]
pub struct ProxiedLink {
    toxiproxy: Toxiproxy,
    info: ProxyInfo,
    server: Option<FaultProxy>,
}

impl ProxiedLink {
    /// A proxy `name` listening on a free loopback port, forwarding to `upstream` (`host:port`).
    ///
    /// # Errors
    /// The in-process proxy cannot start, or the server refuses the proxy.
    pub async fn start(name: &str, upstream: &str) -> Result<Self> {
        let (toxiproxy, server) = match Toxiproxy::from_env()? {
            Some(t) => (t, None),
            None => {
                let server = FaultProxy::start("127.0.0.1:0").await?;
                (Toxiproxy::new(&server.api_url())?, Some(server))
            }
        };
        let info = toxiproxy.populate(name, "127.0.0.1:0", upstream).await?;
        Ok(ProxiedLink {
            toxiproxy,
            info,
            server,
        })
    }

    /// The client.
    pub fn toxiproxy(&self) -> &Toxiproxy {
        &self.toxiproxy
    }

    /// The proxy's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Where clients connect (`host:port`).
    pub fn listen(&self) -> &str {
        &self.info.listen
    }

    /// `redis://<listen>`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.info.listen)
    }

    /// Whether the proxy runs in process (so its `stats` exist).
    pub fn in_process(&self) -> bool {
        self.server.is_some()
    }

    /// The proxy's counters (`None` on a real Toxiproxy server).
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn stats(&self) -> Result<Option<ProxyStats>> {
        self.toxiproxy.stats(&self.info.name).await
    }

    /// Deletes the proxy and stops the in-process server.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn close(mut self) -> Result<()> {
        let r = self.toxiproxy.delete(&self.info.name).await;
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        r
    }
}
