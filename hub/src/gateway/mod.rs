//! The HTTP gateway of `mt5-hub gateway`: MT5 terminals and other services read streams by
//! long-poll and publish events over HTTP, without a Redis client of their own.
//!
//! - `GET /v1/streams/{stream}/events?after=ID&count=N&block_ms=M`: the entries after `after`
//!   (default `$`: what arrives from now on), at most `count`, waiting up to `block_ms` for the
//!   first one (a long-poll; answered from the shared tail, it waits `linger_ms` more for others
//!   unless it has `count`). The answer's `last_id` is the next call's `after`, so a client
//!   that always passes it back sees every entry once, in order, across calls.
//! - `POST /v1/streams/{stream}/events`: one event (`{"type","data","id"?,"source"?,
//!   "idempotency_key"?,"extensions"?}`, the same object as a `publish` input line) or an array
//!   of them. An `Idempotency-Key` header stands in for a single event's `idempotency_key`. 201
//!   when something was written, 200 when every event was a duplicate of its idempotency key.
//!
//! Every `/v1` request carries `Authorization: Bearer <MT5_GATEWAY_TOKEN>` (compared in constant
//! time); a stream must be on `[http.gateway]`'s `read_streams` or `write_streams`. Errors are
//! JSON: `{"error": {"code": "...", "message": "..."}}` with the HTTP status.
//!
//! Each read takes its own Redis connection from a small pool (a blocked `XREAD` holds its
//! connection), at most `max_concurrent_reads` at once; a read whose client went away drops its
//! connection rather than returning it with a blocked command on it. Publishes share the bus
//! producer's connection, with the bounded retries of `bus.retry`.

mod config;
mod extract;
mod tail;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mt5_bus::query::{self, ReadOptions};
use mt5_bus::{Connection, Event, EventProducer, Redis, StreamEntry, StreamId};
use prometheus::IntGauge;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

pub(crate) use self::config::GatewayConfig;
use self::extract::{PublishBody, ReadParams, ReadableStream, WritableStream};
use self::tail::{Lookup, Tail};
use crate::error::HubError;

/// The events' `source` when a `POST` does not name one.
pub(crate) const DEFAULT_SOURCE: &str = "mt5-hub/gateway";
/// The route of both operations.
pub(crate) const EVENTS_PATH: &str = "/v1/streams/{stream}/events";
/// What a 503 asks the client to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// What the handlers share.
pub(crate) struct Gateway {
    cfg: GatewayConfig,
    /// The token's SHA-256, compared with the request's in constant time.
    token_digest: [u8; 32],
    /// Set once the producer connected (a background task keeps trying).
    producer: Arc<OnceCell<EventProducer>>,
    redis: Redis,
    /// The connection timeout of a read: its longest block plus the configured response timeout.
    read_timeout: Duration,
    /// Idle read connections.
    pool: Mutex<Vec<Connection>>,
    reads: Semaphore,
    max_entry_bytes: usize,
    /// The shared tail of each readable stream (none when `tail_entries` is 0).
    tails: Vec<Tail>,
    /// `mt5_gateway_long_polls_waiting`: reads with a `block_ms` waiting now.
    waiting: IntGauge,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("read_streams", &self.cfg.read_streams)
            .field("write_streams", &self.cfg.write_streams)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The gateway of `cfg`; `producer` is filled in when the bus producer connected; its
    /// metrics go into `registry`.
    ///
    /// # Errors
    /// The Redis URL is unusable (exit 2).
    pub(crate) fn new(
        cfg: &crate::config::HubConfig,
        producer: Arc<OnceCell<EventProducer>>,
        registry: &prometheus::Registry,
        cancel: CancellationToken,
    ) -> Result<Self, HubError> {
        let g = &cfg.http.gateway;
        let waiting = IntGauge::new(
            "mt5_gateway_long_polls_waiting",
            "Gateway reads with a block_ms waiting for entries now",
        )
        .and_then(|m| registry.register(Box::new(m.clone())).map(|()| m))
        .map_err(|e| HubError::Failed(format!("cannot register the gateway metrics: {e}")))?;
        Ok(Gateway {
            cfg: g.clone(),
            token_digest: Sha256::digest(g.token.expose().as_bytes()).into(),
            producer,
            redis: Redis::new(&cfg.redis)?,
            read_timeout: Duration::from_millis(g.max_block_ms + cfg.redis.response_timeout_ms),
            pool: Mutex::new(Vec::new()),
            reads: Semaphore::new(g.max_concurrent_reads),
            max_entry_bytes: cfg.bus.max_entry_bytes,
            tails: if g.tail_entries == 0 {
                Vec::new()
            } else {
                g.read_streams
                    .iter()
                    .map(|s| Tail::new(s.clone(), g.tail_entries))
                    .collect()
            },
            waiting,
            cancel,
        })
    }

    /// Follows every readable stream for the shared tails until `cancel` (returns at once when
    /// the tails are off).
    pub(crate) async fn follow_tails(&self, cancel: &CancellationToken) {
        let timeout = Duration::from_millis(self.redis.config().response_timeout_ms);
        let encode = |e: StreamEntry| encode_entry(e, self.max_entry_bytes);
        futures_util::future::join_all(
            self.tails
                .iter()
                .map(|t| t.follow(&self.redis, timeout, encode, cancel)),
        )
        .await;
    }

    fn tail(&self, stream: &str) -> Option<&Tail> {
        self.tails.iter().find(|t| t.stream() == stream)
    }

    /// Whether `presented` is the token (constant time in its content).
    fn token_matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(&self.token_digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// A connection for one read: an idle one from the pool, or a new one.
    async fn read_connection(&self) -> Result<Connection, ApiError> {
        if let Some(conn) = self.pool.lock().await.pop() {
            return Ok(conn);
        }
        self.redis
            .connect_with_timeout(self.read_timeout)
            .await
            .map_err(|e| ApiError::from_bus(&e))
    }

    /// Returns a connection whose last command completed.
    async fn release(&self, conn: Connection) {
        let mut pool = self.pool.lock().await;
        if pool.len() < self.cfg.max_concurrent_reads {
            pool.push(conn);
        }
    }
}

/// The gateway's routes, behind the bearer-token check and the body limit.
pub(crate) fn routes(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.cfg.max_body_bytes;
    Router::new()
        .route(EVENTS_PATH, get(read).post(write))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(gateway.clone(), authorize))
        .with_state(gateway)
}

/// A JSON error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A bus error: 503 when Redis is unreachable or refuses for now (retry later), else 500.
    fn from_bus(e: &mt5_bus::Error) -> Self {
        // The backlog limit is not Redis being down, but it clears the same way: retry later.
        let transient = e.is_unavailable() || matches!(e, mt5_bus::Error::Backpressure { .. });
        if transient {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("Redis is unavailable, retry later: {e}"),
            )
        } else {
            tracing::error!(error = %e, "Gateway request failed.");
            Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        resp
    }
}

/// Lets a request through only with the bearer token.
async fn authorize(State(g): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if g.token_matches(token) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

/// One entry of a read's answer: the decoded event, or why it could not be decoded.
#[derive(Debug, Serialize)]
struct ReadEntry {
    entry_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A read's answer.
#[derive(Debug, Serialize)]
struct ReadAnswer {
    stream: String,
    events: Vec<ReadEntry>,
    /// Pass it as the next read's `after`.
    last_id: String,
}

/// `GET /v1/streams/{stream}/events`.
async fn read(
    State(g): State<Arc<Gateway>>,
    ReadParams { after, count, block_ms }: ReadParams,
    ReadableStream(stream): ReadableStream,
) -> Result<Response, ApiError> {
    let Ok(_permit) = g.reads.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} reads are in progress (http.gateway.max_concurrent_reads), retry later",
                g.cfg.max_concurrent_reads
            ),
        ));
    };
    // `$` is resolved to the stream's last id first, so the answer can name where the next
    // read starts even when nothing arrives.
    let (after, conn) = if after == "$" {
        let mut conn = g.read_connection().await?;
        let last = query::last_generated_id(&mut conn, &stream)
            .await
            .map_err(|e| ApiError::from_bus(&e))?;
        (last, Some(conn))
    } else {
        (after, None)
    };
    // Counted from here: a client that saw the gauge rise knows where its read starts.
    let _waiting = (block_ms > 0).then(|| WaitingRead::new(&g.waiting));
    // One deadline for the whole read: a long-poll the tail gives up on (its follower lost
    // Redis) goes on in Redis for what is left of `block_ms`, not for all of it again.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(block_ms);
    if let (Some(tail), Ok(after_id)) = (g.tail(&stream), after.parse::<StreamId>()) {
        let linger = Duration::from_millis(g.cfg.linger_ms);
        if let Lookup::Entries(found) = tail.read(after_id, count, deadline, linger, &g.cancel).await {
            if let Some(conn) = conn {
                g.release(conn).await;
            }
            return Ok(answer_from_tail(&stream, &after, &found));
        }
    }
    let mut conn = match conn {
        Some(conn) => conn,
        None => g.read_connection().await?,
    };
    // A shutdown ends a long-poll with what it has (nothing); the connection, with a blocked
    // command on it, is dropped rather than pooled, as when the client goes away.
    let opts = ReadOptions::count(count).block(deadline.saturating_duration_since(tokio::time::Instant::now()));
    let entries = tokio::select! {
        r = query::read_after(&mut conn, &stream, &after, &opts) => r.map_err(|e| ApiError::from_bus(&e))?,
        () = g.cancel.cancelled() => {
            return Ok(Json(ReadAnswer { stream, events: Vec::new(), last_id: after }).into_response());
        }
    };
    g.release(conn).await;
    let last_id = entries.last().map_or(after, |e| e.id.clone());
    let events = entries.into_iter().map(|e| read_entry(e, g.max_entry_bytes)).collect();
    Ok(Json(ReadAnswer {
        stream,
        events,
        last_id,
    })
    .into_response())
}

/// Counts one waiting read in `mt5_gateway_long_polls_waiting` while it lives.
struct WaitingRead<'a>(&'a IntGauge);

impl<'a> WaitingRead<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        WaitingRead(gauge)
    }
}

impl Drop for WaitingRead<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A read's answer entry for a stream entry.
fn read_entry(e: StreamEntry, max_entry_bytes: usize) -> ReadEntry {
    let decoded = match &e.fields {
        Some(fields) => Event::from_fields(&e.id, fields, max_entry_bytes).map_err(|m| m.to_string()),
        None => Err("the entry was deleted".to_string()),
    };
    match decoded {
        Ok(event) => ReadEntry {
            entry_id: e.id,
            event: Some(event),
            error: None,
        },
        Err(error) => ReadEntry {
            entry_id: e.id,
            event: None,
            error: Some(error),
        },
    }
}

/// A read's answer entry as JSON, for the shared tail.
fn encode_entry(e: StreamEntry, max_entry_bytes: usize) -> Bytes {
    let entry = read_entry(e, max_entry_bytes);
    match serde_json::to_vec(&entry) {
        Ok(json) => Bytes::from(json),
        // Not reachable with serde_json's own types; answer the entry as undecodable then.
        Err(e) => Bytes::from(json!({"entry_id": entry.entry_id, "error": e.to_string()}).to_string()),
    }
}

/// The answer [`ReadAnswer`] would give, from entries the tail encoded already.
fn answer_from_tail(stream: &str, after: &str, found: &[(StreamId, Bytes)]) -> Response {
    let last_id = found.last().map_or_else(|| after.to_string(), |(id, _)| id.to_string());
    let mut body = Vec::with_capacity(64 + stream.len() + found.iter().map(|(_, e)| e.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"stream\":");
    body.extend_from_slice(json!(stream).to_string().as_bytes());
    body.extend_from_slice(b",\"events\":[");
    for (i, (_, e)) in found.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"],\"last_id\":");
    body.extend_from_slice(json!(last_id).to_string().as_bytes());
    body.push(b'}');
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// One publish's answer.
#[derive(Debug, Serialize)]
struct WriteResult {
    /// This publish's event id; `None` for a duplicate (the stream keeps the first one's).
    event_id: Option<String>,
    entry_id: String,
    duplicate: bool,
}

/// An array publish's answer: one result per event, in the request's order.
#[derive(Debug, Serialize)]
struct WriteAnswer {
    results: Vec<WriteResult>,
}

/// `POST /v1/streams/{stream}/events`.
async fn write(
    State(g): State<Arc<Gateway>>,
    WritableStream(stream): WritableStream,
    PublishBody { batch, single }: PublishBody,
) -> Result<Response, ApiError> {
    let Some(producer) = g.producer.get() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "not connected to Redis yet, retry later",
        ));
    };
    let published = producer.publish_batch(&stream, &batch).await.map_err(|e| match e {
        mt5_bus::Error::EntryTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "event_too_large", e.to_string())
        }
        e => ApiError::from_bus(&e),
    })?;
    let results: Vec<WriteResult> = batch
        .iter()
        .zip(published)
        .map(|((event, _), p)| WriteResult {
            event_id: (!p.duplicate).then(|| event.id.clone()),
            entry_id: p.entry_id,
            duplicate: p.duplicate,
        })
        .collect();
    let status = if results.iter().all(|r| r.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    // Serialized from the structs (no `Value` tree in between), in the documented key order.
    Ok(if single {
        (status, Json(&results[0])).into_response()
    } else {
        (status, Json(WriteAnswer { results })).into_response()
    })
}
