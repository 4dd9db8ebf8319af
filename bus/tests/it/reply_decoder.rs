//! The reply decoder of the vendored redis crate (vendor/redis/VENDORED.md): its hand-written
//! fast path must decode every reply exactly as the crate's `combine` grammar does, however the
//! bytes arrive (split anywhere, several replies in one read, a `combine`-only type in between),
//! and leave malformed input to `combine`'s errors. The oracle is `redis::parse_redis_value`, which
//! still parses with `combine` alone.

use bytes::BytesMut;
use proptest::prelude::*;
use redis::{Value, ValueCodec};
use tokio_util::codec::Decoder;

/// A reply as it goes over the wire.
#[derive(Debug, Clone)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    NilBulk,
    NilArray,
    Null,
    Array(Vec<Resp>),
    /// RESP3, which only `combine` decodes: the fast path must hand over and take back.
    Map(Vec<(Resp, Resp)>),
}

impl Resp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Resp::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Resp::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Resp::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Resp::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Resp::NilBulk => out.extend_from_slice(b"$-1\r\n"),
            Resp::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Resp::Null => out.extend_from_slice(b"_\r\n"),
            Resp::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| i.encode(out));
            }
            Resp::Map(pairs) => {
                out.extend_from_slice(format!("%{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }
}

fn resp() -> impl Strategy<Value = Resp> {
    let leaf = prop_oneof![
        "[ -~]{0,12}".prop_map(Resp::Simple),
        Just(Resp::Simple("OK".into())),
        prop_oneof![
            Just("ERR wrong number".to_string()),
            Just("LOADING Redis is loading".to_string()),
            Just("NOSCRIPT No matching script".to_string()),
            Just("BUSYGROUP exists".to_string()),
            "[A-Z]{1,8}( [ -~]{0,10})?"
        ]
        .prop_map(Resp::Error),
        any::<i64>().prop_map(Resp::Int),
        // Any bytes, CR and LF among them, sometimes long (spread over many reads).
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 1000..3000),
            Just(b"a\r\nb\r\n".to_vec()),
        ]
        .prop_map(Resp::Bulk),
        Just(Resp::NilBulk),
        Just(Resp::NilArray),
        Just(Resp::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            6 => proptest::collection::vec(inner.clone(), 0..8).prop_map(Resp::Array),
            1 => proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Resp::Map),
        ]
    })
}

/// Feeds `wire` to one codec in pieces ending at `cuts`, collecting every decoded reply.
fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> Vec<redis::RedisResult<Value>> {
    let mut codec = ValueCodec::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&wire.len())) {
        let to = to.clamp(from, wire.len());
        buf.extend_from_slice(&wire[from..to]);
        from = to;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(v)) => out.push(Ok(v)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Replies split at any points decode to what `combine` alone gives for each.
    #[test]
    fn replies_split_anywhere_decode_as_the_combine_grammar_does(
        replies in proptest::collection::vec(resp(), 1..5),
        mut cuts in proptest::collection::vec(0usize..20_000, 0..12),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for r in &replies {
            let mut one = Vec::new();
            r.encode(&mut one);
            expected.push(redis::parse_redis_value(&one).expect("the oracle parses what we encode"));
            wire.extend_from_slice(&one);
        }
        cuts.sort_unstable();
        let got: Vec<Value> = decode_in_pieces(&wire, &cuts)
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("decode error: {e}")))?;
        prop_assert_eq!(got, expected);
    }
}

/// Malformed replies are errors, as `combine` reports them, whether the fast path saw them first
/// or not, and a well-formed reply before them still decodes.
#[test]
fn malformed_replies_are_errors_as_before() {
    for bad in [
        &b"$3\r\nabcXX"[..],
        b":12x\r\n",
        b"*2\r\n:1\r\n$2\r\nabZZ",
        b"?what\r\n",
        b"+no cr\n",
    ] {
        let mut wire = b"+OK\r\n".to_vec();
        wire.extend_from_slice(bad);
        // Whole, and one byte at a time.
        for cuts in [Vec::new(), (1..wire.len()).collect::<Vec<_>>()] {
            let got = decode_in_pieces(&wire, &cuts);
            assert_eq!(
                got.first().map(|r| r.as_ref().ok().cloned()),
                Some(Some(Value::Okay)),
                "{bad:?}"
            );
            let oracle = redis::parse_redis_value(bad);
            match got.get(1) {
                Some(Err(_)) => assert!(oracle.is_err(), "{bad:?}: oracle {oracle:?}"),
                // An incomplete-looking reply waits for more bytes, as `combine` does.
                None => assert!(oracle.is_err(), "{bad:?}"),
                Some(Ok(v)) => panic!("{bad:?} decoded as {v:?}; oracle {oracle:?}"),
            }
        }
    }
}

/// A stream read's reply (what a consumer decodes most): one batch of envelope entries, split
/// as a socket delivers it, decodes to the same value.
#[test]
fn a_stream_batch_split_into_socket_reads_decodes_whole() {
    let fields = |i: usize| {
        Resp::Array(
            [
                ("specversion", "1.0".to_string()),
                ("id", format!("e-{i}")),
                ("data", format!("{{\"n\":{i},\"text\":\"{}\"}}", "x".repeat(900))),
            ]
            .into_iter()
            .flat_map(|(k, v)| [Resp::Bulk(k.into()), Resp::Bulk(v.into_bytes())])
            .collect(),
        )
    };
    let entries = (0..250)
        .map(|i| Resp::Array(vec![Resp::Bulk(format!("1700000000000-{i}").into_bytes()), fields(i)]))
        .collect();
    let reply = Resp::Array(vec![Resp::Array(vec![Resp::Bulk(b"s".to_vec()), Resp::Array(entries)])]);
    let mut wire = Vec::new();
    reply.encode(&mut wire);
    let expected = redis::parse_redis_value(&wire).unwrap();
    let cuts: Vec<usize> = (1..wire.len() / 8192 + 1).map(|k| k * 8192).collect();
    let got = decode_in_pieces(&wire, &cuts);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap(), &expected);
}
