//! Exit code 3 when Redis stays unreachable through the bounded retries.

use std::time::{Duration, Instant};

use crate::support::{closed_port, run_with};

/// Every one-shot command exits 3, quickly, against a closed port.
#[tokio::test]
async fn one_shot_commands_exit_3_when_redis_is_unreachable() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let env: Vec<(String, String)> = [
        ("MT5_REDIS_URL", url.as_str()),
        ("MT5_BUS__RETRY__MAX_ATTEMPTS", "2"),
        ("MT5_BUS__RETRY__INITIAL_MS", "10"),
        ("MT5_BUS__RETRY__MAX_MS", "20"),
        ("MT5_REDIS__CONNECT_TIMEOUT_MS", "200"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let commands: [&[&str]; 7] = [
        &["streams", "stats"],
        &["groups", "create", "--stream", "s", "--group", "g", "--at", "0"],
        &["streams", "tail", "s", "--count", "1"],
        &["deadletter", "list"],
        &["deadletter", "purge", "--all", "--yes"],
        &["publish", "--stream", "s", "--type", "t", "--data", "1"],
        &["publish", "--stream", "s"],
    ];
    for args in commands {
        let started = Instant::now();
        let run = run_with(&env, args, Some("{\"type\":\"t\",\"data\":1}\n")).await;
        run.code(3);
        assert!(run.stderr.contains("unreachable"), "{args:?}: {}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
}
