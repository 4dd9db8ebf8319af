//! A stand-in for EODHD's `GET /api/news` on `127.0.0.1:<free port>`, serving the bundled
//! sample news ([`mt5_news::sample`]) with dates shifted so the newest is "now". The demo
//! points the real [`mt5_news::EodhdClient`] at it, so the whole client path (query, paging,
//! validation, de-duplication) runs as in production.
//!
//! It accepts any non-empty `api_token` (a missing one gets EODHD's 401 `Unauthenticated`)
//! and reads the query with [`SampleQuery`] (`s`, `t`, `from`, `to`, `offset`, `limit`); the
//! path may end with `/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use mt5_news::sample::{sample_articles_at, SampleQuery};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::HubError;

/// The key the demo gives its client; the server accepts any non-empty one.
pub(crate) const SAMPLE_API_KEY: &str = "demo";

/// Articles per upper-case ticker, newest first.
type Articles = Arc<BTreeMap<String, Vec<Value>>>;

/// The running server. [`SampleServer::stop`] ends it; dropping it cancels it too.
#[derive(Debug)]
pub(crate) struct SampleServer {
    addr: SocketAddr,
    stop: CancellationToken,
    /// Taken by [`SampleServer::stop`].
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SampleServer {
    /// Binds `127.0.0.1:0` and serves the samples shifted to now.
    ///
    /// # Errors
    /// [`HubError::Io`] when no local port can be bound.
    pub(crate) async fn start(cancel: &CancellationToken) -> Result<SampleServer, HubError> {
        let articles: Articles = Arc::new(
            sample_articles_at(Utc::now())
                .into_iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v))
                .collect(),
        );
        let app = Router::new()
            .route("/api/news", get(news))
            .route("/api/news/", get(news))
            .with_state(articles);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| HubError::io("binding the sample news server to a local port", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HubError::io("reading the sample news server's address", e))?;
        let stop = cancel.child_token();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await });
        Ok(SampleServer {
            addr,
            stop,
            task: Some(task),
        })
    }

    /// The base URL for `news.eodhd.base_url`: `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server task.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        let Some(task) = self.task.take() else {
            return;
        };
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "The sample news server failed."),
            Err(e) => tracing::warn!(error = %e, "The sample news server task panicked."),
        }
    }
}

impl Drop for SampleServer {
    fn drop(&mut self) {
        // On error paths that skip `stop`: the task ends on its own once cancelled.
        self.stop.cancel();
    }
}

async fn news(State(articles): State<Articles>, Query(params): Query<BTreeMap<String, String>>) -> Response {
    if params.get("api_token").is_none_or(|k| k.trim().is_empty()) {
        return (StatusCode::UNAUTHORIZED, "Unauthenticated").into_response();
    }
    match SampleQuery::parse(&params) {
        Ok(query) => {
            let page = query.select(&articles);
            (
                [(header::CONTENT_TYPE, "application/json")],
                Value::Array(page).to_string(),
            )
                .into_response()
        }
        Err(reason) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "errors": reason }).to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mt5_bus::Secret;
    use mt5_news::{EodhdClient, EodhdConfig, NewsMetrics, NewsQuery};

    /// The real client reads the samples from the server: every ticker, paged, without the
    /// malformed article, with today's dates.
    #[tokio::test]
    async fn the_real_client_reads_the_samples() {
        let cancel = CancellationToken::new();
        let server = SampleServer::start(&cancel).await.unwrap();
        let cfg = EodhdConfig::default()
            .with_base_url(server.base_url())
            .with_api_key(Secret::new(SAMPLE_API_KEY))
            .with_paging(10, 10);
        let client = EodhdClient::new(&cfg, NewsMetrics::unregistered(), cancel.clone()).unwrap();
        let batch = client.news_all(&NewsQuery::symbol("AAPL.US"), 10).await.unwrap();
        assert_eq!(batch.articles.len(), 23, "24 items, one duplicate across pages");
        assert!(batch.is_complete());
        let newest = batch.articles.iter().map(|a| a.date).max().unwrap();
        assert!((Utc::now() - newest).num_minutes().abs() < 5);
        let tsla = client.news_all(&NewsQuery::symbol("TSLA.US"), 10).await.unwrap();
        assert_eq!(tsla.rejected.len(), 1, "the malformed article");

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /api/news/?s=AAPL.US HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
        server.stop().await;
    }
}
