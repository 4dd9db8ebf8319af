//! One noxious proxy runner per proxy: it listens on a private loopback port, connects each
//! client to the upstream and runs the toxics (a `ProxyState` shared with its event task, toxics
//! added, updated and removed through noxious' request channel, which rebuilds the links of live
//! connections).
//!
//! noxious is the patched copy in `vendor/noxious` (see its `VENDORED.md`): 1.0.4 swapped a live
//! connection's directions on each toxic change, could lose track of a live connection, dropped
//! the data its toxics held when they changed, and added latencies up per chunk.
//!
//! noxious reads the toxics for a new connection when it connects to the upstream, and a toxic
//! change rebuilds the connections registered by then, so a connection that is between the two
//! would keep the old toxics: a gate keeps toxic changes and registrations apart (see
//! [`Registrar`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use noxious::proxy::{ProxyConfig, ProxyRunner, Runner, Toxics};
use noxious::signal::{Close, Stop, Stopper};
use noxious::socket::{SocketListener, TcpListener};
use noxious::state::{ProxyState, SharedProxyInfo};
use noxious::toxic::{StreamDirection, Toxic, ToxicEvent, ToxicEventKind, ToxicEventResult};
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

use super::{ProxyError, Result};

/// Attempts at binding a free private port (noxious binds by address, so a free port is picked
/// first and may be taken in between).
const BIND_ATTEMPTS: usize = 10;
/// How long a new connection waits to be registered by the runner (it never is when the
/// upstream refuses the connection).
const REGISTER_WAIT: Duration = Duration::from_millis(500);

/// What the front needs to hand a connection to the runner: its address, and the gate that
/// keeps a toxic change from passing over a connection being registered.
#[derive(Debug, Clone)]
pub(crate) struct Registrar {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    gate: Arc<RwLock<()>>,
}

impl Registrar {
    /// The runner's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Held from connecting to the runner until it registered the connection.
    pub(crate) async fn enter(&self) -> OwnedRwLockReadGuard<()> {
        self.gate.clone().read_owned().await
    }

    /// Waits (bounded) until the runner registered the connection from `local` (the front's
    /// side of it).
    pub(crate) async fn registered(&self, local: SocketAddr) -> bool {
        let deadline = Instant::now() + REGISTER_WAIT;
        loop {
            if self.state.lock().clients.contains_key(&local) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A running noxious proxy runner.
#[derive(Debug)]
pub(crate) struct Backend {
    events: bmrng::RequestSender<ToxicEvent, ToxicEventResult>,
    name: String,
    stopper: Option<Stopper>,
    registrar: Registrar,
}

impl Backend {
    /// Starts a runner from a private loopback port to `upstream` with `toxics` installed.
    ///
    /// # Errors
    /// No private port could be bound.
    pub(crate) async fn start(name: &str, upstream: &str, toxics: Vec<Toxic>) -> Result<Self> {
        let mut last_err = None;
        for _ in 0..BIND_ATTEMPTS {
            let addr = free_port().map_err(|source| ProxyError::Io {
                what: "picking a private port".into(),
                source,
            })?;
            match <TcpListener as SocketListener>::bind(&addr.to_string()).await {
                Ok(listener) => return Ok(Self::run(name, upstream, addr, listener, toxics)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(source) => {
                    return Err(ProxyError::Bind {
                        addr: addr.to_string(),
                        source,
                    })
                }
            }
        }
        Err(ProxyError::Bind {
            addr: "127.0.0.1:0".into(),
            source: last_err.unwrap_or_else(|| std::io::Error::other("no free port")),
        })
    }

    fn run(name: &str, upstream: &str, addr: SocketAddr, listener: TcpListener, toxics: Vec<Toxic>) -> Self {
        let (upstream_toxics, downstream_toxics): (Vec<Toxic>, Vec<Toxic>) = toxics
            .into_iter()
            .partition(|t| t.direction == StreamDirection::Upstream);
        let config = ProxyConfig {
            name: name.to_string(),
            listen: addr.to_string(),
            upstream: upstream.to_string(),
            enabled: true,
            rand_seed: None,
        };
        let info = SharedProxyInfo {
            config: Arc::new(config),
            state: Arc::new(ProxyState::new(Toxics {
                upstream: upstream_toxics,
                downstream: downstream_toxics,
            })),
        };
        let registrar = Registrar {
            addr,
            state: info.state.clone(),
            gate: Arc::new(RwLock::new(())),
        };
        let (events, receiver) = bmrng::channel::<ToxicEvent, ToxicEventResult>(16);
        let (stop, stopper) = Stop::new();
        let (_close, closer) = Close::new();
        let label = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = ProxyRunner::run_proxy(listener, info, receiver, stop, closer).await {
                tracing::error!(proxy = %label, error = %e, "noxious proxy runner failed");
            }
        });
        Backend {
            events,
            name: name.to_string(),
            stopper: Some(stopper),
            registrar,
        }
    }

    /// The front's handle.
    pub(crate) fn registrar(&self) -> Registrar {
        self.registrar.clone()
    }

    /// Sends a toxic event to the runner and waits until every live connection uses it (the
    /// data its old toxics held passed on), with new connections held back meanwhile.
    ///
    /// # Errors
    /// The runner refused the event (toxic not found) or is gone.
    pub(crate) async fn apply(&self, kind: ToxicEventKind) -> std::result::Result<(), String> {
        let _gate = self.registrar.gate.write().await;
        match self.events.send_receive(ToxicEvent::new(self.name.clone(), kind)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("noxious refused the toxic event: {e}")),
            Err(e) => Err(format!("the noxious runner is gone: {e}")),
        }
    }

    /// Stops the runner: stops accepting and closes every link.
    pub(crate) fn stop(&mut self) {
        if let Some(s) = self.stopper.take() {
            s.stop();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address with a port that was free a moment ago (the fixtures' picker: below the
/// ephemeral range, never one this process handed out before).
fn free_port() -> std::io::Result<SocketAddr> {
    let port = mt5_fixtures::free_port().map_err(std::io::Error::other)?;
    Ok(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)))
}
