//! `gateway`: the HTTP gateway against a real Redis: auth, allow-lists, publish and long-poll
//! reads, idempotency, JSON errors, Redis down, and shutdown during a long-poll.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{json, Value};

use mt5_fixtures::redis;

use crate::support::{closed_port, run_with, Hub, Service};

/// The token the tests configure.
const TOKEN: &str = "gw-tok-3c1e9a7f";

/// The gateway's env on `hub`: `input` readable and writable, `other` readable only.
fn gateway_env(hub: &Hub) -> Vec<(String, String)> {
    let mut env = hub.env.clone();
    env.extend([
        ("MT5_GATEWAY_TOKEN".to_string(), TOKEN.to_string()),
        (
            "MT5_HTTP__GATEWAY__READ_STREAMS".to_string(),
            format!(r#"["{}", "{}"]"#, hub.input, hub.other),
        ),
        (
            "MT5_HTTP__GATEWAY__WRITE_STREAMS".to_string(),
            format!(r#"["{}"]"#, hub.input),
        ),
        ("MT5_HTTP__GATEWAY__MAX_BODY_BYTES".to_string(), "2048".to_string()),
    ]);
    env
}

/// A gateway on `hub` with `gateway_env` and the settings `extra` (env name, value), once it is
/// ready.
async fn ready_gateway(hub: &Hub, extra: &[(&str, &str)]) -> Service {
    let mut env = gateway_env(hub);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let svc = Service::start(&env, &["gateway"]).await;
    svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200).await;
    svc
}

/// A client for `svc`'s gateway.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(svc: &Service) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: svc.url(""),
        }
    }

    fn events(&self, stream: &str) -> String {
        format!("{}/v1/streams/{stream}/events", self.base)
    }

    async fn post(&self, stream: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.events(stream))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    async fn get(&self, stream: &str, query: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}?{query}", self.events(stream)))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        answer(resp).await
    }

    /// [`Client::get`] on a task of its own (a long-poll to answer while the test goes on),
    /// with the time it took.
    fn spawn_get(&self, stream: &str, query: &str) -> tokio::task::JoinHandle<((u16, Value), Duration)> {
        let (http, url) = (self.http.clone(), format!("{}?{query}", self.events(stream)));
        tokio::spawn(async move {
            let start = Instant::now();
            let resp = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
            (answer(resp).await, start.elapsed())
        })
    }
}

async fn answer(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// Waits until `n` reads with a `block_ms` are waiting (`mt5_gateway_long_polls_waiting`): each
/// has resolved where it starts, so whatever is written from now on is in its answer.
async fn wait_for_long_polls(svc: &Service, n: usize) {
    let line = format!("mt5_gateway_long_polls_waiting {n}");
    svc.wait_for("/metrics", Duration::from_secs(20), |s, body| {
        s == 200 && body.lines().any(|l| l == line)
    })
    .await;
}

/// The `error.code` of an error answer.
fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
}

/// Without `MT5_GATEWAY_TOKEN` the gateway does not start: exit 2, naming the variable.
#[tokio::test]
async fn the_gateway_refuses_to_start_without_a_token() {
    let env = vec![("MT5_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string())];
    let run = run_with(&env, &["gateway"], None).await;
    run.code(2);
    assert!(run.stderr.contains("MT5_GATEWAY_TOKEN"), "{}", run.stderr);
}

/// `/v1` needs the bearer token (401 with `WWW-Authenticate: Bearer` without it, with a wrong
/// one or with the token alone, as JSON; the scheme in any case); `/healthz` does not.
#[tokio::test]
async fn requests_without_the_bearer_token_are_refused() {
    let hub = Hub::start().await;
    let svc = Service::start(&gateway_env(&hub), &["gateway"]).await;
    let c = Client::new(&svc);
    let url = format!("{}?after=0", c.events(&hub.input));
    for auth in [None, Some("Bearer wrong"), Some(TOKEN), Some("Basic Zm9vOmJhcg==")] {
        let mut req = c.http.get(&url);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "auth {auth:?}");
        assert_eq!(resp.headers()[WWW_AUTHENTICATE], "Bearer");
        let (_, body) = answer(resp).await;
        assert_eq!(code(&body), "unauthorized");
    }
    // The scheme is case-insensitive.
    let resp = c
        .http
        .get(&url)
        .header(AUTHORIZATION, format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status().as_u16(), 401);
    assert_eq!(svc.get("/healthz").await.0, 200);
    svc.terminate(Duration::from_secs(10)).await;
}

/// Posted events (one, then an array) are read back decoded, in order, each once: `last_id`
/// continues where the previous read ended; the first post is 201 with its ids.
#[tokio::test]
async fn posted_events_are_read_back_in_order_once() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);

    let (status, one) = c
        .post(
            &hub.input,
            &json!({"type": "mt5.order.v1", "data": {"n": 0}, "extensions": {"ticker": "EURUSD"}}),
        )
        .await;
    assert_eq!(status, 201, "{one}");
    assert_eq!(one["duplicate"], false);
    assert!(one["event_id"].as_str().is_some_and(|s| !s.is_empty()), "{one}");
    let batch: Vec<Value> = (1..=3)
        .map(|n| json!({"type": "mt5.order.v1", "data": {"n": n}}))
        .collect();
    let (status, many) = c.post(&hub.input, &Value::Array(batch)).await;
    assert_eq!(status, 201, "{many}");
    assert_eq!(many["results"].as_array().unwrap().len(), 3);

    let (status, first) = c.get(&hub.input, "after=0&count=2").await;
    assert_eq!(status, 200, "{first}");
    let (_, rest) = c
        .get(&hub.input, &format!("after={}", first["last_id"].as_str().unwrap()))
        .await;
    let seen: Vec<&Value> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["events"].as_array().unwrap())
        .collect();
    let ns: Vec<i64> = seen.iter().map(|e| e["event"]["data"]["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [0, 1, 2, 3], "{first} {rest}");
    assert_eq!(seen[0]["entry_id"], one["entry_id"]);
    assert_eq!(seen[0]["event"]["id"], one["event_id"]);
    assert_eq!(seen[0]["event"]["type"], "mt5.order.v1");
    assert_eq!(seen[0]["event"]["source"], "mt5-hub/gateway");
    assert_eq!(seen[0]["event"]["extensions"]["ticker"], "EURUSD");
    assert_eq!(rest["last_id"], seen[3]["entry_id"]);

    // Nothing after the end: empty, and `last_id` stays where it was.
    let (_, empty) = c
        .get(&hub.input, &format!("after={}", rest["last_id"].as_str().unwrap()))
        .await;
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["last_id"], rest["last_id"]);
    svc.terminate(Duration::from_secs(10)).await;
}

/// A POST of an array is published as one batch: 100 events without keys are one
/// `MULTI`/`EXEC` of 100 `XADD`s, 100 with keys one call of the publish script; a read right
/// after finds them all.
#[tokio::test]
async fn an_array_of_100_events_is_published_as_one_batch() {
    let hub = Hub::start().await;
    let mut env = gateway_env(&hub);
    env.retain(|(k, _)| k != "MT5_HTTP__GATEWAY__MAX_BODY_BYTES");
    let svc = Service::start(&env, &["gateway"]).await;
    let c = Client::new(&svc);
    svc.wait_for("/readyz", Duration::from_secs(20), |s, _| s == 200).await;
    // One keyed event first, so the publish script is loaded before counting.
    let (status, body) = c
        .post(
            &hub.input,
            &json!({"type": "mt5.order.v1", "data": {}, "idempotency_key": "warm"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let calls = |cmd: &'static str| hub.fx.command_calls(cmd);
    let (multi, exec, xadd, evalsha) = (
        calls("multi").await.unwrap(),
        calls("exec").await.unwrap(),
        calls("xadd").await.unwrap(),
        calls("evalsha").await.unwrap(),
    );

    let plain: Vec<Value> = (0..100)
        .map(|n| json!({"type": "mt5.order.v1", "data": {"n": n}}))
        .collect();
    let (status, body) = c.post(&hub.input, &Value::Array(plain)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 100);
    assert_eq!(calls("multi").await.unwrap() - multi, 1, "one transaction");
    assert_eq!(calls("exec").await.unwrap() - exec, 1);
    assert_eq!(calls("xadd").await.unwrap() - xadd, 100);

    let keyed: Vec<Value> = (0..100)
        .map(|n| json!({"type": "mt5.order.v1", "data": {"n": n}, "idempotency_key": format!("k{n}")}))
        .collect();
    let (status, body) = c.post(&hub.input, &Value::Array(keyed)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 100);
    assert_eq!(calls("evalsha").await.unwrap() - evalsha, 1, "one script call");

    // Read right after the acknowledgement: every event is there (the gateway's tail, one read
    // behind, does not answer a read short of its count).
    let (_, all) = c.get(&hub.input, "after=0&count=1000").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 201, "{all}");
    svc.terminate(Duration::from_secs(10)).await;
}

/// A long-poll (`block_ms`, no `after`: from now on) answers as soon as an event arrives, not
/// at the end of its block, and without `block_ms` a read answers at once.
#[tokio::test]
async fn a_long_poll_answers_as_soon_as_an_event_arrives() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);
    // An old event the long-poll must not return.
    c.post(&hub.input, &json!({"type": "t.v1", "data": "old"})).await;

    let poll = c.spawn_get(&hub.input, "block_ms=20000");
    wait_for_long_polls(&svc, 1).await;
    let (_, posted) = c.post(&hub.input, &json!({"type": "t.v1", "data": "new"})).await;
    let ((status, body), took) = poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["events"][0]["event"]["data"], "new");
    assert_eq!(body["last_id"], posted["entry_id"]);
    assert!(
        took < Duration::from_secs(15),
        "the long-poll waited its whole block: {took:?}"
    );
    svc.terminate(Duration::from_secs(10)).await;
}

/// With `linger_ms` set, a long-poll that got its first event waits that long for more: two
/// events posted 100 ms apart come in one answer, in order, and the answer comes no sooner than
/// the linger. (With the default of 5 ms the second would be left for the next poll.)
#[tokio::test]
async fn a_long_poll_lingers_for_the_events_that_follow_its_first() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[("MT5_HTTP__GATEWAY__LINGER_MS", "600")]).await;
    let c = Client::new(&svc);

    let poll = c.spawn_get(&hub.input, "block_ms=20000&count=10");
    wait_for_long_polls(&svc, 1).await;
    let start = Instant::now();
    c.post(&hub.input, &json!({"type": "t.v1", "data": "first"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, second) = c.post(&hub.input, &json!({"type": "t.v1", "data": "second"})).await;
    let ((status, body), _) = poll.await.unwrap();
    let took = start.elapsed();
    assert_eq!(status, 200, "{body}");
    let data: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["event"]["data"])
        .collect();
    assert_eq!(data, [&json!("first"), &json!("second")], "{body}");
    assert_eq!(body["last_id"], second["entry_id"]);
    assert!(
        took >= Duration::from_millis(500),
        "answered before the linger: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "waited its whole block: {took:?}");
    svc.terminate(Duration::from_secs(10)).await;
}

/// A retried post with the same `Idempotency-Key` header writes once: the second answer is 200
/// `duplicate: true` with the first entry id.
#[tokio::test]
async fn a_retried_post_with_its_idempotency_key_writes_once() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = c
            .http
            .post(c.events(&hub.input))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "order-42")
            .json(&json!({"type": "mt5.order.v1", "data": {"ticket": 42}}))
            .send()
            .await
            .unwrap();
        answers.push(answer(resp).await);
    }
    assert_eq!(answers[0].0, 201, "{:?}", answers[0]);
    assert_eq!(answers[1].0, 200, "{:?}", answers[1]);
    assert_eq!(answers[1].1["duplicate"], true);
    assert_eq!(answers[1].1["event_id"], Value::Null);
    assert_eq!(answers[0].1["entry_id"], answers[1].1["entry_id"]);
    assert_eq!(hub.xlen(&hub.input).await, 1);
    svc.terminate(Duration::from_secs(10)).await;
}

/// Streams off the allow-lists are refused (403): a write to a read-only stream, a read of an
/// unlisted one; nothing is written.
#[tokio::test]
async fn streams_off_the_allow_lists_are_refused() {
    let hub = Hub::start().await;
    let svc = Service::start(&gateway_env(&hub), &["gateway"]).await;
    let c = Client::new(&svc);
    let (status, body) = c.post(&hub.other, &json!({"type": "t.v1", "data": 1})).await;
    assert_eq!((status, code(&body)), (403, "stream_not_allowed"), "{body}");
    let (status, body) = c.get(&hub.dlq, "after=0").await;
    assert_eq!((status, code(&body)), (403, "stream_not_allowed"), "{body}");
    assert_eq!(hub.xlen(&hub.other).await, 0);
    svc.terminate(Duration::from_secs(10)).await;
}

/// Bad input gets a JSON error naming the problem, and nothing from a bad request is written:
/// invalid JSON, a missing `type`, a bad event in an array, a body over `max_body_bytes`, a
/// wrong content type, bad query parameters.
#[tokio::test]
async fn bad_input_gets_json_errors_and_writes_nothing() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);
    let raw = |body: &'static str, content_type: &'static str| {
        c.http
            .post(c.events(&hub.input))
            .bearer_auth(TOKEN)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    let (status, body) = answer(raw("{not json", "application/json").await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(code(&body) == "bad_request" && body["error"]["message"].as_str().unwrap().contains("JSON"));
    let (status, body) = answer(raw(r#"{"type":"t.v1","data":1}"#, "text/plain").await.unwrap()).await;
    assert_eq!((status, code(&body)), (415, "unsupported_media_type"), "{body}");
    let (status, body) = c.post(&hub.input, &json!({"data": 1})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`type`"), "{body}");
    let (status, body) = c
        .post(&hub.input, &json!([{"type": "t.v1", "data": 1}, {"type": "t.v1"}]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().starts_with("event 1:"),
        "{body}"
    );
    let (status, body) = c
        .post(&hub.input, &json!({"type": "t.v1", "data": "x".repeat(4096)}))
        .await;
    assert_eq!((status, code(&body)), (413, "body_too_large"), "{body}");
    assert_eq!(hub.xlen(&hub.input).await, 0, "a refused request wrote something");

    for query in [
        "count=0",
        "count=abc",
        "count=100000",
        "after=bogus",
        "block_ms=999999",
        "from=0",
    ] {
        let (status, body) = c.get(&hub.input, query).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{query}: {body}");
    }
    svc.terminate(Duration::from_secs(10)).await;
}

/// With Redis unreachable the gateway still starts and serves; requests get 503 with
/// `Retry-After`, and `/readyz` says not ready.
#[tokio::test]
async fn without_redis_requests_get_503_with_retry_after() {
    let mut env = vec![
        ("MT5_GATEWAY_TOKEN".to_string(), TOKEN.to_string()),
        (
            "MT5_REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{}", closed_port()),
        ),
        ("MT5_HTTP__GATEWAY__READ_STREAMS".to_string(), r#"["s"]"#.to_string()),
        ("MT5_HTTP__GATEWAY__WRITE_STREAMS".to_string(), r#"["s"]"#.to_string()),
        ("MT5_BUS__RETRY__MAX_ATTEMPTS".to_string(), "2".to_string()),
        ("MT5_BUS__RETRY__INITIAL_MS".to_string(), "10".to_string()),
    ];
    env.push(("MT5_BUS__RETRY__MAX_MS".to_string(), "20".to_string()));
    let svc = Service::start(&env, &["gateway"]).await;
    let c = Client::new(&svc);
    for resp in [
        c.http
            .post(c.events("s"))
            .bearer_auth(TOKEN)
            .json(&json!({"type": "t.v1", "data": 1}))
            .send()
            .await
            .unwrap(),
        c.http
            .get(format!("{}?after=0", c.events("s")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        let (_, body) = answer(resp).await;
        assert_eq!(code(&body), "unavailable", "{body}");
    }
    assert_eq!(svc.get("/readyz").await.0, 503);
    svc.terminate(Duration::from_secs(10)).await;
}

/// SIGTERM during a long-poll: the poll is answered (empty) and the process exits 0 at once,
/// not at the end of the block.
#[tokio::test]
async fn sigterm_ends_a_long_poll_and_the_process_promptly() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);
    let poll = {
        let (http, url) = (c.http.clone(), format!("{}?block_ms=30000", c.events(&hub.input)));
        tokio::spawn(async move { http.get(url).bearer_auth(TOKEN).send().await })
    };
    wait_for_long_polls(&svc, 1).await;
    let start = Instant::now();
    let (code, _) = svc.terminate(Duration::from_secs(15)).await;
    assert_eq!(code, 0);
    // Well under the shutdown timeout (8 s), after which the components would be aborted.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        start.elapsed()
    );
    let resp = poll.await.unwrap().expect("the long-poll is answered, not cut");
    let (status, body) = answer(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]));
}

/// Terminals long-polling one stream together each see every entry once, in stream order:
/// the gateway's posts and entries another producer writes straight into Redis, in reads of at
/// most `count`. They are served from the shared tail: Redis runs far fewer `XREAD`s than the
/// terminals make reads (without the tail each read is one `XREAD`).
///
/// The linger is off: with it, a read gathers the entries of several posts, so the terminals'
/// read count falls towards the follower's `XREAD` count and the comparison says nothing about
/// the tail (a CI run failed with 80 `XREAD`s for 151 reads). The linger has its own tests.
#[tokio::test]
async fn terminals_long_polling_together_each_see_every_entry_once_in_order() {
    const TERMINALS: usize = 6;
    const POSTS: usize = 60;
    const DIRECT: usize = 20;
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[("MT5_HTTP__GATEWAY__LINGER_MS", "0")]).await;
    let c = Client::new(&svc);
    let (_, start) = c.get(&hub.input, "count=1").await;
    let start = start["last_id"].as_str().unwrap().to_string();
    let xreads_before = hub.fx.command_calls("xread").await.unwrap();

    let terminals: Vec<_> = (0..TERMINALS)
        .map(|_| {
            let (http, url, mut after) = (c.http.clone(), c.events(&hub.input), start.clone());
            tokio::spawn(async move {
                let (mut seen, mut reads) = (Vec::new(), 0);
                while seen.len() < POSTS + DIRECT {
                    let resp = http
                        .get(format!("{url}?after={after}&count=7&block_ms=5000"))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .unwrap();
                    let (status, body) = answer(resp).await;
                    assert_eq!(status, 200, "{body}");
                    let events = body["events"].as_array().unwrap();
                    assert!(events.len() <= 7, "{body}");
                    seen.extend(events.iter().map(|e| e["entry_id"].as_str().unwrap().to_string()));
                    after = body["last_id"].as_str().unwrap().to_string();
                    reads += 1;
                }
                (seen, reads)
            })
        })
        .collect();
    wait_for_long_polls(&svc, TERMINALS).await;
    let mut conn = hub.conn().await;
    for n in 0..POSTS {
        let (status, body) = c.post(&hub.input, &json!({"type": "t.v1", "data": {"n": n}})).await;
        assert_eq!(status, 201, "{body}");
        if n % 3 == 0 {
            let _: String = redis::cmd("XADD")
                .arg(&hub.input)
                .arg("*")
                .arg(&[
                    ("id", format!("direct-{n}")),
                    ("type", "t.v1".into()),
                    ("data", "1".into()),
                ])
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
    // The stream is this test's own: everything in it was written above.
    let written: Vec<String> = hub.entries(&hub.input).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(written.len(), POSTS + DIRECT);
    let mut reads = 0;
    for t in terminals {
        let (seen, r) = tokio::time::timeout(Duration::from_secs(30), t).await.unwrap().unwrap();
        assert_eq!(seen, written, "a terminal's entries differ from the stream's");
        reads += r;
    }
    let xreads = hub.fx.command_calls("xread").await.unwrap() - xreads_before;
    assert!(
        xreads * 2 < reads as u64,
        "{xreads} XREADs for {reads} reads: the terminals were not served from the shared tail"
    );
    svc.terminate(Duration::from_secs(10)).await;
}

/// With a tail of 4 entries, reads from further back are answered from Redis, reads near the
/// end from the tail, and both give the same answers as a gateway without a tail.
#[tokio::test]
async fn reads_from_before_the_tail_come_from_redis_and_answers_match_a_gateway_without_one() {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[("MT5_HTTP__GATEWAY__TAIL_ENTRIES", "4")]).await;
    let plain = ready_gateway(&hub, &[("MT5_HTTP__GATEWAY__TAIL_ENTRIES", "0")]).await;
    let (c, p) = (Client::new(&svc), Client::new(&plain));

    let batch: Vec<Value> = (0..10).map(|n| json!({"type": "t.v1", "data": {"n": n}})).collect();
    let (status, posted) = c.post(&hub.input, &Value::Array(batch)).await;
    assert_eq!(status, 201, "{posted}");
    let ids: Vec<String> = posted["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["entry_id"].as_str().unwrap().to_string())
        .collect();
    // Once the follower has the batch, a long-poll after the 9th returns the 10th.
    let (_, last) = c.get(&hub.input, &format!("after={}&block_ms=5000", ids[8])).await;
    assert_eq!(last["last_id"], ids[9].as_str(), "{last}");

    for (after, count, want) in [
        ("0".to_string(), 100, &ids[..]),
        (ids[1].clone(), 3, &ids[2..5]),
        (ids[5].clone(), 100, &ids[6..]),
        (ids[6].clone(), 2, &ids[7..9]),
        (ids[9].clone(), 100, &ids[10..]),
    ] {
        let query = format!("after={after}&count={count}");
        let (status, got) = c.get(&hub.input, &query).await;
        assert_eq!(status, 200, "{got}");
        let got_ids: Vec<&str> = got["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry_id"].as_str().unwrap())
            .collect();
        assert_eq!(got_ids, want, "after={after} count={count}: {got}");
        let (_, without) = p.get(&hub.input, &query).await;
        assert_eq!(got, without, "after={after} count={count}: the tail's answer differs");
    }
    svc.terminate(Duration::from_secs(10)).await;
    plain.terminate(Duration::from_secs(10)).await;
}

/// A ready gateway on a fresh `Hub`, a client, and the id of one event posted to the input.
async fn gateway_with_one_event() -> (Hub, Service, Client, String) {
    let hub = Hub::start().await;
    let svc = ready_gateway(&hub, &[]).await;
    let c = Client::new(&svc);
    let (_, posted) = c.post(&hub.input, &json!({"type": "t.v1", "data": 1})).await;
    let after = posted["entry_id"].as_str().unwrap().to_string();
    (hub, svc, c, after)
}

/// The shared tail does not hide Redis going away: once the follower lost Redis, long-polls get
/// 503 as they did without it, not empty answers.
#[tokio::test]
async fn with_redis_gone_long_polls_get_503_not_empty_answers() {
    let (mut hub, svc, c, after) = gateway_with_one_event().await;
    let (status, body) = c.get(&hub.input, &format!("after={after}&block_ms=300")).await;
    assert_eq!((status, &body["events"]), (200, &json!([])), "{body}");

    hub.fx.kill().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = c.get(&hub.input, &format!("after={after}&block_ms=300")).await;
        if status == 503 {
            assert_eq!(code(&body), "unavailable", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "long-polls still answered 200 15 s after Redis was killed: {body}"
        );
    }
    svc.terminate(Duration::from_secs(10)).await;
}

/// The most clients blocked in an `XREAD` at once over ~1.2 s (a tail follower's `XREAD` blocks
/// for 1 s at a time, so each follower is seen blocked).
async fn blocked_xreads(admin: &mut mt5_fixtures::admin::Admin) -> usize {
    let mut most = 0;
    for _ in 0..24 {
        let clients = admin.client_list().await.unwrap();
        most = most.max(
            clients
                .iter()
                .filter(|c| c.cmd == "xread" && c.flags.contains('b'))
                .count(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    most
}

/// A long-poll parked on the shared tail is woken when the tail's follower loses Redis, and
/// answers 503 at once: not 200 with no events at the end of its block, as if Redis had been
/// there with nothing new.
#[tokio::test]
async fn a_long_poll_parked_on_the_tail_gets_503_when_redis_goes_away() {
    let (mut hub, svc, c, after) = gateway_with_one_event().await;
    // The input's follower is connected (blocked in its XREAD) before the long-poll starts, so
    // the long-poll waits on the tail and not in an XREAD of its own.
    let mut admin = mt5_fixtures::admin::Admin::connect(&hub.fx.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let followers = loop {
        let n = blocked_xreads(&mut admin).await;
        if n > 0 {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "the tail's follower never blocked in an XREAD"
        );
    };

    let poll = c.spawn_get(&hub.input, &format!("after={after}&block_ms=10000"));
    wait_for_long_polls(&svc, 1).await;
    assert!(
        blocked_xreads(&mut admin).await <= followers,
        "the long-poll went to Redis instead of waiting on the tail"
    );
    drop(admin);

    hub.fx.kill().await.unwrap();
    let ((status, body), took) = poll.await.unwrap();
    assert_eq!(
        status, 503,
        "a long-poll answered {status} after Redis was killed: {body}"
    );
    assert_eq!(code(&body), "unavailable", "{body}");
    assert!(
        took < Duration::from_secs(8),
        "the long-poll waited out its block: {took:?}"
    );
    svc.terminate(Duration::from_secs(10)).await;
}
