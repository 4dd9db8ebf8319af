//! `publish`: one event, stdin lines, idempotency keys, and the paced load with its history.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::support::Hub;

/// One `--data` publish prints its entry id, and `streams stats --json` shows length 1.
#[tokio::test]
async fn publish_one_then_stats_json_shows_length_1() {
    let hub = Hub::start().await;
    let run = hub
        .run(&[
            "publish",
            "--stream",
            &hub.input,
            "--type",
            "test.v1",
            "--data",
            r#"{"a":1}"#,
        ])
        .await;
    let entry_id = run.ok().trim().to_string();
    let entries = hub.entries(&hub.input).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, entry_id);
    assert_eq!(entries[0].1["type"], "test.v1");
    assert_eq!(entries[0].1["data"], r#"{"a":1}"#);
    assert_eq!(entries[0].1["source"], "mt5-hub/cli");

    let stats = hub
        .run(&["streams", "stats", "--json", "--stream", &hub.input])
        .await
        .json();
    assert_eq!(stats[0]["stream"], hub.input.as_str());
    assert_eq!(stats[0]["length"], 1);
    assert_eq!(
        stats[0]["groups"][0]["name"], "g",
        "the configured group was created before the publish"
    );
    assert_eq!(stats[0]["groups"][0]["lag"], 1);
}

/// Without `--data`, each stdin line is one event; ids are printed in input order.
#[tokio::test]
async fn publish_from_stdin_lines() {
    let hub = Hub::start().await;
    let input = concat!(
        r#"{"type":"a.v1","data":{"n":1}}"#,
        "\n\n",
        r#"{"data":{"n":2},"id":"fixed-id","extensions":{"ticker":"AAPL.US"}}"#,
        "\n",
        r#"{"type":"c.v1","data":{"n":3},"source":"me"}"#,
        "\n"
    );
    let run = hub
        .run_stdin(&["publish", "--stream", &hub.other, "--type", "default.v1"], input)
        .await;
    let ids: Vec<&str> = run.ok().lines().collect();
    let entries = hub.entries(&hub.other).await;
    assert_eq!(ids, entries.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>());
    let types: Vec<&str> = entries.iter().map(|(_, f)| f["type"].as_str()).collect();
    assert_eq!(types, ["a.v1", "default.v1", "c.v1"]);
    assert_eq!(entries[1].1["id"], "fixed-id");
    assert_eq!(entries[1].1["ticker"], "AAPL.US");
    assert_eq!(entries[2].1["source"], "me");
}

/// A bad line exits 2 naming its line number; the lines before it are published, none after.
#[tokio::test]
async fn a_bad_stdin_line_exits_2_and_publishes_only_the_lines_before_it() {
    let hub = Hub::start().await;
    let input = "{\"type\":\"t\",\"data\":1}\n{\"type\":\"t\",\"data\":2}\n{\"type\":\"t\",\"dta\":3}\n{\"type\":\"t\",\"data\":4}\n";
    let run = hub.run_stdin(&["publish", "--stream", &hub.other], input).await;
    run.code(2);
    assert!(run.stderr.contains("line 3"), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 2);
    assert_eq!(hub.xlen(&hub.other).await, 2);
}

/// With batches in flight (batches of 7, a bad line at 251), every line before the bad one is
/// published and printed in input order, and nothing from it on.
#[tokio::test]
async fn batches_in_flight_print_every_id_in_order_and_stop_at_a_bad_line() {
    let hub = Hub::start().await;
    let mut input: String = (1..=250)
        .map(|n| format!("{{\"type\":\"t\",\"data\":{{\"n\":{n}}}}}\n"))
        .collect();
    input.push_str("{\"type\":\"t\"}\n");
    input.extend((252..=300).map(|n| format!("{{\"type\":\"t\",\"data\":{{\"n\":{n}}}}}\n")));
    let run = hub
        .run_stdin(&["publish", "--stream", &hub.other, "--batch", "7"], &input)
        .await;
    run.code(2);
    assert!(run.stderr.contains("line 251"), "{}", run.stderr);
    let ids: Vec<&str> = run.stdout.lines().collect();
    let entries = hub.entries(&hub.other).await;
    assert_eq!(ids.len(), 250);
    assert_eq!(ids, entries.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>());
    let ns: Vec<String> = entries.iter().map(|(_, f)| f["data"].clone()).collect();
    let want: Vec<String> = (1..=250).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(ns, want, "the stream holds the lines in input order");
}

/// A second publish with the same idempotency key writes nothing and prints the first id with
/// "duplicate".
#[tokio::test]
async fn idempotency_key_duplicate_returns_the_first_entry_id() {
    let hub = Hub::start().await;
    let args = [
        "publish",
        "--stream",
        &hub.input,
        "--type",
        "t.v1",
        "--data",
        "1",
        "--idempotency-key",
        "k-1",
    ];
    let first = hub.run(&args).await.ok().trim().to_string();
    let second = hub.run(&args).await.ok().trim().to_string();
    assert_eq!(second, format!("{first} duplicate"));
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let third = hub.run(&json_args).await.json();
    assert_eq!(third["entry_id"], first.as_str());
    assert_eq!(third["duplicate"], true);
    assert_eq!(hub.xlen(&hub.input).await, 1);
    // The same key in stdin lines is deduplicated too.
    let line = "{\"type\":\"t.v1\",\"data\":1,\"idempotency_key\":\"k-1\"}\n";
    let run = hub.run_stdin(&["publish", "--stream", &hub.input], line).await;
    assert_eq!(run.ok().trim(), format!("{first} duplicate"));
    assert_eq!(hub.xlen(&hub.input).await, 1);
}

/// `--rate 200 --count 100 --history F`: 100 history lines with unique entry ids, each in the
/// stream with its seq, paced to about half a second.
#[tokio::test]
async fn paced_publish_records_every_acknowledged_event_in_the_history() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.jsonl");
    let started = Instant::now();
    let run = hub
        .run(&[
            "publish",
            "--stream",
            &hub.input,
            "--rate",
            "200",
            "--count",
            "100",
            "--history",
            history.to_str().unwrap(),
            "--json",
        ])
        .await;
    let elapsed = started.elapsed();
    let summary = run.json();
    assert_eq!(summary["sent"], 100);
    assert_eq!(summary["acknowledged"], 100);
    assert_eq!(summary["failed"], 0);
    assert!(
        elapsed >= Duration::from_millis(400),
        "100 events at 200/s took only {elapsed:?}"
    );

    let text = std::fs::read_to_string(&history).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 100);
    let ids: HashSet<&str> = lines.iter().map(|l| l["entry_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100, "entry ids are unique");
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    assert!(lines
        .iter()
        .all(|l| l["duplicate"] == false && l["published_at_ms"].as_i64().unwrap() > 0));

    let entries = hub.entries(&hub.input).await;
    assert_eq!(entries.len(), 100);
    for (line, (entry_id, fields)) in lines.iter().zip(&entries) {
        assert_eq!(line["entry_id"], entry_id.as_str());
        assert_eq!(line["event_id"], fields["id"].as_str());
        let data: serde_json::Value = serde_json::from_str(&fields["data"]).unwrap();
        assert_eq!(data["seq"], line["seq"]);
        assert_eq!(data["payload"].as_str().unwrap().len(), 256);
        // Stamped before the send, so no later than the acknowledgement's ms.
        let stamp_us = data["published_us"].as_i64().unwrap();
        assert!(
            stamp_us > 0 && stamp_us / 1000 <= line["published_at_ms"].as_i64().unwrap(),
            "{data}"
        );
    }
}

/// A rerun with the same idempotency key prefix writes nothing new and records duplicates with
/// the same event ids.
#[tokio::test]
async fn a_paced_rerun_with_the_same_key_prefix_writes_nothing_twice() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.jsonl");
    let args = [
        "publish",
        "--stream",
        &hub.input,
        "--rate",
        "1000",
        "--count",
        "20",
        "--idempotency-key-prefix",
        "run1",
        "--history",
        history.to_str().unwrap(),
        "--json",
    ];
    assert_eq!(hub.run(&args).await.json()["duplicates"], 0);
    assert_eq!(hub.run(&args).await.json()["duplicates"], 20);
    assert_eq!(hub.xlen(&hub.input).await, 20);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40, "the history file is appended to");
    for i in 0..20 {
        assert_eq!(lines[i]["event_id"], lines[i + 20]["event_id"]);
        assert_eq!(lines[i]["entry_id"], lines[i + 20]["entry_id"]);
        assert_eq!(lines[i + 20]["duplicate"], true);
    }
}

/// SIGTERM stops the paced load cleanly: exit 0, a summary, and a history that matches the
/// stream.
#[tokio::test]
async fn sigterm_stops_the_paced_load_cleanly() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("h.jsonl");
    let child = hub.spawn(&[
        "publish",
        "--stream",
        &hub.input,
        "--rate",
        "100",
        "--count",
        "100000",
        "--history",
        history.to_str().unwrap(),
        "--json",
    ]);
    // Signal it once it is publishing (its signal handler is installed by then).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&history).map_or(0, |t| t.lines().count()) < 10 {
        assert!(Instant::now() < deadline, "the load did not start publishing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["interrupted"], true);
    let acked = summary["acknowledged"].as_u64().unwrap();
    assert!(acked > 0 && acked < 100_000, "{summary}");
    let lines = std::fs::read_to_string(&history).unwrap().lines().count() as u64;
    assert_eq!(lines, acked);
    assert_eq!(hub.xlen(&hub.input).await, acked);
}

/// The binary's `--version` names the `chaos` feature exactly when it was built with it, and
/// only then does `publish --help` show the `--poison-*` flags (a shipped build has neither).
#[tokio::test]
async fn poison_flags_and_the_chaos_version_come_only_with_the_feature() {
    let version = crate::support::run_with(&[], &["--version"], None).await;
    let help = crate::support::run_with(&[], &["publish", "--help"], None).await;
    let chaos = cfg!(feature = "chaos");
    assert_eq!(version.ok().contains("(features: chaos)"), chaos, "{}", version.stdout);
    assert!(version.stdout.starts_with("mt5-hub "), "{}", version.stdout);
    assert_eq!(help.ok().contains("--poison-every"), chaos, "{}", help.stdout);
    assert_eq!(help.stdout.contains("--poison-marker"), chaos);
}
