//! The settle: one script call writes a batch's decisions (ownership check, outputs and dead
//! letters, one XACK), and the parsing of its reply.

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::handler::DeadLetterReason;
use crate::durability::Wait;
use crate::error::{Error, Result};
use crate::id::StreamId;
use crate::reply::{int, items};
use crate::script::Scripts;

/// Field/value pairs of an entry to write, as raw bytes.
pub(crate) type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// How a settled entry is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Acknowledged with nothing written.
    Ack,
    /// Deleted from the stream while pending: acknowledged and counted.
    Trimmed,
    /// Its outputs written and acknowledged.
    Emit,
    /// Moved to the dead letter stream.
    DeadLetter(DeadLetterReason),
}

/// An entry whose decision is made and must be written.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    /// The entry.
    pub(crate) id: StreamId,
    /// How it is counted once settled.
    pub(crate) kind: Kind,
    /// Its outputs: (stream, fields).
    pub(crate) outputs: Vec<(String, Fields)>,
}

/// The script call settling `decided` for `consumer` of `group` on `stream`.
pub(crate) fn command(stream: &str, group: &str, consumer: &str, decided: &[Decided]) -> redis::Cmd {
    let mut out_keys: Vec<&str> = Vec::new();
    for d in decided {
        for (s, _) in &d.outputs {
            if !out_keys.contains(&s.as_str()) {
                out_keys.push(s);
            }
        }
    }
    let (min, max) = decided.iter().fold((StreamId::MAX, StreamId::MIN), |(lo, hi), d| {
        (lo.min(d.id), hi.max(d.id))
    });
    let script = &Scripts::get().settle;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.sha())
        .arg(1 + out_keys.len())
        .arg(stream)
        .arg(&out_keys)
        .arg(group)
        .arg(consumer)
        .arg(min)
        .arg(max)
        .arg(decided.len());
    for d in decided {
        cmd.arg(d.id).arg(d.outputs.len());
        for (s, fields) in &d.outputs {
            let k = out_keys.iter().position(|k| k == s).map_or(0, |i| i + 2);
            cmd.arg(k).arg(fields.len() * 2);
            for (name, value) in fields {
                cmd.arg(name).arg(value);
            }
        }
    }
    cmd
}

/// Runs a settle command; one flag per entry, in order: `true` settled by us, `false` no longer
/// ours (claimed away or acknowledged already: nothing was written for it).
///
/// With a durability [`Wait`], the wait travels in the same round trip and, when it comes back
/// short, is repeated alone on the same connection until it is answered in full (`on_short` is
/// called for each short answer). The settle itself is never sent again for that: its flags come
/// back first, with the outcome of the wait beside them (an error there means the connection
/// failed while waiting; the own-PEL re-read after the reconnect recovers what a failover lost).
///
/// # Errors
/// The driver's error; nothing was written then (the script writes all or nothing), unless the
/// reply was lost after it ran, in which case running it again finds the entries no longer
/// pending and writes nothing twice.
pub(crate) async fn run(
    conn: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    entries: usize,
    wait: Option<&Wait>,
    on_short: impl FnMut(&Error),
) -> Result<(Vec<bool>, Result<()>)> {
    let script = &Scripts::get().settle;
    let Some(wait) = wait else {
        let v: Value = script.run(conn, cmd).await?;
        return Ok((parse(&v, entries)?, Ok(())));
    };
    let (v, waited) = wait.run_script("settle", script, conn, cmd).await?;
    let flags = parse(&v, entries)?;
    let waited = match waited {
        Err(e) => {
            let mut on_short = on_short;
            on_short(&e);
            wait.repeat("settle", conn, on_short).await
        }
        ok => ok,
    };
    Ok((flags, waited))
}

fn parse(v: &Value, entries: usize) -> Result<Vec<bool>> {
    let flags: Option<Vec<bool>> = items(v).iter().map(|f| int(f).map(|i| i == 1)).collect();
    match flags {
        Some(f) if f.len() == entries => Ok(f),
        _ => Err(Error::UnexpectedReply {
            command: "settle script",
            detail: format!("expected {entries} integer flags, got {v:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<other>".into(),
            })
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_batch_names_each_output_stream_once_and_its_id_range() {
        let decided = vec![
            Decided {
                id: StreamId::new(7, 1),
                kind: Kind::Emit,
                outputs: vec![("out".into(), fields(&[("a", "1")]))],
            },
            Decided {
                id: StreamId::new(5, 0),
                kind: Kind::Ack,
                outputs: vec![],
            },
            Decided {
                id: StreamId::new(9, 0),
                kind: Kind::DeadLetter(DeadLetterReason::Malformed),
                outputs: vec![("dlq".into(), fields(&[("x", "y")])), ("out".into(), fields(&[]))],
            },
        ];
        let got = args(&command("in", "g", "c", &decided));
        let sha = Scripts::get().settle.sha().to_string();
        let want: Vec<String> = [
            "EVALSHA", &sha, "3", "in", "out", "dlq", "g", "c", "5-0", "9-0", "3", // header
            "7-1", "1", "2", "2", "a", "1", // emit to out (KEYS[2])
            "5-0", "0", // ack
            "9-0", "2", "3", "2", "x", "y", "2", "0", // dead letter to dlq (KEYS[3]), empty to out
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_reply_has_one_flag_per_entry() {
        let v = Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(1)]);
        assert_eq!(parse(&v, 3).unwrap(), vec![true, false, true]);
        assert!(parse(&v, 2).is_err(), "a reply for another batch is an error");
        assert!(parse(&Value::Array(vec![Value::Nil]), 1).is_err());
    }
}
