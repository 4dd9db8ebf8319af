//! One module per command group; [`run()`] dispatches a parsed command line.

mod alert_relay;
mod config;
mod deadletter;
pub(crate) mod demo;
mod fetch;
mod filter;
mod gateway;
mod groups;
pub(crate) mod publish;
mod run;
pub(crate) mod streams;

use std::path::Path;

use crate::cli::{Command, ConfigCommand, GroupsCommand, StreamsCommand};
use crate::config::HubConfig;
use crate::error::HubError;
use crate::shutdown;

/// Loads the config and runs `command`. Commands that talk to Redis get a cancellation token
/// cancelled by SIGINT/SIGTERM.
///
/// # Errors
/// The command's error; its [`HubError::exit_code`] is the process's.
pub(crate) async fn run(config_path: Option<&Path>, command: Command) -> Result<(), HubError> {
    let cfg = HubConfig::load(config_path, std::env::vars())?;
    if let Some(path) = config_path {
        tracing::debug!(path = %path.display(), redis = %cfg.redis.redacted_url(), "Loaded the configuration.");
    }
    let cancel = shutdown::on_signal();
    match command {
        Command::Config(ConfigCommand::Check { print }) => config::check(&cfg, print),
        Command::Streams(StreamsCommand::Stats { json, streams }) => streams::stats(&cfg, &cancel, json, streams).await,
        Command::Streams(StreamsCommand::Tail { stream, from, count }) => {
            streams::tail(&cfg, &cancel, &stream, &from, count).await
        }
        Command::Deadletter(cmd) => deadletter::run(&cfg, &cancel, cmd).await,
        Command::Groups(GroupsCommand::Create { stream, group, at }) => {
            groups::create(&cfg, &cancel, &stream, &group, &at).await
        }
        Command::Publish(args) => publish::run(&cfg, &cancel, args).await,
        Command::Fetch { once } => fetch::run(&cfg, &cancel, once).await,
        Command::Filter { consumer } => filter::run(&cfg, &cancel, consumer).await,
        Command::Run { consumer } => run::run(&cfg, &cancel, consumer).await,
        Command::Demo(args) => demo::run(config_path, &cfg, &cancel, args).await,
        Command::AlertRelay => alert_relay::run(&cfg, &cancel).await,
        Command::Gateway => gateway::run(&cfg, &cancel).await,
    }
}
