//! Reclaim: a SIGKILLed consumer's entries through the heartbeat path, stuck entries through
//! the idle path, and in-flight entries that must not be taken.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mt5_bus::metrics::reclaim_kind;
use mt5_bus::{BusMetrics, Consumer, ConsumerOptions, Reclaimer};
use mt5_fixtures::RedisFixture;
use tokio_util::sync::CancellationToken;

use crate::support::{
    assert_zero_loss, configs, conn, consumer, mark_alive, output_seqs, pending, producer, read_as, scripted,
    wait_until, Names, Scripted,
};

const CHILD_TEST: &str = "reclaim::crash_child_holds_a_batch";

/// The body of the child process the crash tests SIGKILL: it reads one batch, never
/// acknowledges it, reports `HELD <n>` and keeps its heartbeat alive until killed. Run only by
/// those tests (through `--ignored --exact`), with its settings in the environment.
#[tokio::test]
#[ignore = "child process body, started and SIGKILLed by the crash tests"]
async fn crash_child_holds_a_batch() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} must be set by the parent test"));
    let names = Names {
        input: var("CHILD_INPUT"),
        output: var("CHILD_OUTPUT"),
        dlq: var("CHILD_DLQ"),
        group: var("CHILD_GROUP"),
    };
    let redis = mt5_bus::RedisConfig::default().with_url(var("CHILD_URL"));
    let mut bus = mt5_bus::BusConfig::default();
    bus.deadletter_stream = names.dlq.clone();
    bus.consumer.heartbeat_ttl_ms = 1000;
    bus.consumer.heartbeat_interval_ms = 200;
    bus.groups = vec![];
    let mut consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&names.input, &names.group).with_name(var("CHILD_NAME")),
        Scripted::new(&names.output),
        BusMetrics::default(),
    )
    .unwrap();
    let batch = consumer.fetch(Some(Duration::from_millis(500))).await.unwrap();
    println!("HELD {}", batch.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        consumer.heartbeat().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spawn_child(fx: &RedisFixture, n: &Names, name: &str) -> (std::process::Child, usize) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env("CHILD_URL", fx.url())
        .env("CHILD_INPUT", &n.input)
        .env("CHILD_OUTPUT", &n.output)
        .env("CHILD_DLQ", &n.dlq)
        .env("CHILD_GROUP", &n.group)
        .env("CHILD_NAME", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let held = loop {
        let line = lines.next().expect("child exited before reporting").unwrap();
        // libtest prints `test <name> ... ` without a newline before the test's own output.
        if let Some((_, n)) = line.split_once("HELD ") {
            break n.trim().parse::<usize>().unwrap();
        }
    };
    (child, held)
}

/// A consumer SIGKILLed while holding a batch: its heartbeat expires and a live consumer claims
/// and processes every entry within seconds; each effect is written once.
#[tokio::test]
async fn zero_loss_killed_consumer_is_reclaimed_through_the_heartbeat_path() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.count = 50;
    let p = producer(&redis, &bus).await;
    for i in 0..50 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let (mut child, held) = spawn_child(&fx, &n, "victim");
    assert_eq!(held, 50, "the victim holds the whole backlog");
    let mut c = conn(&fx).await;
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 50);

    // The survivor connects now: its heartbeat path waits one TTL from its own connect.
    let survivor = consumer(&redis, &bus, &n, Some("survivor"));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(survivor.run(cancel.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        output_seqs(&mut c, &n.output).await.is_empty(),
        "nothing is taken from a live consumer"
    );

    child.kill().unwrap(); // SIGKILL: no destructors, no cleanup, the heartbeat just expires.
    child.wait().unwrap();
    let killed = Instant::now();
    let took = wait_until(Duration::from_secs(15), || {
        let mut c = c.clone();
        let input = n.input.clone();
        let group = n.group.clone();
        async move { pending(&mut c, &input, &group).await == 0 }
    })
    .await;
    let took = took.unwrap_or_else(|| panic!("not reclaimed within 15 s of the kill ({:?})", killed.elapsed()));
    println!(
        "reclaim after SIGKILL: {} ms (heartbeat TTL {} ms)",
        took.as_millis(),
        bus.consumer.heartbeat_ttl_ms
    );
    // Through the heartbeat path, not the idle one (min_idle is 5 minutes): nothing can be
    // taken before the victim's last heartbeat expired (at most one interval before the kill,
    // TTL after it), and everything is taken within a few reclaim intervals after that.
    let ttl = Duration::from_millis(bus.consumer.heartbeat_ttl_ms);
    let interval = Duration::from_millis(bus.consumer.heartbeat_interval_ms);
    assert!(
        took + interval + Duration::from_millis(100) >= ttl,
        "entries were taken {took:?} after the kill, before the victim's heartbeat (TTL {ttl:?}) could expire"
    );
    assert!(
        took <= ttl + Duration::from_secs(5),
        "not reclaimed within seconds of the heartbeat's expiry: {took:?}"
    );
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_zero_loss(&mut c, &n, 50).await;
    let stats = mt5_bus::stats::stream_stats(&mut c, &n.input).await.unwrap();
    assert!(
        stats.groups[0].consumers.iter().all(|x| x.name != "victim"),
        "the dead consumer is removed once its PEL is empty: {:?}",
        stats.groups[0].consumers
    );
}

/// Entries of a live consumer whose handler is stuck are taken by `XAUTOCLAIM` once idle past
/// `min_idle`, and processed once.
#[tokio::test]
async fn stuck_entries_are_reclaimed_after_min_idle() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.reclaim.min_idle_ms = 300;
    let p = producer(&redis, &bus).await;
    for i in 0..5 {
        p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap();
    }
    let mk = |name: &str| consumer(&redis, &bus, &n, Some(name));
    let mut stuck = mk("stuck");
    let held = stuck.fetch(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(held.len(), 5);
    stuck.heartbeat().await.unwrap(); // alive: the heartbeat path must not apply
    let mut rescuer = mk("rescuer");
    rescuer.reclaimer_mut().skip_connect_grace();
    let early = rescuer.reclaim_tick().await.unwrap();
    assert!(early.claimed.is_empty(), "not idle long enough yet: {early:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    stuck.heartbeat().await.unwrap();
    let report = rescuer.reclaim_tick().await.unwrap();
    assert_eq!(report.idle, 5, "{report:?}");
    assert_eq!(report.from_dead, 0);
    // Claimed entries were delivered before: they are re-read one at a time (a poison among
    // them must not take the others down with it).
    let mut emitted = 0;
    for _ in 0..5 {
        emitted += rescuer.step(Some(Duration::from_millis(10))).await.unwrap().emitted;
    }
    assert_eq!(emitted, 5);
    // The stuck consumer wakes up: its late emits are refused, nothing is written twice.
    let late = stuck.process(held).await.unwrap();
    assert_eq!(late.not_owner, 5);
    let mut c = conn(&fx).await;
    assert_zero_loss(&mut c, &n, 5).await;
}

/// A live consumer whose handler is still within its timeout keeps its entries: their idle
/// time is refreshed by the heartbeat, so a small `min_idle` does not cause duplicate work.
#[tokio::test]
async fn in_flight_entries_within_the_handler_timeout_are_not_reclaimed() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.reclaim.min_idle_ms = 400;
    bus.reclaim.interval_ms = 100;
    bus.consumer.handler_timeout_ms = 5000;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["sleep:1500"])).await.unwrap();
    let busy_handler = Scripted::new(&n.output);
    let busy_calls = busy_handler.calls.clone();
    let busy = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("busy"),
        busy_handler,
        BusMetrics::default(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let t1 = tokio::spawn(busy.run(cancel.clone()));
    wait_until(Duration::from_secs(5), || {
        let calls = busy_calls.clone();
        async move { calls.load(std::sync::atomic::Ordering::SeqCst) == 1 }
    })
    .await
    .expect("busy starts handling");
    let other_handler = Scripted::new(&n.output);
    let other_calls = other_handler.calls.clone();
    let other = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("other"),
        other_handler,
        BusMetrics::default(),
    )
    .unwrap();
    let t2 = tokio::spawn(other.run(cancel.clone()));
    let mut c = conn(&fx).await;
    wait_until(Duration::from_secs(5), || {
        let mut c = c.clone();
        let out = n.output.clone();
        async move { output_seqs(&mut c, &out).await.len() == 1 }
    })
    .await
    .expect("the busy consumer finishes");
    cancel.cancel();
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
    assert_eq!(
        other_calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "in-flight work was taken"
    );
    assert_zero_loss(&mut c, &n, 1).await;
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0]);
}

/// Defect 3: a healthy consumer working through a batch whose handlers take longer in total
/// than the handler timeout (10 × 100 ms against 300 ms) keeps every entry of it: entries
/// queued behind others, running within the timeout, or decided and not yet written are all
/// kept fresh by its heartbeat, so another consumer's idle reclaim (`min_idle` 500 ms) takes
/// none of them and nothing is refused as NotOwner. The old code stamped the whole batch with
/// its start, so the tail went idle and was taken from a live consumer.
#[tokio::test]
async fn the_idle_reclaim_leaves_a_long_batch_of_a_healthy_consumer_alone() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.count = 10;
    bus.consumer.concurrency = 1;
    bus.consumer.handler_timeout_ms = 300;
    bus.consumer.heartbeat_interval_ms = 100;
    bus.consumer.heartbeat_ttl_ms = 1000;
    bus.reclaim.min_idle_ms = 500;
    let p = producer(&redis, &bus).await;
    for i in 0..10 {
        p.publish(&n.input, &scripted(i, &["sleep:100"])).await.unwrap();
    }
    let handler = Scripted::new(&n.output);
    let calls = handler.calls.clone();
    let metrics = BusMetrics::default();
    let healthy = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("healthy"),
        handler,
        metrics.clone(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(healthy.run(cancel.clone()));
    let mut c = conn(&fx).await;
    wait_until(Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(std::sync::atomic::Ordering::SeqCst) >= 1 }
    })
    .await
    .expect("the healthy consumer starts its batch");
    assert_eq!(
        pending(&mut c, &n.input, &n.group).await,
        10,
        "it holds the whole batch"
    );

    let mut other = consumer(&redis, &bus, &n, Some("other"));
    other.heartbeat().await.unwrap(); // connects: a connect restarts the grace skipped next
    other.reclaimer_mut().skip_connect_grace();
    let mut taken = Vec::new();
    let mut ticks = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        let r = other.reclaim_tick().await.unwrap();
        ticks += 1;
        taken.extend(r.claimed);
        if !taken.is_empty() || output_seqs(&mut c, &n.output).await.len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(
        taken.is_empty(),
        "the idle reclaim took {} entries of a healthy consumer's batch after {ticks} ticks ({:?}): {taken:?}",
        taken.len(),
        started.elapsed()
    );
    assert!(
        ticks >= 5,
        "the other consumer kept reclaiming while the batch ran ({ticks} ticks)"
    );
    let labels = [n.input.as_str(), n.group.as_str()];
    assert_eq!(
        metrics
            .processed
            .with_label_values(&[labels[0], labels[1], mt5_bus::metrics::outcome::NOT_OWNER])
            .get(),
        0,
        "nothing of the batch was refused as NotOwner"
    );
    assert_eq!(
        metrics
            .processed
            .with_label_values(&[labels[0], labels[1], mt5_bus::metrics::outcome::EMITTED])
            .get(),
        10
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 10);
    assert_eq!(output_seqs(&mut c, &n.output).await, (0..10).collect::<Vec<_>>());
    assert_zero_loss(&mut c, &n, 10).await;
}

/// The idle reclaim examines the whole PEL, however long, across ticks. With `count = 1` one
/// `XAUTOCLAIM` call scans at most 10 pending entries (Redis 7 scans up to COUNT × 10), so one
/// tick of at most 100 calls covers 1000. Here 1200 fresh entries of a live consumer lie in
/// front of 5 idle entries of a stuck one: the scan goes on from its cursor and claims the 5
/// within a few ticks. The old code restarted at `0-0` every tick and never reached them.
#[tokio::test]
async fn the_idle_reclaim_reaches_idle_entries_behind_more_than_one_ticks_scan() {
    const FRESH: u64 = 1200;
    const IDLE: u64 = 5;
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.reclaim.count = 1;
    bus.reclaim.min_idle_ms = 60_000;
    let p = producer(&redis, &bus).await;
    for chunk in (0..FRESH + IDLE).collect::<Vec<_>>().chunks(100) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| (scripted(i, &["emit"]), mt5_bus::PublishOptions::default()))
            .collect();
        p.publish_batch(&n.input, &batch).await.unwrap();
    }
    let mut c = conn(&fx).await;
    // Both holders are alive (heartbeats outlive the test), so only the idle path applies.
    for name in ["live", "stuck"] {
        mark_alive(&mut c, &n.input, &n.group, name, 120_000).await;
    }
    assert_eq!(
        read_as(&mut c, &n.input, &n.group, "live", FRESH).await.len() as u64,
        FRESH
    );
    let stuck_ids = read_as(&mut c, &n.input, &n.group, "stuck", IDLE).await;
    assert_eq!(stuck_ids.len() as u64, IDLE);
    // The stuck consumer's entries have been idle for 10 minutes; the live one's are fresh.
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&n.input)
        .arg(&n.group)
        .arg("stuck")
        .arg(0)
        .arg(&stuck_ids)
        .arg("IDLE")
        .arg(600_000)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .unwrap();

    let mut rescuer = consumer(&redis, &bus, &n, Some("rescuer"));
    let mut claimed: Vec<String> = Vec::new();
    let mut ticks = 0;
    while ticks < 5 && (claimed.len() as u64) < IDLE {
        let r = rescuer.reclaim_tick().await.unwrap();
        ticks += 1;
        assert_eq!(r.from_dead, 0, "both holders are alive: {r:?}");
        assert_eq!(r.idle, r.claimed.len());
        claimed.extend(r.claimed);
    }
    claimed.sort_by_key(|id| id.parse::<mt5_bus::StreamId>().unwrap());
    assert_eq!(
        claimed, stuck_ids,
        "after {ticks} ticks the idle reclaim has claimed exactly the stuck consumer's entries"
    );
    let owners = crate::support::pending_entries(&mut c, &n.input, &n.group).await;
    assert_eq!(
        owners.iter().filter(|(_, o, _)| o == "live").count() as u64,
        FRESH,
        "nothing fresh was taken from the live consumer"
    );

    let mut emitted = 0;
    for _ in 0..IDLE + 2 {
        emitted += rescuer.step(Some(Duration::from_millis(10))).await.unwrap().emitted;
    }
    assert_eq!(emitted as u64, IDLE);
    let mut written = output_seqs(&mut c, &n.output).await;
    written.sort_unstable();
    assert_eq!(written, (FRESH..FRESH + IDLE).collect::<Vec<_>>());
}

/// A consumer `ghost`, which never has a heartbeat, reads every new entry of the input and
/// vanishes: its entries wait for a reclaim.
async fn ghost_reads_everything(c: &mut redis::aio::MultiplexedConnection, n: &Names) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&n.group)
        .arg("ghost")
        .arg("STREAMS")
        .arg(&n.input)
        .arg(">")
        .query_async(c)
        .await
        .unwrap();
}

/// With `bus.reclaim.enabled = false` a running consumer claims nothing, not even the entries of
/// a consumer that never had a heartbeat; the same consumer with reclaim on takes and processes
/// them (so the entry was there to be taken).
#[tokio::test]
async fn a_consumer_with_reclaim_disabled_claims_nothing() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    // A consumer without a heartbeat reads the entry and vanishes.
    let mut c = conn(&fx).await;
    ghost_reads_everything(&mut c, &n).await;
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 1);

    // Runs a consumer until the entry is written or `time` passes; returns whether it was.
    let watcher = c.clone();
    let run_until_written = |bus: mt5_bus::BusConfig, name: &'static str, time: Duration| {
        let consumer = Consumer::new(
            &redis,
            &bus,
            ConsumerOptions::new(&n.input, &n.group).with_name(name),
            Scripted::new(&n.output),
            BusMetrics::default(),
        )
        .unwrap();
        let (c, out) = (watcher.clone(), n.output.clone());
        async move {
            let cancel = CancellationToken::new();
            let task = tokio::spawn(consumer.run(cancel.clone()));
            let written = wait_until(time, || {
                let (mut c, out) = (c.clone(), out.clone());
                async move { !output_seqs(&mut c, &out).await.is_empty() }
            })
            .await;
            cancel.cancel();
            task.await.unwrap().unwrap();
            written.is_some()
        }
    };
    // Several heartbeat TTLs and reclaim intervals: a reclaiming consumer would have taken it.
    let ttl = Duration::from_millis(bus.consumer.heartbeat_ttl_ms);
    bus.reclaim.enabled = false;
    assert!(
        !run_until_written(bus.clone(), "no-reclaim", 3 * ttl).await,
        "nothing was claimed"
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 1);

    bus.reclaim.enabled = true;
    assert!(run_until_written(bus, "reclaiming", Duration::from_secs(10)).await);
    assert_eq!(output_seqs(&mut c, &n.output).await, vec![0]);
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// The reclaim tick runs again each `reclaim.interval_ms`, not only when the consumer starts:
/// a dead consumer's entry can only be taken one heartbeat TTL after the start, by a later
/// tick. Reads block longer than the interval here, so every loop of the consumer is due one.
#[tokio::test]
async fn reclaim_ticks_recur_after_the_first() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.block_ms = 1500;
    bus.reclaim.interval_ms = 200;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();
    let mut c = conn(&fx).await;
    ghost_reads_everything(&mut c, &n).await;
    let consumer = Consumer::new(
        &redis,
        &bus,
        ConsumerOptions::new(&n.input, &n.group).with_name("live"),
        Scripted::new(&n.output),
        BusMetrics::default(),
    )
    .unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer.run(cancel.clone()));
    let out = n.output.clone();
    let took = wait_until(Duration::from_secs(10), || {
        let mut c = c.clone();
        let out = out.clone();
        async move { output_seqs(&mut c, &out).await == vec![0] }
    })
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert!(took.is_some(), "the dead consumer's entry was taken by a later tick");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
}

/// Deletes the entry `id` of `stream`, as a trim would, while it may be pending.
async fn xdel(c: &mut redis::aio::MultiplexedConnection, stream: &str, id: &str) {
    let deleted: i64 = redis::cmd("XDEL").arg(stream).arg(id).query_async(c).await.unwrap();
    assert_eq!(deleted, 1);
}

/// A (re)connect restarts the grace of one heartbeat TTL before the dead-consumer path claims
/// anything (consumers cut off with us need that long to write their heartbeats again); after
/// it, a dead consumer's entries are claimed, and every claim is counted by kind, as are the
/// entries found trimmed while pending, on either path.
#[tokio::test]
async fn dead_consumers_wait_one_ttl_after_a_connect_and_every_claim_is_counted() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, mut bus) = configs(&fx, &n);
    bus.consumer.heartbeat_ttl_ms = 400;
    bus.reclaim.min_idle_ms = 300;
    let p = producer(&redis, &bus).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(p.publish(&n.input, &scripted(i, &["emit"])).await.unwrap().entry_id);
    }
    let mut c = conn(&fx).await;
    ghost_reads_everything(&mut c, &n).await;

    let metrics = BusMetrics::default();
    let count = |kind: &str| {
        metrics
            .reclaimed
            .with_label_values(&[n.input.as_str(), n.group.as_str(), kind])
            .get()
    };
    let trimmed = || {
        metrics
            .trimmed_unacked
            .with_label_values(&[n.input.as_str(), n.group.as_str()])
            .get()
    };
    let mut rescuer = Reclaimer::new(&n.input, &n.group, "rescuer", &bus, metrics.clone());
    rescuer.skip_connect_grace();
    rescuer.on_connect(); // a reconnect: the grace starts again
    let connected = Instant::now();
    let early = rescuer.tick(&mut c).await.unwrap();
    assert!(
        connected.elapsed() < Duration::from_millis(300),
        "the first tick came too late to test the grace"
    );
    assert_eq!(
        early,
        mt5_bus::ReclaimReport::default(),
        "nothing is claimed within the grace"
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 7);

    xdel(&mut c, &n.input, &ids[0]).await; // trimmed while the ghost held it
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = rescuer.tick(&mut c).await.unwrap();
    assert_eq!(report.from_dead, 6, "{report:?}");
    assert_eq!(report.claimed, ids[1..].to_vec());
    assert_eq!((report.idle, report.trimmed), (0, 1), "{report:?}");
    assert_eq!(report.deleted_consumers, ["ghost"]);
    assert_eq!(
        (count(reclaim_kind::DEAD_CONSUMER), count(reclaim_kind::IDLE), trimmed()),
        (6, 0, 1)
    );

    // The rescuer is alive now but holds its entries past min_idle: the idle path takes them,
    // except one trimmed meanwhile, which is counted as trimmed.
    mark_alive(&mut c, &n.input, &n.group, "rescuer", 60_000).await;
    xdel(&mut c, &n.input, &ids[1]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut second = Reclaimer::new(&n.input, &n.group, "second", &bus, metrics.clone());
    let report = second.tick(&mut c).await.unwrap();
    assert_eq!(report.claimed, ids[2..].to_vec());
    assert_eq!((report.from_dead, report.idle, report.trimmed), (0, 5, 1), "{report:?}");
    assert_eq!(
        (count(reclaim_kind::DEAD_CONSUMER), count(reclaim_kind::IDLE), trimmed()),
        (6, 5, 2)
    );
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 5);
}
