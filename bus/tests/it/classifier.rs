//! The error classifier as a user of the bus sees it (`Error::is_transient`,
//! `is_connection_dropped`, `is_unavailable` and the reply-code checks): which failures are
//! retried, which make a connection be replaced (in sentinel mode: the sentinels asked again),
//! and that a pipeline is transient only when every reply in it is. (`DurabilityShort` is
//! proven transient by the replicated publishes of `sentinel.rs`.)

use mt5_bus::{query, Error};
use mt5_fixtures::RedisFixture;

/// A server error reply with `code`, as the driver returns it.
fn reply(code: &str) -> Error {
    Error::Redis(redis::make_extension_error(code.to_string(), Some("detail".into())))
}

/// An I/O failure of `kind`, as the driver returns it.
fn io(kind: std::io::ErrorKind) -> Error {
    Error::Redis(redis::RedisError::from(std::io::Error::new(kind, "io")))
}

/// Every I/O failure means the connection is gone, not only the kinds the driver calls
/// "dropped" (reset, broken pipe, ...): one of another kind is transient, makes the connection be
/// replaced, and counts as Redis being unavailable.
#[test]
fn any_io_failure_is_transient_and_replaces_the_connection() {
    for kind in [
        std::io::ErrorKind::Other,
        std::io::ErrorKind::InvalidData,
        std::io::ErrorKind::ConnectionReset,
        std::io::ErrorKind::TimedOut,
    ] {
        let e = io(kind);
        assert_eq!(
            (e.is_transient(), e.is_connection_dropped(), e.is_unavailable()),
            (true, true, true),
            "{kind:?}"
        );
    }
}

/// `READONLY`, `MASTERDOWN`, `UNBLOCKED` (a demoted master) and `LOADING` (a restart) make the
/// connection be replaced, so sentinel mode asks for the new master; other transient replies
/// (`OOM`, `BUSY`, `NOSCRIPT`, ...) keep it, and so do permanent ones.
#[test]
fn only_a_demoted_or_restarting_server_makes_the_connection_be_replaced() {
    for code in ["READONLY", "MASTERDOWN", "UNBLOCKED", "LOADING"] {
        let e = reply(code);
        assert_eq!((e.is_connection_dropped(), e.is_transient()), (true, true), "{code}");
    }
    for code in ["OOM", "BUSY", "NOSCRIPT", "TRYAGAIN", "MOVED"] {
        let e = reply(code);
        assert_eq!((e.is_connection_dropped(), e.is_transient()), (false, true), "{code}");
    }
    for code in ["ERR", "WRONGTYPE", "NOGROUP", "NOAUTH"] {
        let e = reply(code);
        assert_eq!(
            (e.is_connection_dropped(), e.is_transient(), e.is_unavailable()),
            (false, false, false),
            "{code}"
        );
    }
}

/// Retries that ran out are no longer transient (the caller must not retry them again) but are
/// still "Redis is unavailable".
#[test]
fn exhausted_retries_are_unavailable_but_not_transient() {
    let e = Error::RetriesExhausted {
        attempts: 3,
        elapsed: std::time::Duration::from_millis(5),
        last: Box::new(reply("OOM")),
    };
    assert_eq!(
        (e.is_transient(), e.is_unavailable(), e.is_connection_dropped()),
        (false, true, false)
    );
}

/// The reply-code checks recognise their own code and nothing else.
#[test]
fn each_reply_code_check_recognises_only_its_code() {
    assert!(reply("NOSCRIPT").is_noscript());
    assert!(!reply("OOM").is_noscript());
    assert!(!reply("ERR").is_noscript());
    assert!(reply("NOGROUP").is_nogroup());
    assert!(!reply("ERR").is_nogroup());
    assert!(reply("OOM").has_code("OOM"));
    assert!(!reply("WRONGTYPE").has_code("OOM"));
    assert!(!reply("BUSYGROUP").has_code("OOM"));
    assert!(!io(std::io::ErrorKind::Other).has_code("OOM"));
    // A missing group is Redis's NOGROUP or the bus's GroupMissing, nothing else.
    assert!(reply("NOGROUP").is_group_missing());
    let missing = Error::GroupMissing {
        stream: "s".into(),
        group: "g".into(),
    };
    assert!(missing.is_group_missing());
    assert!(!missing.is_nogroup());
    assert!(!reply("ERR").is_group_missing());
    assert!(!reply("BUSYGROUP").is_group_missing());
}

/// A pipeline's error carries the reply of each failed command: it is transient only when every
/// one of them is, whichever comes first (a `NOSCRIPT` beside a `WRONGTYPE` is not retried, as the
/// retry would fail the same way).
#[tokio::test]
async fn a_pipeline_is_transient_only_when_every_failed_reply_is() {
    let fx = RedisFixture::start().await.unwrap();
    let text_key = format!("{}:text", fx.prefix());
    let mut c = fx.connection().await;
    let _: () = redis::cmd("SET")
        .arg(&text_key)
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let unknown_script = "0123456789012345678901234567890123456789";
    let run = |first_noscript: bool| {
        let mut pipe = redis::pipe();
        let noscript = redis::cmd("EVALSHA").arg(unknown_script).arg(0).clone();
        let wrongtype = redis::cmd("XADD").arg(&text_key).arg("*").arg("k").arg("v").clone();
        if first_noscript {
            pipe.add_command(noscript).add_command(wrongtype);
        } else {
            pipe.add_command(wrongtype).add_command(noscript);
        }
        pipe
    };
    for first_noscript in [true, false] {
        let r: redis::RedisResult<(redis::Value, redis::Value)> = run(first_noscript).query_async(&mut c).await;
        let e = Error::from(r.unwrap_err());
        assert!(!e.is_transient(), "NOSCRIPT first: {first_noscript}: {e}");
        let Error::Redis(driver) = &e else {
            panic!("not a driver error: {e}")
        };
        assert!(!mt5_bus::redis_is_transient(driver), "{e}");
    }
    // Every command refused with a transient reply: the pipeline is transient.
    let mut pipe = redis::pipe();
    pipe.cmd("EVALSHA")
        .arg(unknown_script)
        .arg(0)
        .cmd("EVALSHA")
        .arg(unknown_script)
        .arg(0);
    let r: redis::RedisResult<(redis::Value, redis::Value)> = pipe.query_async(&mut c).await;
    let e = Error::from(r.unwrap_err());
    assert!(e.is_transient(), "{e}");
    // The stream query of a key that is not a stream is an error, not a missing stream.
    let err = query::last_generated_id(&mut c, &text_key).await.unwrap_err();
    assert!(err.has_code("WRONGTYPE"), "{err}");
}
