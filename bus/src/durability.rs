//! Durability modes (`bus.durability`, docs/ha.md): what a write has survived when the bus calls
//! it done. `replicated` waits for replicas with `WAIT`, `fsync` for AOF fsyncs with `WAITAOF`.
//!
//! Both cover only the earlier writes **of the connection they are sent on**, so the wait always
//! travels in the same pipeline as the write, on the same connection (a wait sent after a
//! reconnect would find no write of its own and return at once, proving nothing).

use redis::aio::ConnectionLike;
use redis::{Cmd, Value};

use crate::config::{BusConfig, Durability};
use crate::error::{Error, Result};
use crate::reply::{int, items};
use crate::script::LuaScript;

/// The wait of a durability mode other than `async`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// `WAITAOF 1 n` (the master's AOF and `n` replicas' fsynced) instead of `WAIT n`.
    fsync: bool,
    replicas: u32,
    timeout_ms: u64,
}

impl Wait {
    /// The wait `cfg` asks for; `None` in `async` mode.
    pub(crate) fn of(cfg: &BusConfig) -> Option<Wait> {
        let fsync = match cfg.durability {
            Durability::Async => return None,
            Durability::Replicated => false,
            Durability::Fsync => true,
        };
        Some(Wait {
            fsync,
            replicas: cfg.durability_replicas,
            timeout_ms: cfg.durability_timeout_ms,
        })
    }

    /// The command's name (`WAIT` or `WAITAOF`).
    pub(crate) fn name(&self) -> &'static str {
        if self.fsync {
            "WAITAOF"
        } else {
            "WAIT"
        }
    }

    /// Acknowledgements that satisfy the wait: the replicas, plus the master's own fsync for
    /// `WAITAOF`.
    fn wanted(&self) -> u32 {
        self.replicas + u32::from(self.fsync)
    }

    fn cmd(&self) -> Cmd {
        let mut cmd = redis::cmd(self.name());
        if self.fsync {
            cmd.arg(1);
        }
        cmd.arg(self.replicas).arg(self.timeout_ms);
        cmd
    }

    /// The acknowledgements counted from a `WAIT` reply (replicas) or a `WAITAOF` reply (the
    /// master's fsyncs, capped at 1, plus the replicas' fsyncs), or an error when the reply has
    /// another shape.
    fn acked(&self, reply: &Value) -> Result<u32> {
        let count = if self.fsync {
            match items(reply) {
                [local, replicas] => int(local)
                    .zip(int(replicas))
                    .map(|(l, r)| l.clamp(0, 1) + r.clamp(0, i64::from(self.replicas))),
                _ => None,
            }
        } else {
            int(reply).map(|r| r.clamp(0, i64::from(self.replicas)))
        };
        count
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| Error::UnexpectedReply {
                command: self.name(),
                detail: format!("{reply:?}"),
            })
    }

    /// The error for a wait that came back short: [`Error::DurabilityShort`], or `Ok` when it
    /// was satisfied.
    fn check(&self, op: &'static str, reply: &Value) -> Result<()> {
        let acked = self.acked(reply)?;
        if acked >= self.wanted() {
            return Ok(());
        }
        Err(Error::DurabilityShort {
            op,
            command: self.name(),
            acked,
            wanted: self.wanted(),
        })
    }

    /// Runs `cmd`, a call of `script`, followed by the wait in one round trip on `conn` (loading
    /// the script on `NOSCRIPT`). Returns the script's reply and whether the wait was satisfied:
    /// `Err(`[`Error::DurabilityShort`]`)` in the second place when it came back short (the
    /// write was applied on the master all the same).
    pub(crate) async fn run_script<C: ConnectionLike + Send>(
        &self,
        op: &'static str,
        script: &LuaScript,
        conn: &mut C,
        cmd: &Cmd,
    ) -> Result<(Value, Result<()>)> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone()).add_command(self.cmd());
        let replied: redis::RedisResult<(Value, Value)> = pipe.query_async(conn).await;
        let (reply, waited) = match replied.map_err(Error::from) {
            Err(e) if e.is_noscript() => {
                script.load(conn).await?;
                pipe.query_async(conn).await?
            }
            other => other?,
        };
        match self.check(op, &waited) {
            Err(e @ Error::UnexpectedReply { .. }) => Err(e),
            short => Ok((reply, short)),
        }
    }

    /// Sends the wait again, alone, on the connection of the write, until it is satisfied (each
    /// try waits up to `durability_timeout_ms`) or the connection fails. `on_short` is called for
    /// every short answer (metrics, logs).
    pub(crate) async fn repeat<C: ConnectionLike + Send>(
        &self,
        op: &'static str,
        conn: &mut C,
        mut on_short: impl FnMut(&Error),
    ) -> Result<()> {
        loop {
            let reply: Value = self.cmd().query_async(conn).await?;
            match self.check(op, &reply) {
                Err(e @ Error::DurabilityShort { .. }) => on_short(&e),
                other => return other,
            }
        }
    }

    /// Refuses `fsync` mode on a server without `WAITAOF` (Redis before 7.2), detected with
    /// `COMMAND INFO WAITAOF` (not the version string: forks such as Valkey report their own).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when the command is missing; the driver's error.
    pub(crate) async fn check_server<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<()> {
        if !self.fsync {
            return Ok(());
        }
        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg("WAITAOF")
            .query_async(conn)
            .await?;
        match items(&info) {
            [Value::Nil] | [] => Err(Error::Unsupported {
                what: "bus.durability = \"fsync\"",
                detail: "this Redis server has no WAITAOF command (Redis 7.2 or later, or Valkey, has it); \
                         use durability \"replicated\", or upgrade the server"
                    .into(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(durability: Durability, replicas: u32) -> Wait {
        let cfg = BusConfig {
            durability,
            durability_replicas: replicas,
            durability_timeout_ms: 250,
            ..BusConfig::default()
        };
        Wait::of(&cfg).expect("a wait")
    }

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    #[test]
    fn async_mode_waits_for_nothing() {
        assert_eq!(Wait::of(&BusConfig::default()), None);
    }

    #[test]
    fn replicated_sends_wait_for_its_replicas_and_timeout() {
        assert_eq!(args(&wait(Durability::Replicated, 2).cmd()), ["WAIT", "2", "250"]);
    }

    #[test]
    fn fsync_sends_waitaof_for_the_local_fsync_and_its_replicas() {
        assert_eq!(args(&wait(Durability::Fsync, 2).cmd()), ["WAITAOF", "1", "2", "250"]);
    }

    #[test]
    fn a_wait_is_satisfied_only_by_enough_replicas() {
        let w = wait(Durability::Replicated, 2);
        assert!(w.check("publish", &Value::Int(2)).is_ok());
        assert!(w.check("publish", &Value::Int(3)).is_ok());
        match w.check("settle", &Value::Int(1)) {
            Err(Error::DurabilityShort {
                op: "settle",
                command: "WAIT",
                acked: 1,
                wanted: 2,
            }) => {}
            other => panic!("expected a short WAIT, got {other:?}"),
        }
    }

    #[test]
    fn a_waitaof_needs_the_masters_fsync_and_the_replicas() {
        let w = wait(Durability::Fsync, 1);
        let reply = |l, r| Value::Array(vec![Value::Int(l), Value::Int(r)]);
        assert!(w.check("publish", &reply(1, 1)).is_ok());
        // Extra replicas do not make up for the master's own fsync.
        match w.check("publish", &reply(0, 2)) {
            Err(Error::DurabilityShort {
                acked: 1, wanted: 2, ..
            }) => {}
            other => panic!("expected a short WAITAOF, got {other:?}"),
        }
        match w.check("publish", &reply(1, 0)) {
            Err(Error::DurabilityShort {
                acked: 1, wanted: 2, ..
            }) => {}
            other => panic!("expected a short WAITAOF, got {other:?}"),
        }
    }

    #[test]
    fn a_wait_reply_of_another_shape_is_an_unexpected_reply() {
        let w = wait(Durability::Fsync, 1);
        assert!(matches!(
            w.check("publish", &Value::Int(1)),
            Err(Error::UnexpectedReply { command: "WAITAOF", .. })
        ));
        let w = wait(Durability::Replicated, 1);
        assert!(matches!(
            w.check("publish", &Value::Nil),
            Err(Error::UnexpectedReply { command: "WAIT", .. })
        ));
    }
}
