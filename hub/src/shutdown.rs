//! Shutdown detection: SIGINT (Ctrl-C) or SIGTERM cancels one root token.

use tokio_util::sync::CancellationToken;

/// Exit code of a second signal while the first one's shutdown is still running.
const FORCED_EXIT: i32 = 1;

/// A token cancelled on the first SIGINT or SIGTERM. Commands stop cleanly on it (finishing the
/// write in flight); a second signal exits at once with code 1.
pub(crate) fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested by signal; stopping after the write in flight.");
        cancel.cancel();
        wait_for_signal().await;
        tracing::warn!("Second signal; exiting now.");
        std::process::exit(FORCED_EXIT);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM; only Ctrl-C stops this command.");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
