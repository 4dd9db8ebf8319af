//! `deadletter list | show | replay | purge` on dead letters written the way the bus writes them.

use mt5_fixtures::redis;
use mt5_fixtures::streams::{read_all_raw, RawFields};

use crate::support::Hub;

/// List (with filters), show, replay by id and by reason, purge: the whole round trip.
#[tokio::test]
async fn deadletter_list_show_replay_purge_round_trip() {
    let hub = Hub::start().await;
    let a = hub.add_dead_letter("ev-a", "max_deliveries", &hub.input).await;
    let b = hub.add_dead_letter("ev-b", "handler", &hub.input).await;
    let c = hub.add_dead_letter("ev-c", "handler", &hub.other).await;

    let all = hub.run(&["deadletter", "list", "--json"]).await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[0]["entry_id"], a.as_str());
    assert_eq!(all[0]["reason"], "max_deliveries");
    assert_eq!(all[0]["deliveries"], 3);
    let handler = hub
        .run(&["deadletter", "list", "--reason", "handler", "--json"])
        .await
        .json();
    assert_eq!(handler.as_array().unwrap().len(), 2);
    let from_other = hub
        .run(&["deadletter", "list", "--stream", &hub.other, "--json"])
        .await
        .json();
    assert_eq!(from_other.as_array().unwrap().len(), 1);
    assert_eq!(from_other[0]["event_id"], "ev-c");
    let table = hub.run(&["deadletter", "list"]).await.ok().to_string();
    assert!(
        table.contains(&a) && table.contains("max_deliveries") && table.contains("3 dead letter(s)"),
        "{table}"
    );
    hub.run(&["deadletter", "list", "--reason", "nonsense"]).await.code(2);

    let shown = hub.run(&["deadletter", "show", &b]).await.ok().to_string();
    assert!(shown.contains("dlq_reason") && shown.contains("ev-b"), "{shown}");
    let shown = hub.run(&["deadletter", "show", &b, "--json"]).await.json();
    assert_eq!(shown["event_id"], "ev-b");
    hub.run(&["deadletter", "show", "1-1"]).await.code(1);

    // Replay by id: the original fields go back to the original stream, same event id.
    let out = hub.run(&["deadletter", "replay", &a]).await.ok().to_string();
    assert!(out.contains(&format!("{a} -> {}", hub.input)), "{out}");
    let back = hub.entries(&hub.input).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1["id"], "ev-a");
    assert!(back[0].1.keys().all(|k| !k.starts_with("dlq_")), "{:?}", back[0].1);
    // Replaying it again finds nothing: exit 1, nothing written.
    hub.run(&["deadletter", "replay", &a]).await.code(1);
    assert_eq!(hub.xlen(&hub.input).await, 1);

    // Replay by reason and stream.
    let replayed = hub
        .run(&[
            "deadletter",
            "replay",
            "--reason",
            "handler",
            "--stream",
            &hub.other,
            "--json",
        ])
        .await
        .json();
    assert_eq!(replayed[0]["deadletter_id"], c.as_str());
    assert_eq!(replayed[0]["status"], "replayed");
    assert_eq!(hub.entries(&hub.other).await[0].1["id"], "ev-c");
    assert_eq!(hub.xlen(&hub.dlq).await, 1);

    // Purge: a dry run deletes nothing; --yes deletes.
    let dry = hub
        .run(&["deadletter", "purge", "--all", "--dry-run"])
        .await
        .ok()
        .to_string();
    assert!(dry.contains(&b) && dry.contains("would delete 1"), "{dry}");
    assert_eq!(hub.xlen(&hub.dlq).await, 1);
    let out = hub.run(&["deadletter", "purge", &b, "--yes"]).await.ok().to_string();
    assert!(out.contains("purged 1 of 1"), "{out}");
    assert_eq!(hub.xlen(&hub.dlq).await, 0);
    hub.add_dead_letter("ev-d", "malformed", &hub.input).await;
    hub.add_dead_letter("ev-e", "malformed", &hub.input).await;
    let out = hub
        .run(&["deadletter", "purge", "--all", "--yes"])
        .await
        .ok()
        .to_string();
    assert!(out.contains("purged 2"), "{out}");
    assert_eq!(
        hub.run(&["deadletter", "list", "--json"]).await.json(),
        serde_json::json!([])
    );
}

/// Purge without `--yes` (and without `--dry-run`) refuses with exit 2 and deletes nothing.
#[tokio::test]
async fn purge_refuses_without_yes() {
    let hub = Hub::start().await;
    let id = hub.add_dead_letter("ev-a", "handler", &hub.input).await;
    for args in [
        vec!["deadletter", "purge", "--all"],
        vec!["deadletter", "purge", id.as_str()],
    ] {
        let run = hub.run(&args).await;
        run.code(2);
        assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    }
    assert_eq!(hub.xlen(&hub.dlq).await, 1);
}

/// A dead letter with bytes that are not UTF-8 (in a value and in a field name): `show` prints
/// them escaped (`\xff`), `show --json` and `list --json` as `{"base64": ...}` while UTF-8 values
/// stay plain strings, and `replay` writes the original bytes back.
#[tokio::test]
async fn non_utf8_dead_letters_are_shown_escaped_and_as_base64_and_replayed_byte_exact() {
    let hub = Hub::start().await;
    let original: RawFields = vec![
        (b"id".to_vec(), b"ev-bin".to_vec()),
        (b"type".to_vec(), b"test.v1".to_vec()),
        (b"data".to_vec(), vec![0xff, 0xfe, b'x']),
        (vec![b'n', 0xff], b"v".to_vec()),
    ];
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&hub.dlq).arg("*");
    for (k, v) in &original {
        cmd.arg(k).arg(v);
    }
    for (k, v) in [
        ("dlq_stream", hub.input.as_str()),
        ("dlq_entry_id", "1-0"),
        ("dlq_reason", "malformed"),
        ("dlq_error", "field `data` is not valid UTF-8"),
    ] {
        cmd.arg(k).arg(v);
    }
    let id: String = cmd.query_async(&mut hub.conn().await).await.unwrap();

    let shown = hub.run(&["deadletter", "show", &id]).await.ok().to_string();
    assert!(shown.contains(r"\xff\xfex"), "{shown}");
    assert!(shown.contains(r"n\xff"), "{shown}");
    let listed = hub.run(&["deadletter", "list"]).await.ok().to_string();
    assert!(listed.contains("ev-bin") && listed.contains("malformed"), "{listed}");

    let json = hub.run(&["deadletter", "show", &id, "--json"]).await.json();
    let fields = json["fields"].as_array().unwrap();
    assert_eq!(fields[0], serde_json::json!(["id", "ev-bin"]));
    assert_eq!(fields[2], serde_json::json!(["data", {"base64": "//54"}]));
    assert_eq!(fields[3], serde_json::json!([{"base64": "bv8="}, "v"]));
    assert_eq!(json["event_id"], "ev-bin");
    let list = hub.run(&["deadletter", "list", "--json"]).await.json();
    assert_eq!(list[0]["fields"][2], serde_json::json!(["data", {"base64": "//54"}]));

    hub.run(&["deadletter", "replay", &id]).await.ok();
    let back = read_all_raw(&mut hub.conn().await, &hub.input).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, original, "the original bytes, without the dlq_ fields");
}
