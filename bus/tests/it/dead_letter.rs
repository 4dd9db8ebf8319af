//! Dead letters: list, show, replay (same id, idempotent, byte-exact), purge.

use std::time::Duration;

use mt5_bus::dead_letter::{self, ListOptions};
use mt5_fixtures::streams::{read_all_raw, RawFields};
use mt5_fixtures::RedisFixture;

use crate::support::{configs, conn, consumer, output_seqs, pending, producer, read_all, scripted, Names};

/// Adds a dead letter of event `id` from `stream` with `reason` straight to `dlq`.
async fn add_dead_letter(c: &mut redis::aio::MultiplexedConnection, dlq: &str, id: &str, stream: &str, reason: &str) {
    let _: String = redis::cmd("XADD")
        .arg(dlq)
        .arg("*")
        .arg(&[("id", id), ("dlq_stream", stream), ("dlq_reason", reason)])
        .query_async(c)
        .await
        .unwrap();
}

/// `list` keeps the dead letters of the given reason and original stream, oldest first, and its
/// limit counts what passed the filters, not what was read; a limit of 0 lists nothing.
#[tokio::test]
async fn list_filters_by_reason_and_stream_and_limits_what_passed() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;
    // e0..e5 from streams a, b, a, b, a, b; malformed for e0 and e3, handler for the rest.
    for i in 0..6 {
        let stream = if i % 2 == 0 { "s:a" } else { "s:b" };
        let reason = if i % 3 == 0 { "malformed" } else { "handler" };
        add_dead_letter(&mut c, &n.dlq, &format!("e{i}"), stream, reason).await;
    }
    let all = ListOptions::default;
    for (opts, want) in [
        (all(), &["e0", "e1", "e2", "e3", "e4", "e5"][..]),
        (all().with_stream("s:a"), &["e0", "e2", "e4"]),
        (all().with_stream("s:c"), &[]),
        (all().with_reason("handler"), &["e1", "e2", "e4", "e5"]),
        (all().with_stream("s:b").with_reason("handler"), &["e1", "e5"]),
        (all().with_limit(2), &["e0", "e1"]),
        (all().with_stream("s:b").with_limit(2), &["e1", "e3"]),
        (all().with_reason("malformed").with_limit(5), &["e0", "e3"]),
        (all().with_limit(0), &[]),
    ] {
        let listed = dead_letter::list(&mut c, &n.dlq, &opts).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|d| d.event_id.as_deref().unwrap()).collect();
        assert_eq!(ids, want, "{opts:?}");
    }
}

/// `replay_matching` replays exactly the dead letters `list` gives for its options, each back to
/// its own stream, and leaves the others in the dead letter stream.
#[tokio::test]
async fn replay_matching_replays_what_the_filter_lists_and_nothing_else() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let mut c = conn(&fx).await;
    let other = format!("{}:other", n.input);
    for (i, stream) in [&n.input, &other, &n.input].into_iter().enumerate() {
        add_dead_letter(&mut c, &n.dlq, &format!("e{i}"), stream, "handler").await;
    }
    let replayed = dead_letter::replay_matching(&mut c, &n.dlq, &ListOptions::default().with_stream(&n.input))
        .await
        .unwrap();
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert!(
        replayed
            .iter()
            .all(|r| matches!(r, dead_letter::Replayed::Replayed { stream, .. } if *stream == n.input)),
        "{replayed:?}"
    );
    let back: Vec<String> = read_all(&mut c, &n.input)
        .await
        .into_iter()
        .map(|(_, f)| f["id"].clone())
        .collect();
    assert_eq!(back, ["e0", "e2"]);
    let left = dead_letter::list(&mut c, &n.dlq, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|d| d.event_id.as_deref()).collect::<Vec<_>>(),
        [Some("e1")]
    );
}

/// A dead-lettered event replayed to its stream keeps its `id`, is processed normally the
/// second time, and a second replay of the same dead letter does nothing.
#[tokio::test]
async fn replay_round_trip_keeps_the_event_id() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    // The handler dead-letters this event on every delivery, so the replayed copy comes back.
    let e = scripted(42, &["dead"]);
    p.publish(&n.input, &e).await.unwrap();
    p.publish(&n.input, &scripted(43, &["ack"])).await.unwrap();
    let mut consumer = consumer(&redis, &bus, &n, None);
    consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    let mut c = conn(&fx).await;

    let listed = dead_letter::list(&mut c, &n.dlq, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let d = &listed[0];
    assert_eq!(d.event_id.as_deref(), Some(e.id.as_str()));
    assert_eq!(d.reason.as_deref(), Some("handler"));
    assert_eq!(d.stream.as_deref(), Some(n.input.as_str()));
    assert!(
        dead_letter::list(&mut c, &n.dlq, &ListOptions::default().with_reason("malformed"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        dead_letter::list(&mut c, &n.dlq, &ListOptions::default().with_stream(&n.input))
            .await
            .unwrap()
            .len(),
        1
    );
    let shown = dead_letter::show(&mut c, &n.dlq, &d.entry_id).await.unwrap();
    assert_eq!(&shown, d);

    let replayed = dead_letter::replay(&mut c, &n.dlq, std::slice::from_ref(&d.entry_id))
        .await
        .unwrap();
    let dead_letter::Replayed::Replayed {
        new_entry_id: new_id, ..
    } = replayed[0].clone()
    else {
        panic!("not replayed: {replayed:?}");
    };
    let again = dead_letter::replay(&mut c, &n.dlq, std::slice::from_ref(&d.entry_id))
        .await
        .unwrap();
    assert!(
        matches!(&again[0], dead_letter::Replayed::NotFound { deadletter_id } if *deadletter_id == d.entry_id),
        "a second replay does nothing: {again:?}"
    );
    assert_eq!(
        (replayed[0].deadletter_id(), again[0].deadletter_id()),
        (d.entry_id.as_str(), d.entry_id.as_str())
    );
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
    let input = read_all(&mut c, &n.input).await;
    let back = input
        .iter()
        .find(|(id, _)| *id == new_id)
        .expect("back on the input stream");
    assert_eq!(back.1["id"], e.id, "same event id");
    assert_eq!(
        back.1["time"],
        mt5_bus::envelope::format_time(&e.time),
        "first publish time kept"
    );
    assert!(
        back.1.keys().all(|k| !k.starts_with("dlq_")),
        "no dlq_ fields on replay: {:?}",
        back.1
    );

    // Processed again (and dead again, by its plan): the group sees it as a new entry.
    consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);
    assert_eq!(read_all(&mut c, &n.dlq).await.len(), 1);
    assert!(output_seqs(&mut c, &n.output).await.is_empty());
}

/// Purge deletes the chosen dead letters, or all of them.
#[tokio::test]
async fn purge_deletes_by_id_and_all() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    for i in 0..3 {
        p.publish(&n.input, &scripted(i, &["dead"])).await.unwrap();
    }
    let mut consumer = consumer(&redis, &bus, &n, None);
    consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    let mut c = conn(&fx).await;
    let all = dead_letter::list(&mut c, &n.dlq, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        dead_letter::purge(&mut c, &n.dlq, &[all[0].entry_id.clone(), "1-1".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(dead_letter::purge_all(&mut c, &n.dlq).await.unwrap(), 2);
    assert!(read_all(&mut c, &n.dlq).await.is_empty());
    assert!(matches!(
        dead_letter::show(&mut c, &n.dlq, &all[1].entry_id).await,
        Err(mt5_bus::Error::DeadLetterNotFound(_))
    ));
}

/// Entries with bytes that are not UTF-8, in a value and in a field name, are read (not a reply
/// error that would wedge the consumer), dead-lettered as `malformed` with every original field
/// byte-identical and in order, and replayed with exactly the original bytes.
#[tokio::test]
async fn dead_letters_and_their_replay_are_byte_exact() {
    let fx = RedisFixture::start().await.unwrap();
    let n = Names::new(&fx);
    let (redis, bus) = configs(&fx, &n);
    let p = producer(&redis, &bus).await;
    let mut c = conn(&fx).await;
    let bad_value: RawFields = vec![
        (b"id".to_vec(), b"ev-bytes".to_vec()),
        (b"type".to_vec(), b"test.v1".to_vec()),
        (b"data".to_vec(), vec![b'{', 0xff, 0xfe, 0x00, b'}']),
        (b"note".to_vec(), "caf\u{e9} \\ \n".as_bytes().to_vec()),
    ];
    let bad_name: RawFields = vec![
        (b"id".to_vec(), b"ev-name".to_vec()),
        (b"type".to_vec(), b"test.v1".to_vec()),
        (b"data".to_vec(), b"{}".to_vec()),
        (vec![b'k', 0xc3, 0x28], vec![0x80, 0x81]),
    ];
    let mut originals = Vec::new();
    for fields in [&bad_value, &bad_name] {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&n.input).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        let id: String = cmd.query_async(&mut c).await.unwrap();
        originals.push((id, fields.clone()));
    }
    p.publish(&n.input, &scripted(7, &["emit"])).await.unwrap();

    let mut consumer = consumer(&redis, &bus, &n, None);
    let report = consumer.step(Some(Duration::from_millis(10))).await.unwrap();
    assert_eq!(report.dead_lettered.get("malformed"), Some(&2), "{report:?}");
    assert_eq!(report.emitted, 1, "the good entry after them flows");
    assert_eq!(pending(&mut c, &n.input, &n.group).await, 0);

    let letters = read_all_raw(&mut c, &n.dlq).await;
    assert_eq!(letters.len(), 2);
    for ((_, fields), (entry_id, original)) in letters.iter().zip(&originals) {
        assert_eq!(&fields[..original.len()], &original[..], "original fields byte-exact");
        let dlq: Vec<(&[u8], &[u8])> = fields[original.len()..]
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        assert!(dlq.contains(&(&b"dlq_reason"[..], &b"malformed"[..])), "{dlq:?}");
        assert!(dlq.contains(&(&b"dlq_entry_id"[..], entry_id.as_bytes())), "{dlq:?}");
    }
    let listed = dead_letter::list(&mut c, &n.dlq, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed[0].field("data").unwrap().as_bytes(), &bad_value[2].1[..]);
    assert!(
        listed[1].error.as_deref().unwrap_or_default().contains("k\\xc3("),
        "the error names the field, escaped: {:?}",
        listed[1].error
    );

    let ids: Vec<String> = listed.iter().map(|d| d.entry_id.clone()).collect();
    let replayed = dead_letter::replay(&mut c, &n.dlq, &ids).await.unwrap();
    let input = read_all_raw(&mut c, &n.input).await;
    for (r, (_, original)) in replayed.iter().zip(&originals) {
        let dead_letter::Replayed::Replayed {
            new_entry_id: new_id, ..
        } = r
        else {
            panic!("not replayed: {r:?}");
        };
        let (_, back) = input.iter().find(|(id, _)| id == new_id).expect("back on the input");
        assert_eq!(back, original, "replay writes the original bytes back");
    }
}
