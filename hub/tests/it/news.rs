//! `fetch --once` against the mock EODHD: what it publishes, idempotency, and its exit codes.

use mt5_fixtures::eodhd::{Fault, MockEodhd};
use mt5_fixtures::redis;

use crate::support::{Hub, GROUP};

/// Articles the samples hold per ticker after the client's checks: AAPL 24 with one
/// duplicate link, MSFT 11, NVDA 12, TSLA 12 with one malformed article.
const SAMPLE_PUBLISHED: u64 = 23 + 11 + 12 + 11;

/// The total line's numbers: `fetched`, `published`, `duplicates`.
fn totals(stdout: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("total:"))
        .unwrap_or_else(|| panic!("no total line: {stdout}"));
    let num = |what: &str| -> u64 {
        let rest = &line[line.find(what).unwrap_or_else(|| panic!("{what} in {line}")) + what.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num("fetched"), num("published"), num("duplicates"))
}

/// One round publishes every valid sample article once per ticker as `news.raw.v1` (the group
/// exists first); a second round publishes nothing new: the idempotency keys hold.
#[tokio::test]
async fn fetch_once_publishes_the_samples_and_a_rerun_publishes_nothing() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env = hub.news_env(&mock);

    let run = crate::support::run_with(&env, &["fetch", "--once"], None).await;
    let out = run.ok();
    for t in ["AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"] {
        assert!(out.contains(t), "{out}");
    }
    let (_, published, _) = totals(out);
    assert_eq!(published, SAMPLE_PUBLISHED, "{out}");
    assert_eq!(hub.xlen(&hub.input).await, SAMPLE_PUBLISHED);
    let entries = hub.entries(&hub.input).await;
    assert!(entries
        .iter()
        .all(|(_, f)| f["type"] == "news.raw.v1" && f.contains_key("ticker")));
    // The group was created before the first publish, at 0: it sees every entry.
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&hub.input)
        .query_async(&mut hub.conn().await)
        .await
        .unwrap();
    assert!(format!("{groups:?}").contains(GROUP), "{groups:?}");

    let again = crate::support::run_with(&env, &["fetch", "--once"], None).await;
    let out = again.ok();
    let (fetched, published, duplicates) = totals(out);
    assert_eq!(published, 0, "{out}");
    assert_eq!(duplicates, fetched, "{out}");
    assert_eq!(hub.xlen(&hub.input).await, SAMPLE_PUBLISHED);
}

/// Without `EODHD_API_KEY`, `fetch` and `run` are usage errors (exit 2) that name the variable.
#[tokio::test]
async fn fetch_and_run_without_an_api_key_exit_2_naming_it() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    let env: Vec<_> = hub
        .news_env(&mock)
        .into_iter()
        .filter(|(k, _)| k != "EODHD_API_KEY")
        .collect();
    for args in [&["fetch", "--once"][..], &["fetch"], &["run"]] {
        let run = crate::support::run_with(&env, args, None).await;
        run.code(2);
        assert!(run.stderr.contains("EODHD_API_KEY"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(mock.request_count(), 0);
}

/// When every ticker fails (the key is rejected), `fetch --once` exits 1 and says why per
/// ticker, without printing the key.
#[tokio::test]
async fn fetch_once_exits_1_when_every_ticker_fails() {
    let hub = Hub::start().await;
    let mock = MockEodhd::start().await;
    mock.set_fault(Fault::Unauthenticated);
    let env = hub.news_env(&mock);
    let run = crate::support::run_with(&env, &["fetch", "--once"], None).await;
    run.code(1);
    assert!(run.stdout.contains("AAPL.US"), "{}", run.stdout);
    assert!(run.stderr.contains("every ticker failed"), "{}", run.stderr);
    assert!(!run.stdout.contains(&mock.key()) && !run.stderr.contains(&mock.key()));
    assert_eq!(hub.xlen(&hub.input).await, 0);
}
