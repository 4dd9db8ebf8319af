//! `replicated` durability's publish against a real master and replica (`SentinelFixture`, used
//! without sentinel mode and without a failover): the publish script and `WAIT` travel in one
//! pipeline, so a flushed script cache must be handled there too.

use mt5_bus::{query, Durability, Redis, RedisConfig};
use mt5_fixtures::{RedisFixture, SentinelFixture};

use crate::support::{configs, producer, scripted, Names};

/// Sentinels that never call the master down within a test.
const NO_FAILOVER_MS: u64 = 60_000;

/// How often the server ran `SCRIPT LOAD` since its stats were reset.
async fn script_loads(server: &RedisFixture) -> u64 {
    server.command_calls("script|load").await.unwrap()
}

/// After the master's script cache was flushed (a restart, `SCRIPT FLUSH`), a replicated publish
/// loads the script once and succeeds; a publish refused for another reason (`WRONGTYPE`) is
/// returned as it is, without loading the script or sending the batch again.
#[tokio::test]
async fn a_replicated_publish_reloads_its_script_only_after_noscript() {
    let fx = SentinelFixture::start(1, NO_FAILOVER_MS).await.unwrap();
    let master = &fx.servers()[0];
    let n = Names::new(master);
    let (redis, mut bus) = configs(master, &n);
    bus.durability = Durability::Replicated;
    let p = producer(&redis, &bus).await;
    p.publish(&n.input, &scripted(0, &["emit"])).await.unwrap();

    let mut admin = master.connection().await;
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut admin)
        .await
        .unwrap();
    let published = p.publish(&n.input, &scripted(1, &["emit"])).await.unwrap();
    assert!(!published.duplicate);
    assert_eq!(script_loads(master).await, 1);

    let text_key = format!("{}:text", n.input);
    let _: () = redis::cmd("SET")
        .arg(&text_key)
        .arg("x")
        .query_async(&mut admin)
        .await
        .unwrap();
    let err = p.publish(&text_key, &scripted(2, &["emit"])).await.unwrap_err();
    assert!(!err.is_transient() && err.to_string().contains("WRONGTYPE"), "{err}");
    assert_eq!(script_loads(master).await, 1, "a WRONGTYPE refusal reloaded the script");

    let mut c = Redis::new(&RedisConfig::default().with_url(master.url()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(query::len(&mut c, &n.input).await.unwrap(), 2);
}
