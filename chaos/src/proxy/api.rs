//! The Toxiproxy 2.x HTTP API on axum. Bodies are read as JSON whatever their content type (as
//! Toxiproxy does); errors are `{"error": message, "status": code}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::registry::{ApiError, ProxyCreate, ProxyUpdate, Registry};
use super::toxic::{ToxicSpec, ToxicUpdate};

type Shared = Arc<Registry>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({"error": self.message, "status": self.status}))).into_response()
    }
}

/// A JSON body; an empty one is `T::default()` when `empty_ok`.
fn body<T: DeserializeOwned>(bytes: &Bytes, empty: Option<T>) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(v) = empty {
            return Ok(v);
        }
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError {
        status: 400,
        message: format!("bad request body: {e}"),
    })
}

/// The routes.
pub(crate) fn router(registry: Shared) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list).post(create))
        .route("/proxies/{proxy}", get(show).post(update).patch(update).delete(delete))
        .route("/proxies/{proxy}/toxics", get(toxics).post(add_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(remove_toxic),
        )
        .with_state(registry)
}

async fn version() -> &'static str {
    super::VERSION
}

async fn reset(State(r): State<Shared>) -> Result<StatusCode, ApiError> {
    r.reset().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn populate(State(r): State<Shared>, b: Bytes) -> Result<Response, ApiError> {
    // Toxiproxy takes an array; `{"proxies": [...]}` is accepted too.
    let reqs: Vec<ProxyCreate> = match body::<serde_json::Value>(&b, None)? {
        serde_json::Value::Object(mut m) => match m.remove("proxies") {
            Some(v) => serde_json::from_value(v),
            None => serde_json::from_value(serde_json::Value::Array(Vec::new())),
        },
        v => serde_json::from_value(v),
    }
    .map_err(|e| ApiError {
        status: 400,
        message: format!("bad request body: {e}"),
    })?;
    let proxies = r.populate(reqs).await?;
    Ok((StatusCode::CREATED, Json(json!({ "proxies": proxies }))).into_response())
}

async fn list(State(r): State<Shared>) -> Response {
    Json(r.list().await).into_response()
}

async fn create(State(r): State<Shared>, b: Bytes) -> Result<Response, ApiError> {
    let view = r.create(body(&b, None)?).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn show(State(r): State<Shared>, Path(proxy): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(r.get(&proxy).await?).into_response())
}

async fn update(State(r): State<Shared>, Path(proxy): Path<String>, b: Bytes) -> Result<Response, ApiError> {
    let req: ProxyUpdate = body(&b, Some(ProxyUpdate::default()))?;
    Ok(Json(r.update(&proxy, req).await?).into_response())
}

async fn delete(State(r): State<Shared>, Path(proxy): Path<String>) -> Result<StatusCode, ApiError> {
    r.delete(&proxy).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn toxics(State(r): State<Shared>, Path(proxy): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(r.toxics(&proxy).await?).into_response())
}

async fn add_toxic(State(r): State<Shared>, Path(proxy): Path<String>, b: Bytes) -> Result<Response, ApiError> {
    let spec: ToxicSpec = body(&b, None)?;
    Ok(Json(r.add_toxic(&proxy, spec).await?).into_response())
}

async fn show_toxic(
    State(r): State<Shared>,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(r.toxic(&proxy, &toxic).await?).into_response())
}

async fn update_toxic(
    State(r): State<Shared>,
    Path((proxy, toxic)): Path<(String, String)>,
    b: Bytes,
) -> Result<Response, ApiError> {
    let update: ToxicUpdate = body(&b, Some(ToxicUpdate::default()))?;
    Ok(Json(r.update_toxic(&proxy, &toxic, update).await?).into_response())
}

async fn remove_toxic(
    State(r): State<Shared>,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    r.remove_toxic(&proxy, &toxic).await?;
    Ok(StatusCode::NO_CONTENT)
}
