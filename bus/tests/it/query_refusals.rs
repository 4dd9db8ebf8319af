//! The typed queries tell a missing stream or group (an empty answer) apart from a key that is
//! not a stream (an error), and the paged reader ends at its first short page.

use mt5_bus::query::{self, RangeReader};
use mt5_bus::{Connection, Redis, RedisConfig};
use mt5_fixtures::RedisFixture;

async fn connection(fx: &RedisFixture) -> Connection {
    Redis::new(&RedisConfig::default().with_url(fx.url()))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A key holding a string is not taken for a missing stream or group: the last generated id and
/// the pending summary of it are `WRONGTYPE` errors, not `0-0` and `None`.
#[tokio::test]
async fn a_key_that_is_not_a_stream_is_an_error_not_a_missing_stream() {
    let fx = RedisFixture::start().await.unwrap();
    let key = format!("{}:text", fx.prefix());
    let mut c = connection(&fx).await;
    let _: () = redis::cmd("SET").arg(&key).arg("x").query_async(&mut c).await.unwrap();
    let err = query::last_generated_id(&mut c, &key).await.unwrap_err();
    assert!(err.has_code("WRONGTYPE"), "{err}");
    let err = query::pending_summary(&mut c, &key, "g").await.unwrap_err();
    assert!(err.has_code("WRONGTYPE"), "{err}");
    // The missing ones, for contrast.
    assert_eq!(query::last_generated_id(&mut c, "absent").await.unwrap(), "0-0");
    assert_eq!(query::pending_summary(&mut c, "absent", "g").await.unwrap(), None);
}

/// A page shorter than asked for is the stream's end: the reader does not ask again (one round
/// trip fewer), so entries added after it are for a new reader.
#[tokio::test]
async fn the_range_reader_ends_at_its_first_short_page() {
    let fx = RedisFixture::start().await.unwrap();
    let s = format!("{}:in", fx.prefix());
    let mut c = connection(&fx).await;
    let add = |id: &'static str| redis::cmd("XADD").arg(&s).arg(id).arg("k").arg("v").clone();
    let _: String = add("1-0").query_async(&mut c).await.unwrap();
    let _: String = add("2-0").query_async(&mut c).await.unwrap();

    let mut reader = RangeReader::new(s.as_str(), 3);
    let page = reader.next_page(&mut c).await.unwrap().unwrap();
    assert_eq!(page.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["1-0", "2-0"]);
    let _: String = add("3-0").query_async(&mut c).await.unwrap();
    assert_eq!(reader.next_page(&mut c).await.unwrap(), None);
    let fresh = RangeReader::new(s.as_str(), 3).read_to_end(&mut c).await.unwrap();
    assert_eq!(fresh.len(), 3);
}
