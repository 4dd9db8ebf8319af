//! Connecting with the configured credentials: a password in `[redis]` reaches Redis, the URL's
//! own password wins over it, an empty one counts as none, and no error shows the secret.

use mt5_bus::{query, Redis, RedisConfig, Secret};
use mt5_fixtures::RedisFixture;
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
    let redis = Redis::new(cfg).expect("a valid config builds a client");
    let driver = |e| match e {
        mt5_bus::Error::Redis(e) => e,
        other => panic!("not a driver error: {other}"),
    };
    let mut c = redis
        .connect_with_timeout(Duration::from_secs(2))
        .await
        .map_err(driver)?;
    query::ping(&mut c).await.map_err(driver)?;
    Ok("PONG".into())
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
    let mut m = Redis::new(&cfg).unwrap().managed().await.unwrap();
    query::ping(&mut m).await.unwrap();
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
        let err = Redis::new(&config(url.clone(), None)).unwrap_err().to_string();
        assert!(err.contains("redis.url"), "{url}: {err}");
        assert!(!err.contains(PASSWORD), "{url}: {err}");
    }
    let err = Redis::new(&config(format!("redis://u:{PASSWORD}@h:notaport"), None))
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
    assert!(Redis::new(&cfg)
        .unwrap_err()
        .to_string()
        .contains("redis.connect_timeout_ms"));
}
