//! Helpers of the client tests: a client pointed at a mock with fast retries, and a tracing
//! subscriber that captures every log line (events and span fields) into a buffer.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mt5_bus::Secret;
use mt5_fixtures::MockEodhd;
use mt5_news::{
    CircuitBreakerConfig, EodhdClient, EodhdConfig, EodhdRetryConfig, NewsMetrics, QuotaConfig, RateLimitConfig,
};
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Metadata, Subscriber};

/// A config for `mock`: its URL and key, 2 s timeout, retries after 10, 20, 40 ms (no jitter),
/// 4 attempts, and a breaker that does not trip in ordinary tests.
pub(crate) fn config_for(mock: &MockEodhd) -> EodhdConfig {
    EodhdConfig::default()
        .with_base_url(mock.uri())
        .with_api_key(Secret::new(mock.key()))
        .with_timeout_ms(2_000)
        .with_retry(
            EodhdRetryConfig::default()
                .with_delays(10, 100, 0.0)
                .with_max_attempts(4),
        )
        .with_circuit_breaker(CircuitBreakerConfig::default().with_failure_threshold(1_000))
        .with_rate_limit(RateLimitConfig::default())
        .with_quota(QuotaConfig::default())
}

/// A client for `cfg` with fresh, unregistered metrics.
pub(crate) fn client(cfg: &EodhdConfig) -> EodhdClient {
    client_with(cfg, NewsMetrics::unregistered())
}

/// A client for `cfg` recording into `metrics` (e.g. registered in a test's registry).
pub(crate) fn client_with(cfg: &EodhdConfig, metrics: NewsMetrics) -> EodhdClient {
    EodhdClient::new(cfg, metrics, CancellationToken::new()).unwrap()
}

/// Log lines captured while a [`LogCapture`] is in scope on this thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogCapture {
    lines: Arc<Mutex<Vec<String>>>,
}

impl LogCapture {
    /// Captures every event and span of every level on the current thread until the guard
    /// drops. Tests using it run on the current-thread runtime, so the client's tasks log here.
    pub(crate) fn start() -> (Self, DefaultGuard) {
        let capture = LogCapture::default();
        let subscriber = CaptureSubscriber {
            lines: capture.lines.clone(),
            next_id: AtomicU64::new(1),
        };
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    /// Every line so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The lines containing `needle`.
    pub(crate) fn matching(&self, needle: &str) -> Vec<String> {
        self.lines().into_iter().filter(|l| l.contains(needle)).collect()
    }
}

struct CaptureSubscriber {
    lines: Arc<Mutex<Vec<String>>>,
    next_id: AtomicU64,
}

struct LineVisitor(String);

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole chain, as a JSON or pretty formatter would print it.
        let _ = write!(self.0, " {}={}", field.name(), value);
        let mut source = value.source();
        while let Some(s) = source {
            let _ = write!(self.0, ": {s}");
            source = s.source();
        }
    }
}

impl CaptureSubscriber {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
}

impl Subscriber for CaptureSubscriber {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut v = LineVisitor(format!("span {}", span.metadata().name()));
        span.record(&mut v);
        self.push(v.0);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut v = LineVisitor("span record".into());
        values.record(&mut v);
        self.push(v.0);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut v = LineVisitor(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut v);
        self.push(v.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
