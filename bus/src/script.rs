//! Lua scripts for the atomic steps, run by `EVALSHA` with a reload on `NOSCRIPT` (a restarted
//! Redis has an empty script cache).

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue};

use crate::error::{Error, Result};

/// One Lua script and its SHA1.
#[derive(Debug)]
pub(crate) struct LuaScript {
    code: &'static str,
    sha: String,
}

impl LuaScript {
    fn new(code: &'static str) -> Self {
        LuaScript {
            code,
            sha: redis::Script::new(code).get_hash().to_string(),
        }
    }

    /// The script's SHA1, for callers that build the `EVALSHA` command themselves.
    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }

    /// An `EVALSHA` command for these keys and arguments.
    pub(crate) fn cmd<K: redis::ToRedisArgs, A: redis::ToRedisArgs>(&self, keys: &[K], args: A) -> Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(&self.sha).arg(keys.len()).arg(keys).arg(args);
        c
    }

    /// Loads the script into the server's cache.
    pub(crate) async fn load<C: ConnectionLike + Send>(&self, conn: &mut C) -> Result<()> {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.code)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// Runs `cmd` (built by [`LuaScript::cmd`]); on `NOSCRIPT` loads the script and runs it again.
    pub(crate) async fn run<T: FromRedisValue, C: ConnectionLike + Send>(&self, conn: &mut C, cmd: &Cmd) -> Result<T> {
        match cmd.query_async::<T>(conn).await.map_err(Error::from) {
            Err(e) if e.is_noscript() => {
                self.load(conn).await?;
                Ok(cmd.query_async::<T>(conn).await?)
            }
            other => other,
        }
    }
}

/// The bus's scripts.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) publish: LuaScript,
    pub(crate) settle: LuaScript,
    pub(crate) heartbeat: LuaScript,
    pub(crate) trim_maxlen: LuaScript,
    pub(crate) touch_pending: LuaScript,
    pub(crate) delete_consumer: LuaScript,
    pub(crate) replay: LuaScript,
    pub(crate) reread: LuaScript,
    pub(crate) ensure_group: LuaScript,
    pub(crate) advance_cursor: LuaScript,
}

impl Scripts {
    /// The shared instance.
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            publish: LuaScript::new(include_str!("lua/publish.lua")),
            settle: LuaScript::new(include_str!("lua/settle.lua")),
            heartbeat: LuaScript::new(include_str!("lua/heartbeat.lua")),
            trim_maxlen: LuaScript::new(include_str!("lua/trim_maxlen.lua")),
            touch_pending: LuaScript::new(include_str!("lua/touch_pending.lua")),
            delete_consumer: LuaScript::new(include_str!("lua/delete_consumer.lua")),
            replay: LuaScript::new(include_str!("lua/replay.lua")),
            reread: LuaScript::new(include_str!("lua/reread.lua")),
            ensure_group: LuaScript::new(include_str!("lua/ensure_group.lua")),
            advance_cursor: LuaScript::new(include_str!("lua/advance_cursor.lua")),
        })
    }
}
