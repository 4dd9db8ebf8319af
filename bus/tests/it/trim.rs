//! Trimming: a backlog the group has not acknowledged is never trimmed away in safe mode; with
//! plain MAXLEN the loss is counted.

use std::time::Duration;

use mt5_bus::trim::{run_trimmer, trim_stream};
use mt5_bus::{BusMetrics, PublishOptions, TrimMode};
use mt5_fixtures::RedisFixture;

use crate::support::{assert_zero_loss, configs, conn, consumer, producer, read_all, scripted, wait_until, Names};

async fn publish_n(p: &mt5_bus::EventProducer, stream: &str, n: u64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| (scripted(i, &["emit"]), PublishOptions::default()))
            .collect();
        p.publish_batch(stream, &batch).await.unwrap();
    }
}

/// A backlog five times the cap that the group has not read survives trimming whole; once the
/// group has processed it, trimming brings the stream back to about the cap, and nothing was lost.
#[tokio::test]
async fn zero_loss_backlog_larger_than_the_cap_is_never_trimmed_before_ack() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 200;
    bus.trim.backlog_limit = 0;
    let p = producer(&redis, &bus).await;
    publish_n(&p, &n.input, 1000).await;
    let mut c = conn(&fx).await;
    let metrics = BusMetrics::default();
    let r = trim_stream(&mut c, &n.input, &bus, &metrics).await.unwrap();
    assert_eq!(r.trimmed, 0, "nothing unread may go: {r:?}");
    assert!(r.held_back);
    let len: u64 = redis::cmd("XLEN").arg(&n.input).query_async(&mut c).await.unwrap();
    assert_eq!(len, 1000);

    // Half read and acknowledged, one batch read but still pending: the floor stops at the
    // oldest pending entry.
    let mut consumer = consumer(&redis, &bus, &n, None);
    for _ in 0..5 {
        consumer.step(Some(Duration::from_millis(5))).await.unwrap();
    }
    let held = consumer.fetch(Some(Duration::from_millis(5))).await.unwrap();
    let oldest_held = held[0].entry.id.clone();
    trim_stream(&mut c, &n.input, &bus, &metrics).await.unwrap();
    let first_id = read_all(&mut c, &n.input).await[0].0.clone();
    assert!(
        first_id.parse::<mt5_bus::StreamId>().unwrap() <= oldest_held.parse::<mt5_bus::StreamId>().unwrap(),
        "{first_id} > held {oldest_held}"
    );
    consumer.process(held).await.unwrap();
    for _ in 0..10 {
        consumer.step(Some(Duration::from_millis(5))).await.unwrap();
    }
    for _ in 0..3 {
        trim_stream(&mut c, &n.input, &bus, &metrics).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN").arg(&n.input).query_async(&mut c).await.unwrap();
    assert!(len < 400, "trimmed near the cap of 200 once acknowledged, got {len}");
    assert_eq!(
        metrics.trimmed_unacked.with_label_values(&[&n.input, &n.group]).get(),
        0
    );
    assert_zero_loss(&mut c, &n, 1000).await;
}

/// With plain MAXLEN trimming opted in, entries the group had not acknowledged are trimmed and
/// every one of them is counted in `mt5_stream_trimmed_unacked_total`.
#[tokio::test]
async fn maxlen_trimming_counts_every_unacknowledged_loss() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 200;
    bus.trim.backlog_limit = 0;
    bus.trim.maxlen_streams = vec![n.input.clone()];
    assert_eq!(bus.trim.mode_for(&n.input, &n.dlq), TrimMode::Maxlen);
    let p = producer(&redis, &bus).await;
    publish_n(&p, &n.input, 1000).await;
    let mut c = conn(&fx).await;
    // A second group that starts after everything: it loses nothing and is not listed.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&n.input)
        .arg("late")
        .arg("$")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut consumer = consumer(&redis, &bus, &n, None);
    // 100 processed, 100 read and pending, 800 never delivered.
    consumer.step(Some(Duration::from_millis(5))).await.unwrap();
    let _held = consumer.fetch(Some(Duration::from_millis(5))).await.unwrap();
    let metrics = BusMetrics::default();
    let r = trim_stream(&mut c, &n.input, &bus, &metrics).await.unwrap();
    assert_eq!(r.trimmed, 800);
    // Trimmed: entries 0..800. Of those 0..100 were acknowledged; 100..200 pending; 200..800 unread.
    assert_eq!(r.trimmed_unacked, [(n.group.clone(), 700)].into(), "{r:?}");
    assert_eq!(
        metrics.trimmed_unacked.with_label_values(&[&n.input, &n.group]).get(),
        700
    );
    let len: u64 = redis::cmd("XLEN").arg(&n.input).query_async(&mut c).await.unwrap();
    assert_eq!(len, 200);
}

/// The dead letter stream is never trimmed, whatever its length.
#[tokio::test]
async fn the_dead_letter_stream_is_never_trimmed() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 10;
    bus.trim.backlog_limit = 0;
    bus.trim.mode = TrimMode::Maxlen;
    let p = producer(&redis, &bus).await;
    publish_n(&p, &n.dlq, 50).await;
    let mut c = conn(&fx).await;
    let r = trim_stream(&mut c, &n.dlq, &bus, &BusMetrics::default()).await.unwrap();
    assert_eq!(r.trimmed, 0);
    let len: u64 = redis::cmd("XLEN").arg(&n.dlq).query_async(&mut c).await.unwrap();
    assert_eq!(len, 50);
}

/// A trim report names its stream and the length it had before the trim, whether the stream is
/// over its cap (a floor is computed; `XTRIM MINID ~` may still remove nothing from so short a
/// stream) or at it (left alone).
#[tokio::test]
async fn a_trim_report_names_the_stream_and_its_length_before() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 10;
    bus.trim.backlog_limit = 0;
    bus.groups.clear();
    let p = producer(&redis, &bus).await;
    let short = format!("{}:short", n.input);
    publish_n(&p, &short, 10).await;
    publish_n(&p, &n.output, 30).await;
    let mut c = conn(&fx).await;
    let metrics = BusMetrics::default();
    let r = trim_stream(&mut c, &short, &bus, &metrics).await.unwrap();
    assert_eq!(
        (r.stream.as_str(), r.length_before, r.trimmed),
        (short.as_str(), 10, 0),
        "{r:?}"
    );
    assert_eq!(r.floor, None, "at the cap, no floor: {r:?}");
    let shorter = format!("{}:shorter", n.input);
    publish_n(&p, &shorter, 3).await;
    let r = trim_stream(&mut c, &shorter, &bus, &metrics).await.unwrap();
    assert_eq!(
        (r.length_before, r.trimmed, r.floor.as_deref()),
        (3, 0, None),
        "under the cap: {r:?}"
    );
    let r = trim_stream(&mut c, &n.output, &bus, &metrics).await.unwrap();
    assert_eq!((r.stream.as_str(), r.length_before), (n.output.as_str(), 30), "{r:?}");
    assert!(r.floor.is_some(), "over the cap, a floor was computed: {r:?}");
}

/// `run_trimmer` trims its streams every `trim.interval_ms`, not once: a stream that grows past
/// its cap after the first tick is trimmed again; it returns when cancelled.
#[tokio::test]
async fn the_trimmer_trims_its_streams_every_interval_until_cancelled() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.trim.max_len = 10;
    bus.trim.backlog_limit = 0;
    bus.trim.interval_ms = 50;
    bus.trim.maxlen_streams = vec![n.input.clone()];
    let p = producer(&redis, &bus).await;
    let c = conn(&fx).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let metrics = BusMetrics::default();
    let trimmer = tokio::spawn(run_trimmer(
        c.clone(),
        vec![n.input.clone()],
        bus.clone(),
        metrics,
        cancel.clone(),
    ));
    let len_is = |want: u64| {
        let (c, input) = (c.clone(), n.input.clone());
        move || {
            let (mut c, input) = (c.clone(), input.clone());
            async move { mt5_bus::query::len(&mut c, &input).await.unwrap() == want }
        }
    };
    for round in 0..2 {
        publish_n(&p, &n.input, 30).await;
        assert!(
            wait_until(Duration::from_secs(5), len_is(10)).await.is_some(),
            "round {round}: trimmed to the cap of 10"
        );
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), trimmer)
        .await
        .expect("the trimmer returns once cancelled")
        .unwrap();
}
