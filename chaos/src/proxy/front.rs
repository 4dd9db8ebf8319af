//! The listener in front of a proxy's noxious runner: it owns the proxy's `listen` address,
//! counts connections, closes them all when the proxy is disabled or deleted, and runs the
//! `reset_peer` toxic.
//!
//! `reset_peer` as Toxiproxy does it: once the toxic is on, the first chunk that arrives in its
//! direction on a connection is dropped, and `timeout` ms later (at once for 0) the connection
//! is closed with a TCP RST (`SO_LINGER` 0, then close). Downstream: the client gets the RST;
//! upstream: the connection towards the upstream gets the RST (noxious then closes the upstream
//! side) and the client sees a plain close. Whether a connection gets the toxic is drawn once per
//! connection with probability `toxicity`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::Registrar;
use super::toxic::Direction;
use super::{ProxyError, Result};

/// Bytes read per chunk (Toxiproxy's and noxious' 32 KiB).
const CHUNK: usize = 32 * 1024;

/// A proxy's connection counters, in its JSON as `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted on the listen address.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections the proxy closed itself: on disable, delete, shutdown, or by `reset_peer`.
    pub dropped: u64,
    /// Of those, closed with a TCP RST by `reset_peer`.
    pub reset: u64,
    /// Times the proxy was disabled.
    pub disabled: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    dropped: AtomicU64,
    reset: AtomicU64,
    disabled: AtomicU64,
}

impl Counters {
    /// A snapshot.
    pub(crate) fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reset: self.reset.load(Ordering::Relaxed),
            disabled: self.disabled.load(Ordering::Relaxed),
        }
    }

    /// Counts a disable.
    pub(crate) fn count_disable(&self) {
        self.disabled.fetch_add(1, Ordering::Relaxed);
    }
}

/// One `reset_peer` toxic as the connections see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResetRule {
    /// Unique per installed toxic (a re-added toxic of the same name is a new rule).
    pub(crate) id: u64,
    /// Its direction.
    pub(crate) direction: Direction,
    /// Delay between the dropped chunk and the RST.
    pub(crate) timeout: Duration,
    /// Probability per connection.
    pub(crate) toxicity: f32,
}

/// The `reset_peer` rules of a proxy, shared with its connections.
pub(crate) type Rules = watch::Receiver<Arc<Vec<ResetRule>>>;

/// A running front: its listener task and connections.
#[derive(Debug)]
pub(crate) struct Front {
    addr: SocketAddr,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Front {
    /// Binds `listen` and forwards each connection to `backend` until stopped.
    ///
    /// # Errors
    /// [`ProxyError::Bind`].
    pub(crate) async fn start(
        listen: &str,
        backend: Registrar,
        counters: Arc<Counters>,
        rules: Rules,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let listener = TcpListener::bind(listen).await.map_err(|source| ProxyError::Bind {
            addr: listen.to_string(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ProxyError::Io {
            what: format!("reading the address of {listen}"),
            source,
        })?;
        let tasks = TaskTracker::new();
        let token = cancel.clone();
        let tracker = tasks.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    () = token.cancelled() => break,
                };
                match accepted {
                    Ok((client, _)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        counters.active.fetch_add(1, Ordering::Relaxed);
                        let conn = Conn {
                            counters: counters.clone(),
                            rules: rules.clone(),
                            cancel: token.clone(),
                        };
                        tracker.spawn(conn.run(client, backend.clone()));
                    }
                    Err(e) => {
                        // EMFILE and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "fault proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Front { addr, cancel, tasks })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes every connection; waits until they are closed (at most 5 s).
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

/// How a connection ended.
enum End {
    /// Both sides closed, or an I/O error.
    Closed,
    /// The proxy closed it (disable, delete, shutdown).
    Dropped,
    /// A `reset_peer` rule fired in this direction after this delay.
    Reset(Direction, Duration),
}

/// How one direction's pump ended.
enum PumpEnd {
    /// The reader reached EOF (the writer was shut down).
    Eof,
    /// A read or write failed.
    Failed,
    /// A `reset_peer` rule took a chunk.
    Reset(Duration),
}

/// One proxied connection.
struct Conn {
    counters: Arc<Counters>,
    rules: Rules,
    cancel: CancellationToken,
}

impl Conn {
    async fn run(self, mut client: TcpStream, backend: Registrar) {
        // Not between the two events of a toxic change (see `backend`).
        let gate = backend.enter().await;
        let connected = TcpStream::connect(backend.addr()).await;
        if let Some(local) = connected.as_ref().ok().and_then(|s| s.local_addr().ok()) {
            backend.registered(local).await;
        }
        drop(gate);
        let end = match connected {
            Ok(mut upstream) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let end = self.pump_both(&mut client, &mut upstream).await;
                if let End::Reset(direction, delay) = &end {
                    tokio::select! {
                        () = tokio::time::sleep(*delay) => {}
                        () = self.cancel.cancelled() => {}
                    }
                    let victim = match direction {
                        Direction::Downstream => &client,
                        Direction::Upstream => &upstream,
                    };
                    if let Err(e) = victim.set_zero_linger() {
                        tracing::warn!(error = %e, "reset_peer: cannot set SO_LINGER 0");
                    }
                }
                end
            }
            Err(e) => {
                tracing::warn!(error = %e, backend = %backend.addr(), "fault proxy: the noxious runner refused a connection");
                End::Closed
            }
        };
        // `client` and the upstream connection are closed here (with RST when lingering 0).
        match end {
            End::Closed => {}
            End::Dropped => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            End::Reset(..) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters.reset.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Copies both directions until both reach EOF, one fails, a rule fires or the proxy stops.
    async fn pump_both(&self, client: &mut TcpStream, upstream: &mut TcpStream) -> End {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let mut up = Box::pin(pump(&mut cr, &mut uw, Direction::Upstream, self.rules.clone()));
        let mut down = Box::pin(pump(&mut ur, &mut cw, Direction::Downstream, self.rules.clone()));
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                e = &mut up, if !up_done => match e {
                    PumpEnd::Eof => {
                        up_done = true;
                        if down_done { return End::Closed; }
                    }
                    PumpEnd::Failed => return End::Closed,
                    PumpEnd::Reset(d) => return End::Reset(Direction::Upstream, d),
                },
                e = &mut down, if !down_done => match e {
                    PumpEnd::Eof => {
                        down_done = true;
                        if up_done { return End::Closed; }
                    }
                    PumpEnd::Failed => return End::Closed,
                    PumpEnd::Reset(d) => return End::Reset(Direction::Downstream, d),
                },
                () = self.cancel.cancelled() => return End::Dropped,
            }
        }
    }
}

/// Copies `from` to `to` chunk by chunk; before passing a chunk on, checks the `reset_peer`
/// rules of `direction` (each drawn once per connection against its toxicity).
async fn pump<R, W>(from: &mut R, to: &mut W, direction: Direction, rules: Rules) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    let mut drawn: HashMap<u64, bool> = HashMap::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return PumpEnd::Eof;
            }
            Ok(n) => n,
            Err(_) => return PumpEnd::Failed,
        };
        let current = rules.borrow().clone();
        let fired = current.iter().filter(|r| r.direction == direction).find(|r| {
            *drawn
                .entry(r.id)
                .or_insert_with(|| rand::rng().random::<f32>() < r.toxicity)
        });
        if let Some(rule) = fired {
            return PumpEnd::Reset(rule.timeout);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return PumpEnd::Failed;
        }
    }
}
