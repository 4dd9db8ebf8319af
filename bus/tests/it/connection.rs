//! Connecting with the configured credentials: a password in `[redis]` reaches Redis, the URL's
//! own password wins over it, an empty one counts as none, and no error shows the secret.

use mt5_bus::connection::{client, connect, connection_manager};
use mt5_bus::{RedisConfig, Secret};
use mt5_fixtures::RedisFixture;
use redis::aio::MultiplexedConnection;
use std::time::Duration;

const PASSWORD: &str = "s3cret-pw";

/// A fixture whose default user needs [`PASSWORD`] from now on.
async fn password_protected() -> RedisFixture {
    let fx = RedisFixture::start().await.unwrap();
    let mut c = fx.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query_async(&mut c)
        .await
        .unwrap();
    fx
}

fn config(url: String, password: Option<&str>) -> RedisConfig {
    let mut cfg = RedisConfig::default().with_url(url);
    cfg.password = password.map(Secret::new);
    cfg
}

/// PING on a connection made from `cfg` the way the bus makes them.
async fn ping(cfg: &RedisConfig) -> redis::RedisResult<String> {
    let client = client(cfg).expect("a valid config builds a client");
    let mut c: MultiplexedConnection = connect(&client, cfg, Duration::from_secs(2))
        .await
        .map_err(|e| match e {
            mt5_bus::Error::Redis(e) => e,
            other => panic!("not a driver error: {other}"),
        })?;
    redis::cmd("PING").query_async(&mut c).await
}

/// The password of `[redis]` is sent when the URL has none: without it the server refuses.
#[tokio::test]
async fn the_configured_password_reaches_redis() {
    let fx = password_protected().await;
    assert_eq!(ping(&config(fx.url(), Some(PASSWORD))).await.unwrap(), "PONG");
    let refused = ping(&config(fx.url(), None)).await.unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    // An empty password is no password.
    let refused = ping(&config(fx.url(), Some(""))).await.unwrap_err();
    assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
    // The connection manager uses the same credentials.
    let cfg = config(fx.url(), Some(PASSWORD));
    let mut m = connection_manager(&client(&cfg).unwrap(), &cfg).await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut m).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// A password written in the URL is used as is; the `[redis]` password does not replace it.
#[tokio::test]
async fn the_urls_own_password_wins_over_the_configured_one() {
    let fx = password_protected().await;
    let url = fx.url().replacen("redis://", &format!("redis://:{PASSWORD}@"), 1);
    assert_eq!(ping(&config(url.clone(), Some("wrong"))).await.unwrap(), "PONG");
    assert_eq!(ping(&config(url, None)).await.unwrap(), "PONG");
}

/// A URL that is rejected names `redis.url` and shows the host but never the password.
#[test]
fn an_invalid_url_is_rejected_without_showing_its_password() {
    for url in [
        format!("redis://u:{PASSWORD}@h:notaport"),
        format!("http://u:{PASSWORD}@h:6379"),
        format!("redis-cluster://u:{PASSWORD}@h:7000"),
    ] {
        let err = client(&config(url.clone(), None)).unwrap_err().to_string();
        assert!(err.contains("redis.url"), "{url}: {err}");
        assert!(!err.contains(PASSWORD), "{url}: {err}");
    }
    let err = client(&config(format!("redis://u:{PASSWORD}@h:notaport"), None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("u:***@h:notaport"), "{err}");
    // It says why: the driver's error kind (its detail may echo the URL, so only the kind).
    let kind = format!(
        "{:?}",
        redis::IntoConnectionInfo::into_connection_info(format!("redis://u:{PASSWORD}@h:notaport").as_str())
            .unwrap_err()
            .kind()
    );
    assert!(err.ends_with(&format!("is not a valid Redis URL: {kind}")), "{err}");
    // The config is validated first: a zero timeout never makes a client.
    let mut cfg = config("redis://h:6379".into(), None);
    cfg.connect_timeout_ms = 0;
    assert!(client(&cfg)
        .unwrap_err()
        .to_string()
        .contains("redis.connect_timeout_ms"));
}
