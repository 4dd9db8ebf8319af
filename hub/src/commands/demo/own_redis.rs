//! The demo's own Redis, when no Redis URL is configured: a `redis-server` child when there is
//! a binary to start (`MT5_REDIS_SERVER`, else the usual places; see `local_redis`), else a
//! container of `MT5_REDIS_IMAGE` when Docker answers (see `container`), else a message that
//! says what to install.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::container::{redis_image, RedisContainer, Unavailable, REDIS_IMAGE_ENV};
use super::local_redis::{redis_server, LocalRedis, REDIS_SERVER_ENV};
use super::progress::Progress;
use crate::error::HubError;

/// A Redis the demo started and removes when it ends.
#[derive(Debug)]
pub(crate) enum OwnRedis {
    /// A `redis-server` child in a temporary directory.
    Process(LocalRedis),
    /// A Docker container.
    Container(RedisContainer),
}

impl OwnRedis {
    /// Starts one, saying on `progress` (stderr) which kind and where.
    ///
    /// # Errors
    /// [`HubError::Failed`] when neither a `redis-server` nor Docker with the image is available
    /// (naming both and what to install), or the chosen one does not start;
    /// [`HubError::Usage`] when `MT5_REDIS_SERVER` names a binary that does not exist.
    pub(crate) async fn start(cancel: &CancellationToken, progress: &mut Progress) -> Result<OwnRedis, HubError> {
        let server_var = std::env::var(REDIS_SERVER_ENV).ok();
        let path_var = std::env::var("PATH").ok();
        if let Some(binary) = redis_server(server_var.as_deref(), path_var.as_deref())? {
            return Self::start_process(&binary, cancel, progress).await;
        }
        let image = redis_image(std::env::var(REDIS_IMAGE_ENV).ok().as_deref());
        let no_server = if server_var.as_deref().is_some_and(|v| !v.trim().is_empty()) {
            format!("{REDIS_SERVER_ENV}=none hides `redis-server`")
        } else {
            "`redis-server` was not found on PATH or in /usr/bin, /usr/sbin, /usr/local/bin".to_string()
        };
        progress.start(format!("{no_server}; starting Redis in Docker (image {image})"));
        if let Err(why) = RedisContainer::check_docker(cancel).await {
            progress.clear();
            return Err(neither(&no_server, &image, &why));
        }
        let pulled = RedisContainer::ensure_image(&image, cancel, || {
            progress.update(format!("pulling the image {image} (not present locally)"));
        })
        .await;
        if let Err(why) = pulled {
            progress.clear();
            return Err(neither(&no_server, &image, &why));
        }
        progress.update(format!("starting a Redis container of {image}"));
        let container = match RedisContainer::start(&image, cancel).await {
            Ok(c) => c,
            Err(e) => {
                progress.clear();
                return Err(e);
            }
        };
        progress.done(format!(
            "started a temporary Redis container of {} on 127.0.0.1:{} with Docker ({no_server}); removed on exit",
            container.image(),
            container.port()
        ));
        Ok(OwnRedis::Container(container))
    }

    async fn start_process(
        binary: &Path,
        cancel: &CancellationToken,
        progress: &mut Progress,
    ) -> Result<OwnRedis, HubError> {
        progress.start("starting a temporary redis-server");
        match LocalRedis::start(binary, cancel).await {
            Ok(local) => {
                progress.done(format!(
                    "started a temporary redis-server on 127.0.0.1:{}",
                    local.port()
                ));
                Ok(OwnRedis::Process(local))
            }
            Err(e) => {
                progress.clear();
                Err(e)
            }
        }
    }

    /// Its URL, `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        match self {
            OwnRedis::Process(p) => p.url(),
            OwnRedis::Container(c) => c.url(),
        }
    }

    /// What the report calls it: `local` (a `redis-server` child) or `container`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            OwnRedis::Process(_) => "local",
            OwnRedis::Container(_) => "container",
        }
    }

    /// Stops it and removes its directory or container.
    pub(crate) async fn stop(self) {
        match self {
            OwnRedis::Process(p) => p.stop().await,
            OwnRedis::Container(c) => c.stop().await,
        }
    }
}

/// The error for a machine where the demo can start no Redis: what is missing and what to do.
fn neither(no_server: &str, image: &str, why: &Unavailable) -> HubError {
    let (docker, install) = match why {
        Unavailable::Docker(e) => (
            format!("Docker cannot run one either ({e})"),
            format!(" or Docker (the demo then runs the image {image})"),
        ),
        Unavailable::Image(e) => (
            format!(
                "Docker answers, but {e} (set {REDIS_IMAGE_ENV} to a Redis 7.0+ image that is present or pullable; \
                 without a registry, `ci/redis-image.sh` builds one from Debian's redis-server)"
            ),
            String::new(),
        ),
    };
    HubError::Failed(format!(
        "the demo needs Redis: {no_server}, and {docker}. Install redis-server (Debian/Ubuntu: \
         `sudo apt-get install redis-server`; macOS: `brew install redis`){install}, \
         or point the demo at a running Redis with MT5_REDIS_URL=redis://host:port"
    ))
}
