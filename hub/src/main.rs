//! `mt5-hub`: the one binary of the MetaTrader 5 hub's event bus. `main` parses the command
//! line, sets up logging and hands over to [`commands::run`]; exit codes follow the contract:
//! 0 success, 1 runtime failure, 2 usage or configuration error, 3 Redis unreachable after
//! bounded retries.

mod cli;
mod commands;
mod config;
mod error;
#[cfg(feature = "chaos")]
mod faults;
mod gateway;
mod http;
mod logging;
mod output;
mod redis_conn;
mod relay;
mod services;
mod shutdown;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::error::{EXIT_FAILURE, EXIT_USAGE};

/// mimalloc instead of the system allocator: the consume path allocates per entry, and glibc's
/// malloc/free took over a third of a filter's CPU in the drain profile (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help and --version).
    let cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::Demo(_)) && std::env::var_os(logging::LOG_ENV).is_none() {
        // The demo reports its own progress; log lines would only clutter it. Still one thread.
        std::env::set_var(logging::LOG_ENV, "error");
    }
    if let Err(msg) = logging::init() {
        eprintln!("error: {msg}");
        return ExitCode::from(EXIT_USAGE);
    }
    // Only a `--features chaos` build reads FAILPOINTS; a shipped binary has no fail points.
    #[cfg(feature = "chaos")]
    match faults::init() {
        Ok(names) if !names.is_empty() => {
            tracing::warn!(fail_points = ?names, "Fault injection hooks are active (FAILPOINTS).");
        }
        Ok(_) => {}
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli.config.as_deref(), cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!(error = ?e, "The command failed.");
            eprintln!("error: {e}");
            e.exit()
        }
    }
}
