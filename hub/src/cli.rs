//! The command line (clap derive). Every command and flag has its help text here; `docs/cli.md`
//! has the long form with examples.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::config::CONFIG_ENV;

/// What `--version` prints after the name: the package version, followed by the cargo features
/// that add behaviour when any is enabled (CI checks that a shipped build reports none).
#[cfg(not(feature = "chaos"))]
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What `--version` prints after the name: the package version, followed by the cargo features
/// that add behaviour when any is enabled (CI checks that a shipped build reports none).
#[cfg(feature = "chaos")]
pub(crate) const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (features: chaos)");

/// mt5-hub: the event bus of the MetaTrader 5 hub on Redis Streams.
///
/// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 3 Redis unreachable
/// after bounded retries. Logs go to stderr (filter `MT5_LOG`, default `info`; format
/// `MT5_LOG_FORMAT=pretty|json`).
#[derive(Debug, Parser)]
#[command(name = "mt5-hub", version = VERSION, propagate_version = true)]
pub(crate) struct Cli {
    /// Config file (TOML). Every key can also be set by `MT5_<SECTION>__<KEY>`.
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,

    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check the configuration, or print the effective one.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect and follow streams.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// List, show, replay and purge dead letters.
    #[command(subcommand)]
    Deadletter(DeadletterCommand),
    /// Create consumer groups explicitly (services create one only on an absent or empty stream).
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Publish events: one (`--data`), JSON lines from stdin, or a paced load (`--rate`).
    Publish(PublishArgs),
    /// Fetch news from EODHD into the raw news stream: a service, or one round with `--once`.
    /// Needs `EODHD_API_KEY`. The service serves `/metrics`, `/healthz`, `/readyz` on `[http].addr`.
    Fetch {
        /// Run one round over the watchlist, print a per-ticker summary and exit (1 when every
        /// ticker failed).
        #[arg(long)]
        once: bool,
    },
    /// Run one consumer of the news filter's group until SIGINT/SIGTERM, serving `/metrics`,
    /// `/healthz` and `/readyz` on `[http].addr`.
    Filter {
        /// The consumer name. Default `<host>-<pid>-<random>`; a fixed name lets a restarted
        /// consumer re-read its own pending entries at once.
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
    },
    /// Run everything in one process: the fetcher, one filter consumer (with its reclaimer), the
    /// trimmer and the HTTP server. Needs `EODHD_API_KEY`.
    Run {
        /// The filter consumer's name. Default `<host>-<pid>-<random>`.
        #[arg(long, value_name = "NAME")]
        consumer: Option<String>,
    },
    /// The whole news pipeline on this machine: a temporary redis-server (unless a Redis URL is
    /// configured), bundled sample news (or EODHD with `EODHD_API_KEY`), fetch, filter, report.
    Demo(crate::commands::demo::DemoArgs),
    /// Relay Alertmanager webhooks (`POST /alertmanager`, payload version 4) to a DingTalk
    /// robot as markdown messages, signed when `DINGTALK_SECRET` is set, within the robot's rate
    /// limit. Needs `DINGTALK_ACCESS_TOKEN`; does not use Redis. Serves the webhook, `/metrics`,
    /// `/healthz` and `/readyz` on `[http].addr` (`MT5_HTTP_ADDR`).
    AlertRelay,
    /// Serve the HTTP gateway: `GET /v1/streams/{stream}/events?after=ID&count=N&block_ms=M`
    /// (long-poll reads) and `POST /v1/streams/{stream}/events` (publish), with bearer-token
    /// auth (`MT5_GATEWAY_TOKEN`, required) and the stream allow-lists of `[http.gateway]`,
    /// next to `/metrics`, `/healthz` and `/readyz` on `[http].addr`.
    Gateway,
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration (file and env overrides) without connecting to Redis.
    Check {
        /// Print the effective configuration as TOML (secrets and the URL password redacted)
        /// instead of "config OK".
        #[arg(long)]
        print: bool,
    },
}

/// `streams ...`
#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Length, first/last id, and per group pending, lag, oldest pending age and consumers.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A stream to show (repeatable). Default: the configured groups' streams, the filtered
        /// news stream and the dead letter stream, then every other stream in the database.
        #[arg(long = "stream", value_name = "STREAM")]
        streams: Vec<String>,
    },
    /// Follow a stream and print each entry as one JSON line until Ctrl-C or SIGTERM.
    Tail {
        /// The stream to follow.
        stream: String,
        /// Start after this entry id: `$` for new entries only, `0` for everything.
        #[arg(long, default_value = "$", value_name = "ID")]
        from: String,
        /// Exit after printing this many entries.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// `deadletter ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DeadletterCommand {
    /// List dead letters, oldest first.
    List {
        /// Only entries with this reason (`malformed`, `unsupported`, `max_deliveries`, `handler`).
        #[arg(long, value_name = "R")]
        reason: Option<String>,
        /// Only entries that came from this stream.
        #[arg(long, value_name = "S")]
        stream: Option<String>,
        /// At most this many entries.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with every field.
    Show {
        /// Its entry id in the dead letter stream.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back on their original stream (same event id), removing them from the
    /// dead letter stream.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "reason", "all"])))]
    Replay {
        /// Dead letter entry ids.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// Every dead letter with this reason.
        #[arg(long, value_name = "R")]
        reason: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// With `--reason` or `--all`: only entries that came from this stream.
        #[arg(long, value_name = "S", conflicts_with = "ids")]
        stream: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete dead letters for good. Needs `--yes` (or `--dry-run` to see what would go).
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
    Purge {
        /// Dead letter entry ids.
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

/// `groups ...`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// Create a consumer group at a position of a stream (creating the stream when it does not
    /// exist). A group that already exists is left as it is (exit 1).
    Create {
        /// The stream.
        #[arg(long, value_name = "S")]
        stream: String,
        /// The group.
        #[arg(long, value_name = "G")]
        group: String,
        /// Where the group starts: `0` (every entry of the stream), `$` (only entries added from
        /// now on) or an entry id `<ms>-<seq>` / `<ms>` (the entries after it: the last id the
        /// group processed, to resume where it stopped).
        #[arg(long, value_name = "0|$|ID")]
        at: String,
    },
}

/// `publish ...`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("mode").args(["data", "rate"])))]
pub(crate) struct PublishArgs {
    /// The stream to publish to.
    #[arg(long, value_name = "S")]
    pub(crate) stream: String,
    /// The event type (CloudEvents `type`), e.g. `news.raw.v1`. Required with `--data`; the
    /// default for stdin lines without `type`; default `load.v1` with `--rate`.
    #[arg(long = "type", value_name = "T")]
    pub(crate) event_type: Option<String>,
    /// The event data (JSON). Without it (and without `--rate`) JSON lines are read from stdin.
    #[arg(long, value_name = "JSON")]
    pub(crate) data: Option<String>,
    /// The event source (CloudEvents `source`). Default `mt5-hub/cli`, `mt5-hub/load` with `--rate`.
    #[arg(long, value_name = "SRC")]
    pub(crate) source: Option<String>,
    /// Idempotency key of a `--data` publish: a second publish with the same key writes nothing
    /// and prints the first entry id with "duplicate".
    #[arg(long, value_name = "K", requires = "data")]
    pub(crate) idempotency_key: Option<String>,
    /// Print one JSON object per event (`event_id`, `entry_id`, `duplicate`) instead of the
    /// entry id; with `--rate`, print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Events per pipeline round trip. Stdin: default 100 (lines waiting are also sent after
    /// 100 ms without input). Load: default rate / 100, at least 1, at most 500.
    #[arg(long, value_name = "B", conflicts_with = "data", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub(crate) batch: Option<u64>,
    /// The paced load mode.
    #[command(flatten)]
    pub(crate) load: LoadArgs,
}

/// The paced load mode of `publish`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Load mode: events per second (token bucket; bursts of at most one batch or 50 ms of events).
    #[arg(long, value_name = "R", requires = "count")]
    pub(crate) rate: Option<f64>,
    /// Load mode: events to publish.
    #[arg(long, value_name = "N", requires = "rate")]
    pub(crate) count: Option<u64>,
    /// Load mode: size of the padding string in each event's data, in bytes.
    #[arg(long, default_value_t = 256, value_name = "BYTES", requires = "rate")]
    pub(crate) payload_bytes: usize,
    /// Load mode: give event `i` the idempotency key `<P>-<i>` (and an event id derived from it),
    /// so a rerun with the same prefix writes nothing twice.
    #[arg(long, value_name = "P", requires = "rate")]
    pub(crate) idempotency_key_prefix: Option<String>,
    /// Load mode: append every acknowledged publish to this file as a JSON line
    /// (`event_id`, `entry_id`, `seq`, `published_at_ms`, `duplicate`).
    #[arg(long, value_name = "FILE", requires = "rate")]
    pub(crate) history: Option<PathBuf>,
    /// Load mode: the event data. `seq` (the default): `{"seq": i, "payload": ...}` of type
    /// `load.v1`. `news`: valid `news.raw.v1` articles dated now that pass the default filter
    /// (type `news.raw.v1` unless `--type` says otherwise), so each has an effect in the
    /// filtered stream. Both also carry `published_us`, the wall clock (µs since the Unix
    /// epoch) right before the event's batch was sent.
    #[arg(long, value_enum, default_value_t = LoadTemplate::Seq, requires = "rate")]
    pub(crate) template: LoadTemplate,
    /// The chaos suite's poison events (`--features chaos` builds only).
    #[command(flatten)]
    pub(crate) poison: PoisonArgs,
}

/// The poison events of the chaos suite in the paced load mode. Only a `--features chaos` build
/// has these flags: a poison only means something to a filter with the `filter-poison` fault
/// injection hook, which only such a build has.
#[cfg(feature = "chaos")]
#[derive(Debug, Args)]
pub(crate) struct PoisonArgs {
    /// Load mode with `--template news`: every K-th event (seq K-1, 2K-1, ...) is a poison:
    /// its title carries the `--poison-marker`, which the `filter-poison` fault injection hook
    /// of a filter turns into a process abort (docs/reliability.md, "Fault injection hooks").
    #[arg(long, value_name = "K", requires = "rate", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) poison_every: Option<u64>,
    /// Load mode: the marker in a poison's title. Default `CHAOS-POISON`.
    #[arg(long, value_name = "M", requires = "poison_every")]
    pub(crate) poison_marker: Option<String>,
}

/// Without the `chaos` feature there are no poison flags.
#[cfg(not(feature = "chaos"))]
#[derive(Debug, Args)]
pub(crate) struct PoisonArgs {}

/// The data of `publish --rate` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LoadTemplate {
    /// `{"seq": i, "payload": "xxx..."}`.
    Seq,
    /// A `news.raw.v1` article that passes the default filter.
    News,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap's own consistency checks (conflicting names, bad groups).
    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command and flag has help text.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.trim() != "mt5-hub" {
                missing.push(path.clone());
            }
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} --{id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &path, missing);
                }
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    /// Replay and purge need exactly one way of choosing entries.
    #[test]
    fn replay_and_purge_need_a_selection() {
        assert!(Cli::try_parse_from(["mt5-hub", "deadletter", "replay"]).is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "deadletter", "replay", "--all", "1-0"]).is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "deadletter", "replay", "--reason", "handler"]).is_ok());
        assert!(Cli::try_parse_from(["mt5-hub", "deadletter", "purge", "--yes"]).is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "deadletter", "purge", "--all", "--yes"]).is_ok());
    }

    /// `groups create` needs the stream, the group and an explicit position.
    #[test]
    fn groups_create_needs_stream_group_and_position() {
        let ok = [
            "mt5-hub", "groups", "create", "--stream", "s", "--group", "g", "--at", "$",
        ];
        assert!(Cli::try_parse_from(ok).is_ok());
        assert!(Cli::try_parse_from(&ok[..7]).is_err(), "--at has no default");
        assert!(Cli::try_parse_from(["mt5-hub", "groups", "create", "--group", "g", "--at", "0"]).is_err());
    }

    /// The load flags only go together with `--rate` and `--count`.
    #[test]
    fn load_flags_require_rate_and_count() {
        assert!(Cli::try_parse_from(["mt5-hub", "publish", "--stream", "s", "--rate", "10"]).is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "publish", "--stream", "s", "--count", "10"]).is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "publish", "--stream", "s", "--history", "h"]).is_err());
        assert!(Cli::try_parse_from([
            "mt5-hub", "publish", "--stream", "s", "--rate", "1", "--count", "1", "--data", "1"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["mt5-hub", "publish", "--stream", "s", "--rate", "5", "--count", "10"]).is_ok());
    }

    const POISON_LOAD: [&str; 11] = [
        "mt5-hub",
        "publish",
        "--stream",
        "s",
        "--rate",
        "5",
        "--count",
        "10",
        "--template",
        "news",
        "--poison-every",
    ];

    /// A build without the `chaos` feature has no poison flags and does not say `chaos` in its
    /// version.
    #[cfg(not(feature = "chaos"))]
    #[test]
    fn a_build_without_chaos_has_no_poison_flags() {
        let mut poison = POISON_LOAD.to_vec();
        poison.push("3");
        let err = Cli::try_parse_from(&poison).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument, "{err}");
        assert!(!Cli::command().render_version().contains("chaos"));
        let mut publish = Cli::command();
        let help = publish
            .find_subcommand_mut("publish")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("--poison"), "{help}");
    }

    /// A `chaos` build has the poison flags and says so in its version.
    #[cfg(feature = "chaos")]
    #[test]
    fn a_chaos_build_has_the_poison_flags_and_says_so() {
        let mut poison = POISON_LOAD.to_vec();
        poison.extend(["3", "--poison-marker", "BAD"]);
        let cli = Cli::try_parse_from(&poison).unwrap();
        let Command::Publish(args) = cli.command else {
            panic!("not publish: {cli:?}");
        };
        assert_eq!(args.load.poison.poison_every, Some(3));
        assert_eq!(args.load.poison.poison_marker.as_deref(), Some("BAD"));
        assert!(Cli::command().render_version().ends_with("(features: chaos)\n"));
    }
}
