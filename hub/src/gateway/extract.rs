//! The gateway's request checks, as axum extractors: a handler receives only a stream it may use,
//! validated read parameters, or a batch of valid events. Each rejection is the JSON
//! [`ApiError`] the client sees.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use mt5_bus::{Event, EventInput, PublishOptions, StreamId};

use super::{ApiError, Gateway, DEFAULT_SOURCE};

/// The `{stream}` of the path, when it is on `http.gateway.read_streams`.
#[derive(Debug)]
pub(super) struct ReadableStream(pub(super) String);

/// The `{stream}` of the path, when it is on `http.gateway.write_streams`.
#[derive(Debug)]
pub(super) struct WritableStream(pub(super) String);

/// The path's stream if `allowed` lists it; 403 otherwise.
async fn allowed_stream(
    parts: &mut Parts,
    state: &Arc<Gateway>,
    allowed: &[String],
    verb: &str,
    key: &str,
) -> Result<String, ApiError> {
    let Path(stream) = Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    if allowed.contains(&stream) {
        Ok(stream)
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "stream_not_allowed",
            format!("stream {stream:?} is not {verb} through the gateway (http.gateway.{key})"),
        ))
    }
}

impl FromRequestParts<Arc<Gateway>> for ReadableStream {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, g: &Arc<Gateway>) -> Result<Self, ApiError> {
        allowed_stream(parts, g, &g.cfg.read_streams, "readable", "read_streams")
            .await
            .map(ReadableStream)
    }
}

impl FromRequestParts<Arc<Gateway>> for WritableStream {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, g: &Arc<Gateway>) -> Result<Self, ApiError> {
        allowed_stream(parts, g, &g.cfg.write_streams, "writable", "write_streams")
            .await
            .map(WritableStream)
    }
}

/// The query of a read, as sent.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    after: Option<String>,
    count: Option<String>,
    block_ms: Option<String>,
}

/// A read's parameters, checked against `[http.gateway]`.
#[derive(Debug)]
pub(super) struct ReadParams {
    /// An entry id, or `$` (the default: what arrives from now on).
    pub(super) after: String,
    /// 1 to `max_count` (default `default_count`).
    pub(super) count: usize,
    /// 0 to `max_block_ms` (default 0: answer at once).
    pub(super) block_ms: u64,
}

impl FromRequestParts<Arc<Gateway>> for ReadParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, g: &Arc<Gateway>) -> Result<Self, ApiError> {
        let Query(q) = Query::<ReadQuery>::from_request_parts(parts, g)
            .await
            .map_err(|e| ApiError::bad_request(format!("{} (expected after, count, block_ms)", e.body_text())))?;
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
            after
                .parse::<StreamId>()
                .map_err(|e| ApiError::bad_request(format!("`after`: {e}")))?;
        }
        Ok(ReadParams {
            after,
            count: count as usize,
            block_ms,
        })
    }
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

/// The events of a publish: one JSON object (`single`) or an array of 1 to `max_count`, each a
/// valid event input; an `Idempotency-Key` header is the key of a single event that names none.
/// Nothing is published unless every event is valid.
#[derive(Debug)]
pub(super) struct PublishBody {
    pub(super) batch: Vec<(Event, PublishOptions)>,
    pub(super) single: bool,
}

impl FromRequest<Arc<Gateway>> for PublishBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, g: &Arc<Gateway>) -> Result<Self, ApiError> {
        check_json_content_type(req.headers())?;
        let header_key = idempotency_key_header(req.headers())?;
        let body = Bytes::from_request(req, g).await.map_err(|e| {
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
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        let (items, single) = match value {
            serde_json::Value::Array(_) if header_key.is_some() => {
                return Err(ApiError::bad_request(
                    "the Idempotency-Key header is for a single event; give each event of an array its idempotency_key",
                ));
            }
            serde_json::Value::Array(items) => (items, false),
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
        let batch = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let (event, opts) = EventInput::try_from(item)
                    .and_then(|input| input.into_event(None, DEFAULT_SOURCE))
                    .map_err(|m| {
                        ApiError::bad_request(if single {
                            m.to_string()
                        } else {
                            format!("event {i}: {m}; nothing was published")
                        })
                    })?;
                Ok(match (&header_key, opts.idempotency_key.is_none()) {
                    (Some(key), true) => (event, PublishOptions::idempotent(key.clone())),
                    _ => (event, opts),
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(PublishBody { batch, single })
    }
}

/// A body is JSON: a `Content-Type` other than `application/json` (parameters aside) is 415; none
/// at all is taken as JSON.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let json = ct.to_str().is_ok_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be application/json",
        ))
    }
}

/// The `Idempotency-Key` header, which must be non-empty text when present.
fn idempotency_key_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header must be non-empty text"))
        })
        .transpose()
}
