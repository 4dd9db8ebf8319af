//! Redis SIGKILLed and restarted from its AOF under load: with `appendfsync always` nothing
//! acknowledged is lost; with `everysec` the loss is bounded by what the AOF could not yet have
//! written, and what survives is intact and processed exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mt5_bus::{BusMetrics, PublishOptions};
use mt5_fixtures::{Appendfsync, RedisFixture, RedisOptions};
use tokio_util::sync::CancellationToken;

use crate::support::{
    assert_zero_loss, configs, consumer, output_seqs, pending, read_all, scripted, seq_of, wait_until, Names,
};

const EVENTS: u64 = 1500;

/// With `appendfsync everysec` Redis writes its AOF buffer to the file before replying, except
/// while a background fsync is in progress: then it postpones the write for up to 2 s (each
/// time counted in `aof_delayed_fsync`). A written buffer is in the kernel's page cache, which a
/// SIGKILL of the process does not lose. So only publishes acknowledged within about 2 s before
/// the kill can be lost; this is that bound with a margin for a loaded machine.
const EVERYSEC_LOSS_WINDOW: Duration = Duration::from_secs(4);

struct Run {
    /// Seqs whose publish returned an entry id, with the event id and when the publish returned.
    acknowledged: HashMap<u64, (String, Instant)>,
    /// When the SIGKILL was sent.
    killed_at: Instant,
    run_id_before: String,
    run_id_after: String,
    aof_delayed_fsync: Option<String>,
}

/// Publishes `EVENTS` keyed events (pausing `pause` every 20) while two consumers run; kills
/// Redis with SIGKILL after a third of them and restarts it from the same data dir; waits for
/// everything to finish.
async fn kill_redis_under_load(fx: &mut RedisFixture, n: &Names, pause: Duration) -> Run {
    let (redis, mut bus) = configs(fx, n);
    bus.retry.max_ms = 200;
    let cancel = CancellationToken::new();
    let producer = mt5_bus::EventProducer::connect(&redis, &bus, BusMetrics::default(), cancel.clone())
        .await
        .unwrap()
        .with_unbounded_retries();
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let published = published.clone();
        let input = n.input.clone();
        tokio::spawn(async move {
            let mut acked = HashMap::new();
            for i in 0..EVENTS {
                // The key makes a publish retried after a lost reply a no-op.
                let opts = PublishOptions::idempotent(format!("seq-{i}"));
                let event = scripted(i, &["emit"]);
                producer.publish_with(&input, &event, &opts).await.unwrap();
                acked.insert(i, (event.id, Instant::now()));
                published.fetch_add(1, Ordering::SeqCst);
                if i % 20 == 0 {
                    tokio::time::sleep(pause).await;
                }
            }
            acked
        })
    };
    let consumers: Vec<_> = ["c1", "c2"]
        .into_iter()
        .map(|name| {
            let c = consumer(&redis, &bus, n, Some(name));
            tokio::spawn(c.run(cancel.clone()))
        })
        .collect();

    wait_until(Duration::from_secs(30), || {
        let p = published.clone();
        async move { p.load(Ordering::SeqCst) >= EVENTS / 3 }
    })
    .await
    .expect("a third published");
    let run_id_before = fx.run_id().await.unwrap();
    let aof_delayed_fsync = fx.info_field("persistence", "aof_delayed_fsync").await.unwrap();
    let killed_at = Instant::now();
    fx.kill().await.unwrap();
    let at_kill = published.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    fx.restart().await.unwrap();
    let run_id_after = fx.run_id().await.unwrap();
    println!("Redis SIGKILLed after {at_kill} acknowledged publishes and restarted from its AOF");

    let acknowledged = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("publisher finishes")
        .unwrap();
    let c = fx.connection().await;
    let drained = wait_until(Duration::from_secs(30), || {
        let mut c = c.clone();
        let (input, output, group) = (n.input.clone(), n.output.clone(), n.group.clone());
        async move {
            let len: u64 = redis::cmd("XLEN")
                .arg(&input)
                .query_async(&mut c)
                .await
                .unwrap_or(u64::MAX);
            let done = output_seqs(&mut c, &output).await.len() as u64;
            pending(&mut c, &input, &group).await == 0 && done >= len
        }
    })
    .await;
    let drained = drained.expect("the group drains within 30 s of the publisher finishing");
    println!("drained {drained:?} after the publisher finished");
    cancel.cancel();
    for t in consumers {
        t.await.unwrap().unwrap();
    }
    Run {
        acknowledged,
        killed_at,
        run_id_before,
        run_id_after,
        aof_delayed_fsync,
    }
}

/// With `appendfsync always`, a Redis SIGKILL and restart under load loses no acknowledged
/// publish, duplicates no effect, and the PEL drains.
#[tokio::test]
async fn zero_loss_redis_sigkill_and_restart_with_appendfsync_always() {
    let mut fx = RedisFixture::start_with(RedisOptions {
        appendfsync: Appendfsync::Always,
        ..RedisOptions::default()
    })
    .await
    .unwrap();
    let n = Names::new(&fx);
    let run = kill_redis_under_load(&mut fx, &n, Duration::from_millis(2)).await;
    assert_ne!(
        run.run_id_before, run.run_id_after,
        "the fault must land: Redis restarted"
    );
    assert_eq!(run.acknowledged.len() as u64, EVENTS);
    let mut c = fx.connection().await;
    assert_zero_loss(&mut c, &n, EVENTS).await;
}

/// With `appendfsync everysec`, a Redis SIGKILL under load can lose only publishes
/// acknowledged within [`EVERYSEC_LOSS_WINDOW`] before the kill (the publisher runs for longer
/// than that before it, so the bound is tested); every surviving entry is the published one
/// byte for byte, none is duplicated, and each is processed exactly once. The loss and
/// `aof_delayed_fsync` are printed.
#[tokio::test]
async fn everysec_redis_sigkill_loses_only_the_unsynced_tail_and_keeps_the_rest_intact() {
    let mut fx = RedisFixture::start_with(RedisOptions {
        appendfsync: Appendfsync::Everysec,
        ..RedisOptions::default()
    })
    .await
    .unwrap();
    let n = Names::new(&fx);
    // About 5 s of publishing before the kill, longer than the loss window.
    let run = kill_redis_under_load(&mut fx, &n, Duration::from_millis(200)).await;
    assert_ne!(
        run.run_id_before, run.run_id_after,
        "the fault must land: Redis restarted"
    );
    assert_eq!(
        run.acknowledged.len() as u64,
        EVENTS,
        "the publisher retries until it succeeds"
    );
    let acked_before_kill = |s: &u64| run.acknowledged[s].1 < run.killed_at;
    assert!(
        run.acknowledged
            .values()
            .any(|(_, at)| *at + EVERYSEC_LOSS_WINDOW < run.killed_at),
        "publishing must have run longer than the loss window before the kill, or the bound tests nothing"
    );

    let mut c = fx.connection().await;
    let input = read_all(&mut c, &n.input).await;
    let mut present: HashSet<u64> = HashSet::new();
    for (entry_id, f) in &input {
        let seq = seq_of(f).unwrap_or_else(|| panic!("entry {entry_id} is not a published event: {f:?}"));
        assert!(present.insert(seq), "seq {seq} is in the stream twice");
        let (event_id, _) = run
            .acknowledged
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} was never acknowledged"));
        assert_eq!(&f["id"], event_id, "entry {entry_id}: the event id survives intact");
        assert_eq!(f["type"], "test.v1");
        let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
        assert_eq!(data, serde_json::json!({ "seq": seq, "plan": ["emit"] }));
    }
    let mut lost: Vec<u64> = run
        .acknowledged
        .keys()
        .filter(|s| !present.contains(s))
        .copied()
        .collect();
    lost.sort_unstable();
    println!(
        "everysec: {} acknowledged ({} before the kill), {} lost by the kill {:?}, aof_delayed_fsync before the kill = {}",
        run.acknowledged.len(),
        run.acknowledged.keys().filter(|s| acked_before_kill(s)).count(),
        lost.len(),
        &lost[..lost.len().min(10)],
        run.aof_delayed_fsync.as_deref().unwrap_or("?")
    );
    for s in &lost {
        let at = run.acknowledged[s].1;
        assert!(
            at < run.killed_at,
            "seq {s} was acknowledged after the restart and lost"
        );
        assert!(
            run.killed_at.duration_since(at) <= EVERYSEC_LOSS_WINDOW,
            "seq {s} was acknowledged {:?} before the kill, longer than the AOF can leave unwritten",
            run.killed_at.duration_since(at)
        );
    }

    // Whatever survived is processed exactly once, with the right input.
    let outputs = read_all(&mut c, &n.output).await;
    let mut processed: HashSet<u64> = HashSet::new();
    for (_, f) in &outputs {
        let data: serde_json::Value = serde_json::from_str(&f["data"]).unwrap();
        let seq = data["seq"].as_u64().unwrap();
        assert!(processed.insert(seq), "duplicated effect for seq {seq}");
        assert_eq!(
            data["raw_id"].as_str(),
            Some(run.acknowledged[&seq].0.as_str()),
            "seq {seq}: the output names its input event"
        );
    }
    assert_eq!(processed, present, "every surviving event is processed");
    assert!(read_all(&mut c, &n.dlq).await.is_empty(), "nothing was dead-lettered");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}
