//! `mt5-chaos`: the fault proxy as a process (`mt5-chaos proxy`).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mt5_chaos::proxy::FaultProxy;
use tokio_util::sync::CancellationToken;

/// The chaos tools of mt5-hub.
#[derive(Debug, Parser)]
#[command(name = "mt5-chaos", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the fault proxy: TCP proxies with toxics (latency, bandwidth, timeout, slow_close,
    /// limit_data, slicer, reset_peer), managed through the Toxiproxy 2.x HTTP API, until
    /// SIGINT or SIGTERM.
    Proxy {
        /// Address of the HTTP API (Toxiproxy's default port is 8474).
        #[arg(long, default_value = "127.0.0.1:8474", env = "MT5_CHAOS_PROXY_LISTEN")]
        listen: String,
        /// Log filter, as RUST_LOG.
        #[arg(long, default_value = "info", env = "MT5_LOG")]
        log: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy { listen, log } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_new(&log).context("--log")?)
                .with_writer(std::io::stderr)
                .init();
            let cancel = CancellationToken::new();
            let proxy = FaultProxy::start_with_cancel(&listen, cancel.clone())
                .await
                .context("starting the fault proxy")?;
            eprintln!("mt5-chaos: fault proxy API on {}", proxy.api_url());
            tokio::select! {
                () = shutdown_signal() => {}
                () = proxy.cancelled() => {}
            }
            eprintln!("mt5-chaos: shutting down");
            proxy.shutdown().await;
            Ok(())
        }
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
