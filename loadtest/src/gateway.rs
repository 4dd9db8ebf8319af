//! The goose load test against the HTTP gateway.
//!
//! Two kinds of goose users share the run:
//! - **publishers** `POST /v1/streams/{stream}/events` one event each time (with an
//!   `Idempotency-Key`), waiting `publish_wait_ms` between posts (0: as fast as the answers
//!   come), and remember every acknowledged entry id;
//! - **terminals** long-poll `GET /v1/streams/{stream}/events?after=<last_id>&block_ms=1000`,
//!   starting where the stream ended when the run began, and log every entry id they get and how long after
//!   its id time (the Redis clock at `XADD`) they got it.
//!
//! After goose stops, each terminal catches up from its `last_id` (plain reads until empty),
//! then the run checks that every terminal saw every acknowledged publish exactly once and in
//! stream order. Goose's own request figures (count, failures, response-time percentiles) come
//! from its metrics.
//!
//! The state the users share lives in a process-wide slot, so one run at a time per process
//! (`run` holds a lock for its duration).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goose::config::GooseConfiguration;
use goose::metrics::GooseMetrics;
use goose::prelude::*;
use mt5_bus::StreamId;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use serde::Deserialize;

use crate::{LoadError, Percentiles, Result};

/// Name of the publish request in goose's metrics.
const POST_NAME: &str = "POST events";
/// Name of the long-poll request in goose's metrics.
const GET_NAME: &str = "GET events (long-poll)";
/// A long-poll's `block_ms`.
const POLL_BLOCK_MS: u64 = 1000;
/// Entries per long-poll.
const POLL_COUNT: u64 = 500;

/// Which gateway to load.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:9468`.
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// The stream: readable and writable through the gateway.
    pub stream: String,
}

/// The load.
#[derive(Debug, Clone)]
pub struct Load {
    /// Goose users in all (publishers and terminals by `publishers`:`terminals` weights).
    pub users: usize,
    /// How long the load runs, seconds.
    pub run_time_s: u64,
    /// Users started per second.
    pub increase_rate: f64,
    /// Weight of the publishers.
    pub publishers: usize,
    /// Weight of the terminals.
    pub terminals: usize,
    /// A publisher's pause between two posts, ms (0: none).
    pub publish_wait_ms: u64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            users: 16,
            run_time_s: 20,
            increase_rate: 16.0,
            publishers: 1,
            terminals: 1,
            publish_wait_ms: 0,
        }
    }
}

/// Goose's figures of one request name.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFigures {
    /// Requests made.
    pub count: usize,
    /// Of those, failed (a status other than expected, or no answer).
    pub failed: usize,
    /// Per second over the run.
    pub per_second: f64,
    /// Response time percentiles (ms).
    pub response: Percentiles,
}

/// What a run measured and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The run's wall time, seconds (goose's).
    pub duration_s: f64,
    /// Users at the peak.
    pub users: usize,
    /// The publishes.
    pub posts: RequestFigures,
    /// The long-polls.
    pub polls: RequestFigures,
    /// Acknowledged publishes (distinct entry ids).
    pub published: u64,
    /// Terminals that read.
    pub terminals: usize,
    /// Entries delivered to terminals in all.
    pub delivered: u64,
    /// Delivery latency: entry id time to a terminal's receipt (ms), over every delivery of an
    /// entry written after the terminal's first long-poll (the backlog it caught up with when it
    /// joined is not timed).
    pub delivery: Percentiles,
    /// Acknowledged publishes some terminal never saw (summed over terminals).
    pub lost: u64,
    /// Entries a terminal saw twice (summed).
    pub duplicates: u64,
    /// Entries a terminal saw out of stream order (summed).
    pub out_of_order: u64,
}

impl Report {
    /// The report's one-line summary.
    pub fn line(&self) -> String {
        format!(
            "{} users for {:.1} s: {} posts ({:.0}/s, {} failed, {}), {} long-polls ({} failed); {} published, {} deliveries to {} terminals, delivery latency {}; lost {}, duplicates {}, out of order {}",
            self.users,
            self.duration_s,
            self.posts.count,
            self.posts.per_second,
            self.posts.failed,
            self.posts.response,
            self.polls.count,
            self.polls.failed,
            self.published,
            self.delivered,
            self.terminals,
            self.delivery,
            self.lost,
            self.duplicates,
            self.out_of_order
        )
    }
}

/// One terminal's log.
#[derive(Debug, Default)]
struct TerminalLog {
    /// Entry ids in the order received.
    seen: Vec<String>,
    /// Where the next read starts.
    last_id: String,
    /// When its first long-poll was sent (ms): entries written before are a backlog it caught
    /// up with, not deliveries to time.
    joined_ms: Option<u64>,
}

/// What every request of a run is sent to, made once: the generator shares two cores with what
/// it measures, and goose's `get_request_builder` parses the URL twice per request (IDNA host
/// processing included), a percent of the machine at 10 000 requests/s.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `{url}/v1/streams/{stream}/events`, without a query.
    events: Url,
    /// `Bearer {token}`.
    auth: HeaderValue,
}

impl Endpoint {
    fn new(t: &Target) -> Result<Self> {
        let url = format!("{}/v1/streams/{}/events", t.url.trim_end_matches('/'), t.stream);
        let events = Url::parse(&url).map_err(|e| LoadError::Run(format!("the gateway URL {url:?}: {e}")))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", t.token))
            .map_err(|e| LoadError::Run(format!("the bearer token is not a header value: {e}")))?;
        auth.set_sensitive(true);
        Ok(Endpoint { events, auth })
    }

    /// A read of up to [`POLL_COUNT`] entries after `after`, waiting up to `block_ms` for the
    /// first (0: a plain read).
    fn read_url(&self, after: &str, block_ms: u64) -> Url {
        let mut url = self.events.clone();
        url.set_query(Some(&format!("after={after}&count={POLL_COUNT}&block_ms={block_ms}")));
        url
    }
}

/// What the users share during a run.
#[derive(Debug, Default)]
struct Shared {
    endpoint: Option<Endpoint>,
    publish_wait: Duration,
    posted: Mutex<Vec<String>>,
    terminals: Mutex<HashMap<usize, TerminalLog>>,
    delivery_ms: Mutex<Vec<u64>>,
    sequence: std::sync::atomic::AtomicU64,
    run_id: String,
    /// Where every terminal starts: the stream's last id when the run began.
    start_id: String,
}

impl Shared {
    /// Where terminal `me` reads next: its `last_id`, or the run's start.
    fn cursor(&self, me: usize) -> String {
        self.terminals
            .lock()
            .ok()
            .and_then(|m| m.get(&me).map(|l| l.last_id.clone()))
            .unwrap_or_else(|| self.start_id.clone())
    }
}

/// The current run's shared state.
fn slot() -> &'static Mutex<Arc<Shared>> {
    static SLOT: OnceLock<Mutex<Arc<Shared>>> = OnceLock::new();
    SLOT.get_or_init(|| Mutex::new(Arc::new(Shared::default())))
}

/// Serializes runs in one process.
fn run_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

fn shared() -> Arc<Shared> {
    slot().lock().map(|s| s.clone()).unwrap_or_default()
}

fn endpoint(s: &Shared) -> std::result::Result<&Endpoint, Box<TransactionError>> {
    s.endpoint
        .as_ref()
        .ok_or_else(|| Box::new(TransactionError::Custom("no target".into())))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A publisher's transaction: one event.
async fn publish(user: &mut GooseUser) -> TransactionResult {
    let s = shared();
    let t = endpoint(&s)?;
    let seq = s.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let me = user.weighted_users_index;
    let key = format!("{}-{me}-{seq}", s.run_id);
    let body = format!(r#"{{"type":"loadtest.v1","data":{{"seq":{seq},"user":{me}}}}}"#);
    let rb = user
        .client
        .post(t.events.clone())
        .header(AUTHORIZATION, t.auth.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("Idempotency-Key", key)
        .body(body);
    let req = GooseRequest::builder()
        .set_request_builder(rb)
        .name(POST_NAME)
        .expect_status_code(201)
        .build();
    let mut goose = user.request(req).await?;
    let answer = match goose.response {
        Ok(r) if r.status().as_u16() == 201 => r.json::<Acknowledged>().await.ok(),
        _ => None,
    };
    match answer {
        Some(a) => {
            if let Ok(mut posted) = s.posted.lock() {
                posted.push(a.entry_id);
            }
        }
        None => return user.set_failure("publish not acknowledged", &mut goose.request, None, None),
    }
    if !s.publish_wait.is_zero() {
        tokio::time::sleep(s.publish_wait).await;
    }
    Ok(())
}

/// What a publisher keeps of a `201` answer.
#[derive(Debug, Deserialize)]
struct Acknowledged {
    entry_id: String,
}

/// A terminal's transaction: one long-poll from its `last_id`.
async fn poll(user: &mut GooseUser) -> TransactionResult {
    let s = shared();
    let t = endpoint(&s)?;
    let me = user.weighted_users_index;
    let after = s.cursor(me);
    let rb = user
        .client
        .get(t.read_url(&after, POLL_BLOCK_MS))
        .header(AUTHORIZATION, t.auth.clone());
    let req = GooseRequest::builder().set_request_builder(rb).name(GET_NAME).build();
    let sent = now_ms();
    let mut goose = user.request(req).await?;
    let answer = match goose.response {
        Ok(r) if r.status().is_success() => r.json::<ReadAnswer>().await.ok(),
        _ => None,
    };
    let Some(answer) = answer else {
        return user.set_failure("long-poll failed", &mut goose.request, None, None);
    };
    absorb(&s, me, &answer, Some((sent, now_ms())));
    Ok(())
}

/// What a terminal keeps of a read's answer (the events' contents are skipped, not decoded).
#[derive(Debug, Deserialize)]
struct ReadAnswer {
    events: Vec<ReadEntry>,
    last_id: String,
}

#[derive(Debug, Deserialize)]
struct ReadEntry {
    entry_id: String,
}

/// Logs a read's answer for terminal `me`; with `timing` (when the read was sent, when its
/// answer came, ms), the delivery latencies of the entries written since the terminal joined.
fn absorb(s: &Shared, me: usize, answer: &ReadAnswer, timing: Option<(u64, u64)>) -> usize {
    let ids: Vec<&str> = answer.events.iter().map(|e| e.entry_id.as_str()).collect();
    let mut joined = None;
    if let Ok(mut m) = s.terminals.lock() {
        let log = m.entry(me).or_default();
        log.last_id.clone_from(&answer.last_id);
        log.seen.extend(ids.iter().map(|id| id.to_string()));
        if let Some((sent, _)) = timing {
            joined = Some(*log.joined_ms.get_or_insert(sent));
        }
    }
    if let (Some((_, received)), Some(joined), Ok(mut lat)) = (timing, joined, s.delivery_ms.lock()) {
        lat.extend(
            ids.iter()
                .filter_map(|id| mt5_bus::envelope::entry_millis(id))
                .filter(|&ms| ms >= joined)
                .map(|ms| received.saturating_sub(ms)),
        );
    }
    ids.len()
}

/// Goose's figures for request `name`.
fn figures(metrics: &GooseMetrics, name: &str) -> RequestFigures {
    let Some((_, agg)) = metrics.requests.iter().find(|(k, _)| k.ends_with(name)) else {
        return RequestFigures::default();
    };
    let ms = |p: f32| agg.raw_data.percentile_us(p) / 1000;
    let count = agg.success_count + agg.fail_count;
    RequestFigures {
        count,
        failed: agg.fail_count,
        per_second: count as f64 / metrics.duration.max(1) as f64,
        response: Percentiles {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            max: agg.raw_data.maximum_time_us / 1000,
        },
    }
}

/// Compares each terminal's log with the acknowledged publishes: (lost, duplicates, out of
/// order), summed over terminals. Entry ids compare as (ms, seq) ([`StreamId`]; an id that does
/// not parse sorts first).
fn verify(posted: &[String], terminals: &HashMap<usize, TerminalLog>) -> (u64, u64, u64) {
    let key = |id: &String| id.parse::<StreamId>().ok();
    let posted: HashSet<&str> = posted.iter().map(String::as_str).collect();
    let (mut lost, mut dups, mut disorder) = (0u64, 0u64, 0u64);
    for log in terminals.values() {
        let mut seen = HashSet::new();
        for id in &log.seen {
            if !seen.insert(id.as_str()) {
                dups += 1;
            }
        }
        disorder += log.seen.windows(2).filter(|w| key(&w[0]) >= key(&w[1])).count() as u64;
        lost += posted.iter().filter(|id| !seen.contains(*id)).count() as u64;
    }
    (lost, dups, disorder)
}

/// Runs the load against `target` and checks what the terminals got.
///
/// # Errors
/// Goose refused the configuration or failed; a catch-up read failed.
pub async fn run(target: Target, load: &Load) -> Result<Report> {
    let _one_at_a_time = run_lock().lock().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LoadError::Run(format!("http client: {e}")))?;
    let endpoint = Endpoint::new(&target)?;
    let start = read(&http, &endpoint, "$").await?;
    let state = Arc::new(Shared {
        endpoint: Some(endpoint.clone()),
        start_id: start.last_id,
        publish_wait: Duration::from_millis(load.publish_wait_ms),
        run_id: format!("lt{}", now_ms()),
        ..Shared::default()
    });
    if let Ok(mut slot) = slot().lock() {
        *slot = state.clone();
    }
    let mut config = GooseConfiguration::default();
    config.host = Some(target.url.clone());
    config.users = Some(load.users);
    config.increase_rate = Some(load.increase_rate.to_string());
    config.run_time = Some(load.run_time_s.to_string());
    config.quiet = 1;
    // Count from the first request (the acknowledged publishes are compared with goose's
    // counts), and leave the printing to the caller.
    config.no_reset_metrics = true;
    config.no_print_metrics = true;
    // The generator shares two cores with the gateway and Redis: gather only the request
    // metrics the report reads (counts, failures, response times), not goose's per-transaction,
    // per-scenario, per-status and per-second tallies, and run no controllers.
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.no_status_codes = true;
    config.no_percentiles_over_time = true;
    config.no_telnet = true;
    config.no_websocket = true;
    let attack = GooseAttack::initialize_with_config(config)
        .map_err(|e| LoadError::Run(format!("goose: {e}")))?
        .register_scenario(
            scenario!("publishers")
                .set_weight(load.publishers)
                .map_err(|e| LoadError::Run(format!("goose: {e}")))?
                .register_transaction(transaction!(publish)),
        )
        .register_scenario(
            scenario!("terminals")
                .set_weight(load.terminals)
                .map_err(|e| LoadError::Run(format!("goose: {e}")))?
                .register_transaction(transaction!(poll)),
        );
    let started = Instant::now();
    let metrics = attack
        .execute()
        .await
        .map_err(|e| LoadError::Run(format!("goose: {e}")))?;
    let duration_s = started.elapsed().as_secs_f64();

    catch_up(&http, &state, &endpoint).await?;
    let posted = state.posted.lock().map(|p| p.clone()).unwrap_or_default();
    let terminals = state
        .terminals
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default();
    let (lost, duplicates, out_of_order) = verify(&posted, &terminals);
    let mut delivery = state.delivery_ms.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(Report {
        duration_s,
        users: metrics.maximum_users,
        posts: figures(&metrics, POST_NAME),
        polls: figures(&metrics, GET_NAME),
        published: posted.iter().collect::<HashSet<_>>().len() as u64,
        terminals: terminals.len(),
        delivered: terminals.values().map(|l| l.seen.len() as u64).sum(),
        delivery: Percentiles::of(&mut delivery),
        lost,
        duplicates,
        out_of_order,
    })
}

/// One plain read (no block) of the target stream after `after`.
async fn read(http: &reqwest::Client, t: &Endpoint, after: &str) -> Result<ReadAnswer> {
    let url = t.read_url(after, 0);
    let resp = http
        .get(url.clone())
        .header(AUTHORIZATION, t.auth.clone())
        .send()
        .await
        .map_err(|e| LoadError::Run(format!("reading {url}: {e}")))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(LoadError::Run(format!("reading {url}: HTTP {status}: {body}")));
    }
    serde_json::from_str(&body).map_err(|e| LoadError::Run(format!("reading {url}: {e}")))
}

/// Reads each terminal's rest (plain reads from its `last_id` until empty), so a publish that
/// was acknowledged just before goose stopped still counts as delivered.
async fn catch_up(http: &reqwest::Client, s: &Shared, t: &Endpoint) -> Result<()> {
    let terminals: Vec<usize> = s
        .terminals
        .lock()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    for me in terminals {
        loop {
            let after = s.cursor(me);
            if absorb(s, me, &read(http, t, &after).await?, None) == 0 {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ids: &[&str]) -> TerminalLog {
        TerminalLog {
            seen: ids.iter().map(|s| s.to_string()).collect(),
            last_id: ids.last().map_or_else(String::new, |s| s.to_string()),
            joined_ms: None,
        }
    }

    /// A run's requests go to the target stream's events URL (with or without a trailing `/`
    /// on the base URL), long-polls with their query, all with a sensitive bearer header; a
    /// base URL or a token that cannot make them is refused with its reason.
    #[test]
    fn the_endpoint_is_the_streams_events_url_and_a_bearer_header() {
        let target = |url: &str, token: &str| Target {
            url: url.into(),
            token: token.into(),
            stream: "lt:gw".into(),
        };
        for base in ["http://127.0.0.1:9468", "http://127.0.0.1:9468/"] {
            let e = Endpoint::new(&target(base, "tok")).unwrap();
            assert_eq!(e.events.as_str(), "http://127.0.0.1:9468/v1/streams/lt:gw/events");
            assert_eq!(
                e.read_url("1-2", 1000).as_str(),
                "http://127.0.0.1:9468/v1/streams/lt:gw/events?after=1-2&count=500&block_ms=1000"
            );
            assert_eq!(e.auth, "Bearer tok");
            assert!(e.auth.is_sensitive());
        }
        let err = Endpoint::new(&target("http://127.0.0.1:9468", "to\nk")).unwrap_err();
        assert!(err.to_string().contains("bearer token"), "{err}");
        let err = Endpoint::new(&target("not a url", "tok")).unwrap_err();
        assert!(err.to_string().contains("gateway URL"), "{err}");
    }

    /// A terminal times the entries written since its first long-poll was sent, from their id
    /// time to its receipt; the backlog it found when it joined is logged but not timed, and
    /// catch-up reads (no timing) are not timed either.
    #[test]
    fn deliveries_are_timed_from_the_terminals_first_poll() {
        let s = Shared::default();
        let answer = |ids: &[&str]| ReadAnswer {
            events: ids
                .iter()
                .map(|id| ReadEntry {
                    entry_id: id.to_string(),
                })
                .collect(),
            last_id: ids.last().map_or_else(String::new, |id| id.to_string()),
        };
        assert_eq!(absorb(&s, 7, &answer(&["1000-0", "3000-0"]), Some((2000, 3500))), 2);
        assert_eq!(absorb(&s, 7, &answer(&["2500-0"]), Some((4000, 5000))), 1);
        assert_eq!(absorb(&s, 7, &answer(&["6000-0"]), None), 1);
        assert_eq!(*s.delivery_ms.lock().unwrap(), [500, 2500]);
        let m = s.terminals.lock().unwrap();
        assert_eq!(m[&7].seen, ["1000-0", "3000-0", "2500-0", "6000-0"]);
        assert_eq!(m[&7].last_id, "6000-0");
    }

    /// The check counts, per terminal, acknowledged ids never seen, ids seen twice and ids not
    /// after their predecessor (numerically: 10-0 is after 9-5).
    #[test]
    fn verify_counts_losses_duplicates_and_disorder() {
        let posted: Vec<String> = ["9-5", "10-0", "10-1"].iter().map(|s| s.to_string()).collect();
        let mut terminals = HashMap::new();
        terminals.insert(0, log(&["9-5", "10-0", "10-1"]));
        assert_eq!(verify(&posted, &terminals), (0, 0, 0));
        terminals.insert(1, log(&["9-5", "10-1", "10-1"]));
        terminals.insert(2, log(&["10-0", "9-5", "10-1"]));
        assert_eq!(verify(&posted, &terminals), (1, 1, 2));
    }
}
