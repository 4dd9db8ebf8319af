//! The HTTP gateway of `mt5-hub gateway`: MT5 terminals and other services read streams by
//! long-poll and publish events over HTTP, without a Redis client of their own.
//!
//! - `GET /v1/streams/{stream}/events?after=ID&count=N&block_ms=M`: the entries after `after`
//!   (default `$`: what arrives from now on), at most `count`, waiting up to `block_ms` for the
//!   first one (a long-poll). The answer's `last_id` is the next call's `after`, so a client
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

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mt5_bus::{Event, EventInput, EventProducer, PublishOptions, RedisConfig};
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

pub(crate) use self::config::GatewayConfig;
use crate::commands::streams::{check_id, last_generated_id, xread};

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
    redis: RedisConfig,
    client: redis::Client,
    /// The connection timeout of a read: its longest block plus the configured response timeout.
    read_timeout: Duration,
    /// Idle read connections.
    pool: Mutex<Vec<MultiplexedConnection>>,
    reads: Semaphore,
    max_entry_bytes: usize,
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
    /// The gateway of `cfg`; `producer` is filled in when the bus producer connected.
    ///
    /// # Errors
    /// The Redis URL is unusable.
    pub(crate) fn new(
        cfg: &crate::config::HubConfig,
        producer: Arc<OnceCell<EventProducer>>,
        cancel: CancellationToken,
    ) -> mt5_bus::Result<Self> {
        let g = &cfg.http.gateway;
        Ok(Gateway {
            cfg: g.clone(),
            token_digest: Sha256::digest(g.token.expose().as_bytes()).into(),
            producer,
            redis: cfg.redis.clone(),
            client: mt5_bus::connection::client(&cfg.redis)?,
            read_timeout: Duration::from_millis(g.max_block_ms + cfg.redis.response_timeout_ms),
            pool: Mutex::new(Vec::new()),
            reads: Semaphore::new(g.max_concurrent_reads),
            max_entry_bytes: cfg.bus.max_entry_bytes,
            cancel,
        })
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
    async fn read_connection(&self) -> Result<MultiplexedConnection, ApiError> {
        if let Some(conn) = self.pool.lock().await.pop() {
            return Ok(conn);
        }
        mt5_bus::connection::connect(&self.client, &self.redis, self.read_timeout)
            .await
            .map_err(|e| ApiError::from_bus(&e))
    }

    /// Returns a connection whose last command completed.
    async fn release(&self, conn: MultiplexedConnection) {
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

/// The query of a read.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    after: Option<String>,
    count: Option<String>,
    block_ms: Option<String>,
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

/// Parses a non-negative integer query parameter.
fn number(name: &str, value: Option<&str>, default: u64, max: u64) -> Result<u64, ApiError> {
    let Some(v) = value else { return Ok(default) };
    let n: u64 = v
        .parse()
        .map_err(|_| ApiError::bad_request(format!("`{name}` must be a whole number, got {v:?}")))?;
    if n > max {
        return Err(ApiError::bad_request(format!(
            "`{name}` must be at most {max}, got {n}"
        )));
    }
    Ok(n)
}

/// `GET /v1/streams/{stream}/events`.
async fn read(
    State(g): State<Arc<Gateway>>,
    Path(stream): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReadAnswer>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(format!("{} (expected after, count, block_ms)", e.body_text())))?;
    if !g.cfg.read_streams.contains(&stream) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "stream_not_allowed",
            format!("stream {stream:?} is not readable through the gateway (http.gateway.read_streams)"),
        ));
    }
    let count = number(
        "count",
        q.count.as_deref(),
        g.cfg.default_count as u64,
        g.cfg.max_count as u64,
    )?;
    if count == 0 {
        return Err(ApiError::bad_request("`count` must be at least 1"));
    }
    let block_ms = number("block_ms", q.block_ms.as_deref(), 0, g.cfg.max_block_ms)?;
    let after = q.after.unwrap_or_else(|| "$".to_string());
    if after != "$" {
        check_id(&after).map_err(|e| ApiError::bad_request(format!("`after`: {e}")))?;
    }
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
    let mut conn = g.read_connection().await?;
    // `$` is resolved to the stream's last id first, so the answer can name where the next
    // read starts even when nothing arrives.
    let after = if after == "$" {
        last_generated_id(&mut conn, &stream)
            .await
            .map_err(|e| ApiError::from_bus(&e))?
    } else {
        after
    };
    // A shutdown ends a long-poll with what it has (nothing); the connection, with a blocked
    // command on it, is dropped rather than pooled, as when the client goes away.
    let reply: redis::Value = tokio::select! {
        r = xread(&mut conn, &stream, &after, count, block_ms) => r.map_err(|e| ApiError::from_bus(&e.into()))?,
        () = g.cancel.cancelled() => {
            return Ok(Json(ReadAnswer { stream, events: Vec::new(), last_id: after }));
        }
    };
    g.release(conn).await;
    let entries = mt5_bus::reply::read_reply(reply).map_err(|e| ApiError::from_bus(&e))?;
    let last_id = entries.last().map_or(after, |e| e.id.clone());
    let events = entries
        .into_iter()
        .map(|e| {
            let decoded = match &e.fields {
                Some(fields) => Event::from_fields(&e.id, fields, g.max_entry_bytes).map_err(|m| m.to_string()),
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
        })
        .collect();
    Ok(Json(ReadAnswer {
        stream,
        events,
        last_id,
    }))
}

/// One publish's answer.
#[derive(Debug, Serialize)]
struct WriteResult {
    /// This publish's event id; `None` for a duplicate (the stream keeps the first one's).
    event_id: Option<String>,
    entry_id: String,
    duplicate: bool,
}

/// `POST /v1/streams/{stream}/events`.
async fn write(
    State(g): State<Arc<Gateway>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !g.cfg.write_streams.contains(&stream) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "stream_not_allowed",
            format!("stream {stream:?} is not writable through the gateway (http.gateway.write_streams)"),
        ));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let json = ct.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            ));
        }
    }
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                format!(
                    "the body exceeds {} bytes (http.gateway.max_body_bytes)",
                    g.cfg.max_body_bytes
                ),
            )
        } else {
            ApiError::new(status, "bad_request", e.body_text())
        }
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let header_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header must be non-empty text"))
        })
        .transpose()?;
    let (items, single) = match value {
        serde_json::Value::Array(items) => {
            if header_key.is_some() {
                return Err(ApiError::bad_request(
                    "the Idempotency-Key header is for a single event; give each event of an array its idempotency_key",
                ));
            }
            (items, false)
        }
        one => (vec![one], true),
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("the array holds no event"));
    }
    if items.len() > g.cfg.max_count {
        return Err(ApiError::bad_request(format!(
            "{} events in one request; at most {} (http.gateway.max_count)",
            items.len(),
            g.cfg.max_count
        )));
    }
    let mut batch = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let parsed = EventInput::try_from(item).and_then(|input| input.into_event(None, DEFAULT_SOURCE));
        let (event, mut opts) = parsed.map_err(|m| {
            ApiError::bad_request(if single {
                m.to_string()
            } else {
                format!("event {i}: {m}; nothing was published")
            })
        })?;
        if let (Some(key), true) = (&header_key, opts.idempotency_key.is_none()) {
            opts = PublishOptions::idempotent(key.clone());
        }
        batch.push((event, opts));
    }
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
    Ok(if single {
        (status, Json(json!(results[0]))).into_response()
    } else {
        (status, Json(json!({ "results": results }))).into_response()
    })
}
