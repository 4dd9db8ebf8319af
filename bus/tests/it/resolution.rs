//! How `Redis` resolves where to connect and what its connections say about themselves: in
//! sentinel mode every master a sentinel names is tried once, newest epoch first, and only a
//! server whose `ROLE` is `master` is taken; an unreachable or busy one is passed over, one that refuses
//! `ROLE` for good is a permanent error; a server that is not a sentinel is reported with its
//! own error; the URL's database reaches every kind of connection; `Debug` shows the redacted URL
//! and the sentinels, never a password.

use std::time::Duration;

use mt5_bus::{query, Redis, RedisConfig, Secret};
use mt5_fixtures::{RedisFixture, SentinelFixture};
use redis::aio::ConnectionLike;

/// Long enough that no sentinel calls a master down during a test.
const NEVER_DOWN_MS: u64 = 60_000;

/// The port of the server `conn` talks to.
async fn port_of(conn: &mut mt5_bus::Connection) -> u16 {
    let (_, port): (String, u16) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async(conn)
        .await
        .unwrap();
    port
}

/// A server the sentinels name but whose `ROLE` is `slave` is never taken for the master, and
/// is tried once however many sentinels name it; a master named by another sentinel after it
/// is still found.
#[tokio::test]
async fn a_named_master_is_tried_once_and_taken_only_if_its_role_is_master() {
    let (demoted, live) = tokio::join!(
        SentinelFixture::start(0, NEVER_DOWN_MS),
        SentinelFixture::start(0, NEVER_DOWN_MS)
    );
    let (demoted, live) = (demoted.unwrap(), live.unwrap());
    assert_eq!(demoted.master_name(), live.master_name());
    // The first topology's master now replicates the second's: its sentinels still name it
    // (nothing fails over, it has no replica), but it answers ROLE as a slave.
    let demoted_port = demoted.servers()[0].port();
    let live_port = live.servers()[0].port();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(live_port)
        .query_async(&mut demoted.servers()[0].connection().await)
        .await
        .unwrap();

    let only_demoted = RedisConfig::default().with_sentinels(demoted.master_name(), demoted.sentinel_addrs());
    let err = Redis::new(&only_demoted).unwrap().connect().await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let text = err.to_string();
    let tried = format!("127.0.0.1:{demoted_port} (epoch 0) has ROLE slave");
    assert_eq!(
        text.matches(&tried).count(),
        1,
        "three sentinels name one server: it is tried once: {text}"
    );

    // The demoted server's sentinel is asked first; the live master, named by the other three
    // with the same epoch, is tried after it.
    let mut sentinels = vec![demoted.sentinel_addrs()[0].clone()];
    sentinels.extend(live.sentinel_addrs());
    let both = RedisConfig::default().with_sentinels(live.master_name(), sentinels);
    let mut conn = Redis::new(&both).unwrap().connect().await.unwrap();
    assert_eq!(port_of(&mut conn).await, live_port);
}

/// A "sentinel" that is a plain Redis server answers `SENTINEL MASTER` with an error: that error
/// is reported for its address, not taken for "this sentinel knows no such master".
#[tokio::test]
async fn a_server_that_is_not_a_sentinel_is_reported_with_its_own_error() {
    let fx = RedisFixture::start().await.unwrap();
    let cfg = RedisConfig::default().with_sentinels("mt5master", [format!("127.0.0.1:{}", fx.port())]);
    let err = Redis::new(&cfg).unwrap().connect().await.unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("knows no master"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}: ", fx.port())) && text.contains("unknown command"),
        "{text}"
    );
}

/// In sentinel mode the URL's database is selected on the master and reported by every kind of
/// connection (`get_db`), the self-reconnecting one included; standalone connections report it
/// too.
#[tokio::test]
async fn the_urls_database_reaches_every_kind_of_connection() {
    let fx = SentinelFixture::start(0, NEVER_DOWN_MS).await.unwrap();
    // Sentinel mode ignores the URL's host and port; the database counts.
    let cfg = RedisConfig::default()
        .with_url("redis://127.0.0.1:1/3")
        .with_sentinels(fx.master_name(), fx.sentinel_addrs());
    let redis = Redis::new(&cfg).unwrap();
    assert_eq!(redis.config(), &cfg);
    let mut managed = redis.managed().await.unwrap();
    let direct = redis.connect().await.unwrap();
    assert_eq!(
        (format!("{managed:?}"), format!("{direct:?}")),
        ("Connection(sentinel)".to_string(), "Connection(direct)".to_string())
    );
    assert_eq!((managed.get_db(), direct.get_db()), (3, 3));
    let key = format!("{}:db", fx.servers()[0].prefix());
    query::record_seen(&mut managed, &key, &[(1, "a")]).await.unwrap();
    let mut master = fx.servers()[0].connection().await;
    let in_db = |db: u8| {
        let mut pipe = redis::pipe();
        pipe.cmd("SELECT").arg(db).ignore().cmd("ZCARD").arg(&key);
        pipe
    };
    let (zero,): (u64,) = in_db(0).query_async(&mut master).await.unwrap();
    let (three,): (u64,) = in_db(3).query_async(&mut master).await.unwrap();
    assert_eq!((zero, three), (0, 1));

    let standalone = RedisFixture::start().await.unwrap();
    let url = format!("{}/5", standalone.url().trim_end_matches('/'));
    let redis = Redis::new(&RedisConfig::default().with_url(url)).unwrap();
    let managed = redis.managed().await.unwrap();
    let direct = redis.connect_with_timeout(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        (format!("{managed:?}"), format!("{direct:?}")),
        ("Connection(managed)".to_string(), "Connection(direct)".to_string())
    );
    assert_eq!((managed.get_db(), direct.get_db()), (5, 5));
}

/// `Debug` of a client shows where it connects with the URL's password replaced by `***`, and
/// in sentinel mode the master's name and the sentinels; neither password appears.
#[test]
fn a_clients_debug_shows_the_redacted_url_and_the_sentinels() {
    let mut cfg = RedisConfig::default().with_url("redis://alice:s3cret@h:6380/2");
    cfg.password = Some(Secret::new("other-s3cret"));
    let redis = Redis::new(&cfg).unwrap();
    assert_eq!(redis.config(), &cfg);
    assert_eq!(
        format!("{redis:?}"),
        r#"Redis { url: "redis://alice:***@h:6380/2", .. }"#
    );

    let mut cfg = cfg.with_sentinels("m", ["10.0.0.1:26379", "[::1]:26380"]);
    cfg.sentinel_password = Secret::new("sentinel-s3cret");
    let shown = format!("{:?}", Redis::new(&cfg).unwrap());
    assert_eq!(
        shown,
        r#"Redis { url: "redis://alice:***@h:6380/2", sentinel_master: "m", sentinels: [("10.0.0.1", 26379), ("::1", 26380)], .. }"#
    );
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// A named master that cannot be reached (killed, not yet failed over) is passed over for the
/// next master the sentinels name: "unreachable" is not an answer to give up on.
#[tokio::test]
async fn an_unreachable_master_is_passed_over_for_the_next_one_named() {
    let (dead, live) = tokio::join!(
        SentinelFixture::start(0, NEVER_DOWN_MS),
        SentinelFixture::start(0, NEVER_DOWN_MS)
    );
    let (mut dead, live) = (dead.unwrap(), live.unwrap());
    dead.server_mut(0).kill().await.unwrap();
    let mut sentinels = vec![dead.sentinel_addrs()[0].clone()];
    sentinels.extend(live.sentinel_addrs());
    let cfg = RedisConfig::default().with_sentinels(live.master_name(), sentinels);
    let mut conn = Redis::new(&cfg).unwrap().connect().await.unwrap();
    assert_eq!(port_of(&mut conn).await, live.servers()[0].port());
}

/// A master that refuses `ROLE` for good (an ACL user without it) is a permanent error at once,
/// with the server's reason, not "no master found" (which would be retried as unavailable).
#[tokio::test]
async fn a_master_that_refuses_role_is_a_permanent_error() {
    let fx = SentinelFixture::start(0, NEVER_DOWN_MS).await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-role")
        .query_async(&mut fx.servers()[0].connection().await)
        .await
        .unwrap();
    let cfg = RedisConfig::default().with_sentinels(fx.master_name(), fx.sentinel_addrs());
    let err = Redis::new(&cfg).unwrap().connect().await.unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
    assert!(err.has_code("NOPERM"), "{err}");
}

/// A named master that answers `ROLE` with a transient refusal (`BUSY`: a script is running) is
/// passed over for the next master named, as an unreachable one is; only a permanent refusal
/// ends the search.
#[tokio::test]
async fn a_busy_master_is_passed_over_for_the_next_one_named() {
    let (busy, live) = tokio::join!(
        SentinelFixture::start(0, NEVER_DOWN_MS),
        SentinelFixture::start(0, NEVER_DOWN_MS)
    );
    let (busy, live) = (busy.unwrap(), live.unwrap());
    let server = &busy.servers()[0];
    let mut admin = server.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(10)
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut looping = server.connection().await;
    let script = tokio::spawn(async move {
        let _: redis::RedisResult<redis::Value> = redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query_async(&mut looping)
            .await;
    });
    let mut answered_busy = false;
    for _ in 0..100 {
        let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(&mut admin).await;
        if role.is_err_and(|e| e.code() == Some("BUSY")) {
            answered_busy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered_busy, "the server never answered BUSY");

    let mut sentinels = vec![busy.sentinel_addrs()[0].clone()];
    sentinels.extend(live.sentinel_addrs());
    let cfg = RedisConfig::default().with_sentinels(live.master_name(), sentinels);
    let connected = Redis::new(&cfg).unwrap().connect().await;
    let _: redis::RedisResult<()> = redis::cmd("SCRIPT").arg("KILL").query_async(&mut admin).await;
    script.abort();
    let mut conn = connected.unwrap();
    assert_eq!(port_of(&mut conn).await, live.servers()[0].port());
}
