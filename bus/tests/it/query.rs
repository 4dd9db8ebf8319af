//! The typed queries, on a real Redis through a `Connection` made by `Redis`: ranges and their
//! bounds, the paged reader (entries added while it reads included), tails that block, the
//! pending summary, the forward-only cursor and the time-scored record.

use std::time::{Duration, Instant};

use mt5_bus::query::{self, Bound, RangeOptions, RangeReader, ReadOptions};
use mt5_bus::{Connection, Redis, RedisConfig};
use mt5_fixtures::RedisFixture;

use crate::support::{read_as, Names};

async fn connection(fx: &RedisFixture) -> Connection {
    Redis::new(&RedisConfig::default().with_url(fx.url()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Adds entries `k=0..n` to `stream` with explicit ids `1-0`, `2-0`, ...
async fn add(c: &mut Connection, stream: &str, from: u64, n: u64) {
    for i in from..from + n {
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg(format!("{}-0", i + 1))
            .arg("k")
            .arg(i)
            .query_async(c)
            .await
            .unwrap();
    }
}

fn ids(entries: &[mt5_bus::StreamEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

/// Each bound and option reaches Redis as meant: inclusive and exclusive starts and ends, a
/// count, newest first, one exact entry; a missing stream is an empty page.
#[tokio::test]
async fn ranges_honour_their_bounds_count_and_order() {
    let fx = RedisFixture::start().await.unwrap();
    let s = Names::new(&fx).input;
    let mut c = connection(&fx).await;
    assert!(query::range(&mut c, &s, &RangeOptions::all()).await.unwrap().is_empty());
    add(&mut c, &s, 0, 5).await;

    let all = query::range(&mut c, &s, &RangeOptions::all()).await.unwrap();
    assert_eq!(ids(&all), ["1-0", "2-0", "3-0", "4-0", "5-0"]);
    assert_eq!(all[2].field("k"), Some("2"));
    let after = query::range(&mut c, &s, &RangeOptions::after("2-0")).await.unwrap();
    assert_eq!(ids(&after), ["3-0", "4-0", "5-0"]);
    let two = query::range(&mut c, &s, &RangeOptions::after("2-0").count(2))
        .await
        .unwrap();
    assert_eq!(ids(&two), ["3-0", "4-0"]);
    let newest = query::range(&mut c, &s, &RangeOptions::all().count(2).newest_first())
        .await
        .unwrap();
    assert_eq!(ids(&newest), ["5-0", "4-0"]);
    let mut window = RangeOptions::all().newest_first();
    window.start = Bound::Included("2-0".into());
    window.end = Bound::Excluded("5-0".into());
    let got = query::range(&mut c, &s, &window).await.unwrap();
    assert_eq!(ids(&got), ["4-0", "3-0", "2-0"]);
    let exact = query::range(&mut c, &s, &RangeOptions::exactly("3-0")).await.unwrap();
    assert_eq!(ids(&exact), ["3-0"]);
    assert!(query::range(&mut c, &s, &RangeOptions::exactly("9-0"))
        .await
        .unwrap()
        .is_empty());

    assert_eq!(query::first_entry(&mut c, &s).await.unwrap().unwrap().id, "1-0");
    assert_eq!(query::last_entry(&mut c, &s).await.unwrap().unwrap().id, "5-0");
    assert!(query::last_entry(&mut c, "absent").await.unwrap().is_none());
}

/// The paged reader returns every entry once, in order, across page boundaries (an exactly
/// full last page included), and reads on after entries were added between pages. Pages are
/// read one at a time first, so a reader that does not move on fails here instead of looping.
#[tokio::test]
async fn the_range_reader_pages_through_everything_once() {
    let fx = RedisFixture::start().await.unwrap();
    let s = Names::new(&fx).input;
    let mut c = connection(&fx).await;
    add(&mut c, &s, 0, 6).await;

    let mut reader = RangeReader::new(s.as_str(), 4);
    let first = reader.next_page(&mut c).await.unwrap().unwrap();
    assert_eq!(ids(&first), ["1-0", "2-0", "3-0", "4-0"]);
    add(&mut c, &s, 6, 3).await;
    let second = reader.next_page(&mut c).await.unwrap().unwrap();
    assert_eq!(ids(&second), ["5-0", "6-0", "7-0", "8-0"]);
    let rest = reader.read_to_end(&mut c).await.unwrap();
    assert_eq!(ids(&rest), ["9-0"]);
    assert!(reader.next_page(&mut c).await.unwrap().is_none());

    let all = RangeReader::new(s.as_str(), 3).read_to_end(&mut c).await.unwrap();
    assert_eq!(
        ids(&all),
        ["1-0", "2-0", "3-0", "4-0", "5-0", "6-0", "7-0", "8-0", "9-0"]
    );

    assert!(RangeReader::new("absent", 10)
        .read_to_end(&mut c)
        .await
        .unwrap()
        .is_empty());
}

/// A tail read answers at once when entries are there, waits up to its block when not, and
/// returns what arrives while it waits.
#[tokio::test]
async fn read_after_returns_new_entries_and_blocks_when_there_are_none() {
    let fx = RedisFixture::start().await.unwrap();
    let s = Names::new(&fx).input;
    let mut c = connection(&fx).await;
    add(&mut c, &s, 0, 3).await;

    let got = query::read_after(&mut c, &s, "1-0", &ReadOptions::count(10))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["2-0", "3-0"]);
    let one = query::read_after(&mut c, &s, "0-0", &ReadOptions::count(1))
        .await
        .unwrap();
    assert_eq!(ids(&one), ["1-0"]);

    let started = Instant::now();
    let none = query::read_after(
        &mut c,
        &s,
        "3-0",
        &ReadOptions::count(10).block(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    let mut reader = connection(&fx).await;
    let (s2, opts) = (s.clone(), ReadOptions::count(10).block(Duration::from_secs(5)));
    let waiting = tokio::spawn(async move { query::read_after(&mut reader, &s2, "3-0", &opts).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    add(&mut c, &s, 3, 1).await;
    let arrived = waiting.await.unwrap().unwrap();
    assert_eq!(ids(&arrived), ["4-0"]);
}

/// Length and last generated id, before the stream exists and after entries were deleted:
/// the last generated id does not move back.
#[tokio::test]
async fn length_and_last_generated_id_survive_missing_and_trimmed_streams() {
    let fx = RedisFixture::start().await.unwrap();
    let s = Names::new(&fx).input;
    let mut c = connection(&fx).await;
    assert_eq!(query::len(&mut c, &s).await.unwrap(), 0);
    assert_eq!(query::last_generated_id(&mut c, &s).await.unwrap(), "0-0");
    add(&mut c, &s, 0, 3).await;
    assert_eq!(query::len(&mut c, &s).await.unwrap(), 3);
    let _: u64 = redis::cmd("XDEL").arg(&s).arg("3-0").query_async(&mut c).await.unwrap();
    assert_eq!(query::len(&mut c, &s).await.unwrap(), 2);
    assert_eq!(query::last_generated_id(&mut c, &s).await.unwrap(), "3-0");
    assert_eq!(query::delete(&mut c, &[s.as_str(), "absent"]).await.unwrap(), 1);
    assert_eq!(query::len(&mut c, &s).await.unwrap(), 0);
    assert_eq!(query::delete(&mut c, &[]).await.unwrap(), 0);
    query::ping(&mut c).await.unwrap();
}

/// The pending summary counts per consumer; no group (or no stream) is `None`, an idle group an
/// empty summary.
#[tokio::test]
async fn the_pending_summary_counts_per_consumer() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = connection(&fx).await;
    assert_eq!(query::pending_summary(&mut c, &n.input, &n.group).await.unwrap(), None);
    add(&mut c, &n.input, 0, 5).await;
    assert_eq!(query::pending_summary(&mut c, &n.input, &n.group).await.unwrap(), None);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&n.input)
        .arg(&n.group)
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    let idle = query::pending_summary(&mut c, &n.input, &n.group)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idle, query::PendingSummary::default());
    for (consumer, count) in [("a", 2), ("b", 3)] {
        read_as(&mut c, &n.input, &n.group, consumer, count).await;
    }
    let mut sum = query::pending_summary(&mut c, &n.input, &n.group)
        .await
        .unwrap()
        .unwrap();
    sum.consumers.sort();
    assert_eq!(sum.count, 5);
    assert_eq!(sum.first_id.as_deref(), Some("1-0"));
    assert_eq!(sum.last_id.as_deref(), Some("5-0"));
    assert_eq!(sum.consumers, [("a".to_string(), 2), ("b".to_string(), 3)]);
}

/// The cursor only moves forward: an older value leaves it where it is and the call says where
/// it is; a key holding something else is an error, not a silent zero.
#[tokio::test]
async fn the_cursor_moves_forward_only() {
    let fx = RedisFixture::start().await.unwrap();
    let key = format!("{}:cursor", fx.prefix());
    let mut c = connection(&fx).await;
    assert_eq!(query::cursor(&mut c, &key).await.unwrap(), None);
    assert_eq!(query::advance_cursor(&mut c, &key, 1_000).await.unwrap(), 1_000);
    assert_eq!(query::advance_cursor(&mut c, &key, 500).await.unwrap(), 1_000);
    assert_eq!(query::cursor(&mut c, &key).await.unwrap(), Some(1_000));
    assert_eq!(query::advance_cursor(&mut c, &key, 1_001).await.unwrap(), 1_001);
    assert_eq!(query::cursor(&mut c, &key).await.unwrap(), Some(1_001));
    // Negative times are numbers too (before 1970), and forward is numeric, not textual.
    let other = format!("{}:cursor2", fx.prefix());
    assert_eq!(query::advance_cursor(&mut c, &other, -5).await.unwrap(), -5);
    assert_eq!(query::advance_cursor(&mut c, &other, 10).await.unwrap(), 10);
    assert_eq!(query::advance_cursor(&mut c, &other, 9).await.unwrap(), 10);

    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("soon")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = query::cursor(&mut c, &key).await.unwrap_err().to_string();
    assert!(err.contains("soon"), "{err}");
    // Advancing it is an error too, and leaves the value as it is.
    let err = query::advance_cursor(&mut c, &key, 2_000)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a number"), "{err}");
    let kept: String = redis::cmd("GET").arg(&key).query_async(&mut c).await.unwrap();
    assert_eq!(kept, "soon");
}

/// A script is loaded again only when the server lost it (`NOSCRIPT`, after a restart or a
/// `SCRIPT FLUSH`); a script that fails for another reason (the cursor holds text) returns its
/// error after one run, without a reload or a second run.
#[tokio::test]
async fn a_script_is_reloaded_only_after_noscript() {
    let fx = RedisFixture::start().await.unwrap();
    let key = format!("{}:cursor", fx.prefix());
    let mut c = connection(&fx).await;
    assert_eq!(query::advance_cursor(&mut c, &key, 5).await.unwrap(), 5);
    let calls = || async {
        (
            fx.command_calls("script|load").await.unwrap(),
            fx.command_calls("evalsha").await.unwrap(),
        )
    };
    let (loads, runs) = calls().await;

    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("soon")
        .query_async(&mut c)
        .await
        .unwrap();
    let err = query::advance_cursor(&mut c, &key, 6).await.unwrap_err();
    assert!(!err.is_noscript(), "{err}");
    assert_eq!(calls().await, (loads, runs + 1), "one run, no reload, after {err}");

    let _: () = redis::cmd("SET").arg(&key).arg(7).query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut c).await.unwrap();
    assert_eq!(query::advance_cursor(&mut c, &key, 9).await.unwrap(), 9);
    assert_eq!(
        calls().await,
        (loads + 1, runs + 3),
        "NOSCRIPT, one load, the run again"
    );
}

/// The time-scored record drops names older than the floor and keeps the rest; a name added
/// again takes its new score.
#[tokio::test]
async fn the_seen_record_keeps_what_is_on_or_after_the_floor() {
    let fx = RedisFixture::start().await.unwrap();
    let key = format!("{}:seen", fx.prefix());
    let mut c = connection(&fx).await;
    assert!(query::seen_since(&mut c, &key, 0).await.unwrap().is_empty());
    query::record_seen(&mut c, &key, &[]).await.unwrap();
    query::record_seen(&mut c, &key, &[(100, "a"), (200, "b"), (300, "c"), (250, "d")])
        .await
        .unwrap();
    let mut kept = query::seen_since(&mut c, &key, 200).await.unwrap();
    kept.sort();
    assert_eq!(kept, ["b", "c", "d"], "every name from the floor on, however many");
    // "a" is gone for good: a lower floor does not bring it back.
    let mut kept = query::seen_since(&mut c, &key, 0).await.unwrap();
    kept.sort();
    assert_eq!(kept, ["b", "c", "d"]);
    query::record_seen(&mut c, &key, &[(400, "b")]).await.unwrap();
    assert_eq!(query::seen_since(&mut c, &key, 301).await.unwrap(), ["b"]);
}
