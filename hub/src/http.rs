//! The HTTP server of every long-running command: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (the process is up) and `GET /readyz` (Redis answers and the configured
//! groups exist).
//!
//! The server binds before the command's components start, so `/healthz` and `/readyz` answer
//! while a service is still (re)connecting: a service that cannot reach Redis keeps retrying
//! and reports it through `/readyz` instead of exiting.
//!
//! A command adds its own routes with [`HttpServer::with_routes`] (the alert relay's webhook);
//! one that does not use Redis turns the Redis parts off with [`HttpServer::without_redis`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mt5_bus::config::GroupSpec;
use mt5_bus::{BusMetrics, RedisConfig};
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HubConfig;
use crate::error::HubError;

/// Longest a `/readyz` check (or the stream-gauge refresh of `/metrics`) may take: probes time
/// out after a few seconds, and a hung Redis must read as "not ready", not as a hung probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers share.
struct AppState {
    registry: Registry,
    bus_metrics: BusMetrics,
    redis: RedisConfig,
    groups: Vec<GroupSpec>,
    /// Streams whose gauges (`mt5_stream_length`, lag, pending, ...) are refreshed on a scrape
    /// and by the stats collector.
    streams: Vec<String>,
    /// Whether `/readyz` checks Redis and the groups (false for services without Redis).
    uses_redis: bool,
    /// The stats collector's and the scrapes' connection, kept between refreshes (every
    /// `stats_interval_ms`); dropped after an error, so the next refresh reconnects.
    stats_conn: tokio::sync::Mutex<Option<mt5_bus::Connection>>,
}

/// A bound, not yet serving HTTP server. Split from [`HttpServer::serve`] so the command learns
/// the address (port 0 picks a free one) before anything else starts.
pub(crate) struct HttpServer {
    listener: TcpListener,
    addr: SocketAddr,
    /// Routes served next to `/metrics`, `/healthz` and `/readyz`.
    extra: Router,
    state: AppState,
    stats_interval: Duration,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .field("stats_interval", &self.stats_interval)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Binds `[http].addr`, logs the bound address and prints it to stderr as
    /// `mt5-hub: http listening on <addr>` (tests and scripts read that line).
    ///
    /// # Errors
    /// [`HubError::Io`] when the address cannot be bound (in use, not local, no permission).
    pub(crate) async fn bind(cfg: &HubConfig, registry: Registry, bus_metrics: BusMetrics) -> Result<Self, HubError> {
        let listener = TcpListener::bind(cfg.http.addr)
            .await
            .map_err(|e| HubError::io(format!("cannot listen on {} (http.addr)", cfg.http.addr), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HubError::io("cannot read the bound HTTP address", e))?;
        tracing::info!(addr = %addr, "HTTP server listening (/metrics, /healthz, /readyz).");
        eprintln!("mt5-hub: http listening on {addr}");
        let state = AppState {
            registry,
            bus_metrics,
            redis: cfg.redis.clone(),
            groups: cfg.bus.groups.clone(),
            streams: cfg.known_streams(),
            uses_redis: true,
            stats_conn: tokio::sync::Mutex::new(None),
        };
        Ok(HttpServer {
            listener,
            addr,
            extra: Router::new(),
            state,
            stats_interval: Duration::from_millis(cfg.http.stats_interval_ms),
        })
    }

    /// Also serves `routes` (which must not use `/metrics`, `/healthz` or `/readyz`).
    #[must_use]
    pub(crate) fn with_routes(mut self, routes: Router) -> Self {
        self.extra = self.extra.merge(routes);
        self
    }

    /// For a service that does not use Redis (`alert-relay`): `/readyz` answers ready while the
    /// process serves, `/metrics` refreshes no stream gauges and no stats collector runs.
    #[must_use]
    pub(crate) fn without_redis(mut self) -> Self {
        self.state.uses_redis = false;
        self.state.groups.clear();
        self.state.streams.clear();
        self.stats_interval = Duration::ZERO;
        self
    }

    /// The bound address (for commands that print where to look, e.g. `demo`).
    #[allow(dead_code)]
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `cancel` fires, then stops accepting and finishes the requests in flight.
    /// Meanwhile the stats collector refreshes the stream gauges every `http.stats_interval_ms`.
    ///
    /// # Errors
    /// [`HubError::Io`] when accepting fails for good.
    pub(crate) async fn serve(self, cancel: CancellationToken) -> Result<(), HubError> {
        let addr = self.addr;
        let state = Arc::new(self.state);
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(state.clone())
            .merge(self.extra);
        let server = axum::serve(self.listener, router).with_graceful_shutdown(cancel.clone().cancelled_owned());
        let collector = collect_stats(&state, self.stats_interval, &cancel);
        let (served, ()) = tokio::join!(server, collector);
        served.map_err(|e| HubError::io(format!("the HTTP server on {addr} failed"), e))?;
        tracing::debug!(addr = %addr, "HTTP server stopped.");
        Ok(())
    }
}

/// `GET /healthz`: 200 "ok" while the process runs.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: every registered metric in the Prometheus text format. The stream gauges are
/// refreshed first (best effort, bounded: a scrape never hangs on Redis).
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(Err(e)) = tokio::time::timeout(CHECK_TIMEOUT, refresh_stream_gauges(&state)).await {
        tracing::debug!(error = %e, "Could not refresh the stream gauges for a scrape.");
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type().to_string())], body).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "Could not encode the metrics.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n"),
            )
                .into_response()
        }
    }
}

/// The in-process stats collector: refreshes the stream gauges every `interval` until `cancel`
/// fires (never, for a zero interval). A failed refresh is logged at debug level and retried on
/// the next tick: Redis being down shows in `/readyz`, not here.
async fn collect_stats(state: &AppState, interval: Duration, cancel: &CancellationToken) {
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cancel.cancelled() => return,
        }
        let refresh = tokio::time::timeout(CHECK_TIMEOUT, refresh_stream_gauges(state));
        tokio::select! {
            result = refresh => {
                if let Ok(Err(e)) = result {
                    tracing::debug!(error = %e, "Could not refresh the stream gauges.");
                }
            }
            () = cancel.cancelled() => return,
        }
    }
}

async fn refresh_stream_gauges(state: &AppState) -> mt5_bus::Result<()> {
    if state.streams.is_empty() {
        return Ok(());
    }
    let mut slot = state.stats_conn.lock().await;
    let mut conn = match slot.as_ref() {
        Some(conn) => conn.clone(),
        None => connect(&state.redis).await?,
    };
    let mut refreshed = Ok(());
    for stream in &state.streams {
        match mt5_bus::stats::stream_stats(&mut conn, stream).await {
            Ok(stats) if stats.exists => state.bus_metrics.observe_stats(&stats),
            Ok(_) => {}
            Err(e) => {
                refreshed = Err(e);
                break;
            }
        }
    }
    if refreshed.is_ok() {
        match mt5_bus::query::connected_replicas(&mut conn).await {
            Ok(n) => state.bus_metrics.redis_connected_replicas.set(n as i64),
            Err(e) => refreshed = Err(e),
        }
    }
    *slot = refreshed.is_ok().then_some(conn);
    refreshed
}

/// `GET /readyz`: 200 `{"status":"ready"}` when Redis answers `PING` and every configured group
/// exists (or at once for a service [`HttpServer::without_redis`]); else 503 with
/// `{"status":"not ready","reason":...}`.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let verdict = match tokio::time::timeout(CHECK_TIMEOUT, check_ready(&state)).await {
        Ok(v) => v,
        Err(_) => Err(format!("Redis did not answer within {} ms", CHECK_TIMEOUT.as_millis())),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"}))).into_response(),
        Err(reason) => {
            tracing::debug!(reason = %reason, "Not ready.");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "not ready", "reason": reason})),
            )
                .into_response()
        }
    }
}

/// Why the process is not ready, if it is not. The reason never holds the Redis password.
async fn check_ready(state: &AppState) -> Result<(), String> {
    if !state.uses_redis {
        return Ok(());
    }
    let unreachable = |e: mt5_bus::Error| format!("Redis at {} is unreachable: {e}", state.redis.redacted_url());
    let mut conn = connect(&state.redis).await.map_err(unreachable)?;
    mt5_bus::query::ping(&mut conn).await.map_err(unreachable)?;
    for spec in &state.groups {
        let stats = mt5_bus::stats::stream_stats(&mut conn, &spec.stream)
            .await
            .map_err(unreachable)?;
        if !stats.groups.iter().any(|g| g.name == spec.group) {
            return Err(format!(
                "group {} on stream {} does not exist yet",
                spec.group, spec.stream
            ));
        }
    }
    Ok(())
}

/// A fresh connection: `/readyz` probes are rare and must tell "down" from "was down"; the
/// stats refreshes reuse theirs (`AppState::stats_conn`).
async fn connect(redis: &RedisConfig) -> mt5_bus::Result<mt5_bus::Connection> {
    mt5_bus::Redis::new(redis)?.connect().await
}
