//! `groups create`, and services refusing to start when their group is missing on a stream with
//! entries (instead of recreating it at `0` and processing the stream again).

use mt5_fixtures::eodhd::MockEodhd;
use mt5_fixtures::redis;

use crate::support::{run_with, Hub, GROUP};

/// Where each group of `stream` stands: (name, last delivered id).
async fn group_positions(hub: &Hub, stream: &str) -> Vec<(String, String)> {
    mt5_bus::stats::stream_stats(&mut hub.conn().await, stream)
        .await
        .unwrap()
        .groups
        .into_iter()
        .map(|g| (g.name, g.last_delivered_id))
        .collect()
}

async fn xadd(hub: &Hub, stream: &str, n: u64) -> String {
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("n")
        .arg(n)
        .query_async(&mut hub.conn().await)
        .await
        .unwrap()
}

/// `--at 0`, `--at $`, `--at <ms>-<seq>` and `--at <ms>` each create the group at that position
/// (a missing stream is created); creating an existing group changes nothing and exits 1 naming
/// where it stands; a bad `--at` exits 2 before Redis is asked.
#[tokio::test]
async fn groups_create_at_each_position() {
    let hub = Hub::start().await;
    let s = hub.other.clone();
    let ids = [
        xadd(&hub, &s, 1).await,
        xadd(&hub, &s, 2).await,
        xadd(&hub, &s, 3).await,
    ];
    let create = |group: &'static str, at: String| {
        let s = s.clone();
        let hub = &hub;
        async move {
            hub.run(&["groups", "create", "--stream", &s, "--group", group, "--at", &at])
                .await
        }
    };

    let out = create("from-start", "0".into()).await;
    assert!(out.ok().contains("created group from-start"), "{}", out.stdout);
    create("from-now", "$".into()).await.ok();
    create("resume", ids[1].clone()).await.ok();
    let ms = ids[0].split('-').next().unwrap().to_string();
    create("from-ms", ms.clone()).await.ok();
    let mut positions = group_positions(&hub, &s).await;
    positions.sort();
    assert_eq!(
        positions,
        [
            ("from-ms".to_string(), format!("{ms}-0")),
            ("from-now".to_string(), ids[2].clone()),
            ("from-start".to_string(), "0-0".to_string()),
            ("resume".to_string(), ids[1].clone()),
        ]
    );

    let again = create("resume", "0".into()).await;
    again.code(1);
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains(&ids[1]),
        "names the group's position: {}",
        again.stderr
    );
    assert!(group_positions(&hub, &s)
        .await
        .contains(&("resume".to_string(), ids[1].clone())));

    for bad in ["abc", "1-", "-1", "1-2-3", "99999999999999999999", ""] {
        let run = create("bad", bad.into()).await;
        run.code(2);
        assert!(run.stderr.contains("--at"), "{bad:?}: {}", run.stderr);
    }
    hub.run(&["groups", "create", "--stream", &s, "--group", "g"])
        .await
        .code(2);
    assert_eq!(group_positions(&hub, &s).await.len(), 4, "no group from the bad runs");

    // A missing stream is created with the group.
    let fresh = format!("{}:fresh", hub.fx.prefix());
    hub.run(&["groups", "create", "--stream", &fresh, "--group", "g", "--at", "$"])
        .await
        .ok();
    assert_eq!(
        group_positions(&hub, &fresh).await,
        [("g".to_string(), "0-0".to_string())]
    );
}

/// `filter`, `run` and `fetch --once` refuse to start (exit 2) when their group is missing on a
/// stream with entries, naming `groups create`; they never create the group there. With the
/// group created by `groups create`, `filter` starts.
#[tokio::test]
async fn services_refuse_to_start_when_their_group_is_missing_on_a_stream_with_entries() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env = hub.news_env(&mock);
    let last = xadd(&hub, &hub.input, 1).await;
    let fix = format!(
        "mt5-hub groups create --stream {} --group {GROUP} --at 0|$|ID",
        hub.input
    );
    for args in [&["filter", "--consumer", "x"][..], &["run"], &["fetch", "--once"]] {
        let mut env = env.clone();
        env.push(("MT5_HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()));
        let run = run_with(&env, args, None).await;
        run.code(2);
        assert!(run.stderr.contains(&fix), "{args:?}: {}", run.stderr);
        assert!(
            group_positions(&hub, &hub.input).await.is_empty(),
            "{args:?} created a group"
        );
    }

    hub.run(&[
        "groups", "create", "--stream", &hub.input, "--group", GROUP, "--at", &last,
    ])
    .await
    .ok();
    let svc = crate::support::Service::start(&env, &["filter", "--consumer", "x"]).await;
    svc.wait_for("/readyz", std::time::Duration::from_secs(20), |s, _| s == 200)
        .await;
    let (code, _) = svc.terminate(std::time::Duration::from_secs(15)).await;
    assert_eq!(code, 0);
    assert_eq!(group_positions(&hub, &hub.input).await, [(GROUP.to_string(), last)]);
}
