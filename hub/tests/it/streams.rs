//! `streams stats` and `streams tail`.

use mt5_fixtures::redis;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{Hub, GROUP};

/// Without `--stream`, streams nobody configured are listed too, after the configured ones;
/// keys of other types are not.
#[tokio::test]
async fn stats_lists_every_stream_of_the_database_configured_first() {
    let hub = Hub::start().await;
    let other = format!("{}:unconfigured", hub.input);
    hub.run(&["publish", "--stream", &other, "--type", "t.v1", "--data", "1"])
        .await
        .ok();
    let _: () = redis::cmd("SET")
        .arg(format!("{other}:not-a-stream"))
        .arg("x")
        .query_async(&mut hub.conn().await)
        .await
        .unwrap();
    let json = hub.run(&["streams", "stats", "--json"]).await.json();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap())
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name);
    let (input, dlq, found) = (at(&hub.input), at(&hub.dlq), at(&other));
    assert!(found.is_some(), "{other} missing from {names:?}");
    assert!(input < found && dlq < found, "configured streams first: {names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with(":not-a-stream")),
        "only streams: {names:?}"
    );
}

/// The table lists the configured streams by default, with the group and its consumers.
#[tokio::test]
async fn stats_table_shows_streams_groups_and_consumers() {
    let hub = Hub::start().await;
    hub.run(&["publish", "--stream", &hub.input, "--type", "t.v1", "--data", "1"])
        .await
        .ok();
    hub.run(&["publish", "--stream", &hub.input, "--type", "t.v1", "--data", "2"])
        .await
        .ok();
    // A consumer reads one entry and leaves it pending, without a heartbeat.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg("c1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&hub.input)
        .arg(">")
        .query_async(&mut hub.conn().await)
        .await
        .unwrap();
    let out = hub.run(&["streams", "stats"]).await.ok().to_string();
    for expected in [
        hub.input.as_str(),
        hub.dlq.as_str(),
        "mt5:events:news_filtered",
        "GROUP",
        "c1",
        "missing",
        "0/1",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let json = hub.run(&["streams", "stats", "--json"]).await.json();
    let input = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == hub.input.as_str())
        .unwrap();
    assert_eq!(input["length"], 2);
    assert_eq!(input["groups"][0]["pending"], 1);
    assert_eq!(input["groups"][0]["lag"], 1);
    assert_eq!(input["groups"][0]["consumers"][0]["alive"], false);
    let dlq = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == hub.dlq.as_str())
        .unwrap();
    assert_eq!(dlq["exists"], false);
}

/// `tail --from 0 --count N` prints the first N entries as JSON lines and exits 0.
#[tokio::test]
async fn tail_from_the_start_prints_json_lines_and_stops_after_count() {
    let hub = Hub::start().await;
    let input = "{\"type\":\"t\",\"data\":1}\n{\"type\":\"t\",\"data\":2}\n{\"type\":\"t\",\"data\":3}\n";
    let ids: Vec<String> = hub
        .run_stdin(&["publish", "--stream", &hub.other], input)
        .await
        .ok()
        .lines()
        .map(String::from)
        .collect();
    let run = hub
        .run(&["streams", "tail", &hub.other, "--from", "0", "--count", "2"])
        .await;
    let lines: Vec<serde_json::Value> = run.ok().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["entry_id"], ids[0].as_str());
    assert_eq!(lines[1]["entry_id"], ids[1].as_str());
    assert_eq!(lines[1]["fields"]["data"], "2");
    assert_eq!(lines[1]["fields"]["type"], "t");
}

/// Following from `$` prints only what is published afterwards, as it arrives.
#[tokio::test]
async fn tail_follows_new_entries() {
    let hub = Hub::start().await;
    hub.run(&["publish", "--stream", &hub.other, "--type", "t", "--data", "\"old\""])
        .await
        .ok();
    let mut child = hub.spawn(&["streams", "tail", &hub.other, "--count", "2"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Publish only once it blocks in XREAD, i.e. after it resolved `$`.
    hub.wait_for_command("xread").await;
    for d in ["\"new1\"", "\"new2\""] {
        hub.run(&["publish", "--stream", &hub.other, "--type", "t", "--data", d])
            .await
            .ok();
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        got.push(v["fields"]["data"].as_str().unwrap().to_string());
    }
    assert_eq!(got, ["\"new1\"", "\"new2\""]);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
