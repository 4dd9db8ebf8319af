//! The fault proxy: TCP proxies with toxics behind the Toxiproxy 2.x HTTP API, so the scenarios
//! drive it with the `toxiproxy_rust` client, and drive a real Toxiproxy server unchanged when
//! `TOXIPROXY_URL` points at one.
//!
//! # How a connection flows
//!
//! ```text
//! client ──▶ front (listen address)  ──▶ noxious proxy runner ──▶ upstream
//!            accept/active/dropped        latency, jitter, bandwidth, timeout,
//!            counts, disable, reset_peer  slow_close, limit_data, slicer
//! ```
//!
//! The toxics of Toxiproxy run in `noxious`' proxy runner (`ProxyRunner::run_proxy` with a shared
//! `ProxyState`, toxics added and removed through its event channel), listening on a private
//! loopback port. In front of it, this module's own listener on the proxy's `listen` address
//! counts connections, closes them all when the proxy is disabled (and stops listening, so new
//! connections are refused, as Toxiproxy does), and implements `reset_peer`, which noxious
//! lacks: the first chunk that arrives in the toxic's direction is dropped, and `timeout` ms
//! later the connection is closed with a TCP RST (`SO_LINGER` 0).
//!
//! # HTTP API (Toxiproxy 2.x JSON)
//!
//! `GET /version`, `GET|POST /proxies`, `POST /populate`, `POST /reset`,
//! `GET|POST|DELETE /proxies/{name}` (`POST {"enabled": false}` disables), `GET|POST
//! /proxies/{name}/toxics`, `GET|POST|DELETE /proxies/{name}/toxics/{toxic}`. A proxy's JSON
//! has one extra object, `stats` ([`ProxyStats`]), so a scenario can prove its fault landed.
//!
//! # Layout
//! - `api`: the axum routes and the Toxiproxy JSON shapes.
//! - `registry`: the proxies by name, and every operation of the API on them.
//! - `backend`: one noxious proxy runner per proxy (the toxics).
//! - `front`: the listener in front of it (counts, disable, `reset_peer`).
//! - `toxic`: toxic specs, their validation and conversion to noxious' toxics.
//! - [`control`]: the scenarios' side: the `toxiproxy_rust` client behind async calls, and a
//!   proxied Redis link.
//!
//! ```no_run
//! use mt5_chaos::proxy::FaultProxy;
//!
//! # async fn example() -> Result<(), mt5_chaos::proxy::ProxyError> {
//! let proxy = FaultProxy::start("127.0.0.1:0").await?;
//! println!("Toxiproxy API on {}", proxy.api_url());
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod backend;
pub mod control;
mod front;
mod registry;
mod toxic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use front::ProxyStats;
pub use toxic::ToxicSpec;

use registry::Registry;

/// What `GET /version` answers.
pub const VERSION: &str = concat!("2.x (mt5-chaos ", env!("CARGO_PKG_VERSION"), ", on noxious 1.0)");

/// Errors of the fault proxy and of its control client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A call to the Toxiproxy API failed or was refused.
    #[error("toxiproxy {what}: {detail}")]
    Api {
        /// The call.
        what: String,
        /// Why it failed (the server's error, or the transport's).
        detail: String,
    },
}

/// The fault proxy's result.
pub type Result<T> = std::result::Result<T, ProxyError>;

/// A running fault proxy: the HTTP API and every proxy created through it. Stopped (all proxies
/// closed) by [`FaultProxy::shutdown`], by cancelling its token, or when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    api_addr: SocketAddr,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
    registry: Arc<Registry>,
}

impl FaultProxy {
    /// Serves the API on `api_addr` (`127.0.0.1:0` for a free port) with a token of its own.
    ///
    /// # Errors
    /// [`ProxyError::Bind`] when the address cannot be bound.
    pub async fn start(api_addr: &str) -> Result<Self> {
        Self::start_with_cancel(api_addr, CancellationToken::new()).await
    }

    /// Serves the API on `api_addr` until `cancel` is cancelled.
    ///
    /// # Errors
    /// [`ProxyError::Bind`] when the address cannot be bound.
    pub async fn start_with_cancel(api_addr: &str, cancel: CancellationToken) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(api_addr)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: api_addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Io {
            what: "reading the API address".into(),
            source,
        })?;
        let registry = Arc::new(Registry::new(cancel.child_token()));
        let app = api::router(registry.clone());
        let token = cancel.clone();
        let server = tokio::spawn(async move {
            let shutdown = token.clone();
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "fault proxy API server failed");
            }
        });
        tracing::info!(api = %addr, "fault proxy listening");
        Ok(FaultProxy {
            api_addr: addr,
            cancel,
            server: Some(server),
            registry,
        })
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API's base URL, `http://<addr>`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The token that stops the proxy.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The counters of proxy `name` (also in its JSON as `stats`).
    pub async fn stats(&self, name: &str) -> Option<ProxyStats> {
        self.registry.stats(name).await
    }

    /// Waits until the token is cancelled (for `mt5-chaos proxy`).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Stops the API and every proxy, closing their connections; waits up to 5 s for the API
    /// server.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.registry.close_all().await;
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
