//! `mt5-loadtest`: load a running gateway, run the pipeline's e2e harness on a Redis, or compare
//! a backlog's drain with the Python reference.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mt5_chaos::harness::hub_bin;
use mt5_loadtest::report;
use mt5_loadtest::{drain, e2e, gateway, LoadError};

/// Load tests of mt5-hub. Each run prints its figures and writes a row into
/// `target/loadtest/report.md`; it exits 1 when an event was lost or duplicated (or, for
/// `gateway`, a request failed or nothing was published; for `drain`, a run did not check out),
/// 2 when the run could not be made.
/// mimalloc: the goose run's generator shares two cores with the gateway and Redis, and glibc's
/// malloc/free were ~8 % of the machine in its profile (docs/loadtest.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A goose load test against a running `mt5-hub gateway`: publishers POST events,
    /// terminals long-poll them from the start of the stream; checks every terminal got every
    /// acknowledged event once, in order, and reports requests/s, response times and the
    /// delivery latency. The stream must be on both of the gateway's allow-lists.
    Gateway {
        /// The gateway's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9468")]
        url: String,
        /// The bearer token.
        #[arg(long, env = "MT5_GATEWAY_TOKEN", hide_env_values = true)]
        token: String,
        /// The stream to publish to and read.
        #[arg(long)]
        stream: String,
        /// Goose users in all.
        #[arg(long, default_value_t = 16)]
        users: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 20)]
        run_time: u64,
        /// Weight of publishing users.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Weight of reading users (terminals).
        #[arg(long, default_value_t = 1)]
        terminals: usize,
        /// A publisher's pause between posts, ms (0: as fast as answered).
        #[arg(long, default_value_t = 0)]
        publish_wait_ms: u64,
    },
    /// The news pipeline end to end on the Redis at `--redis-url`: `mt5-hub publish --rate`
    /// and `--filters` filter processes under fresh stream names, then loss, duplicates and
    /// e2e latency of every event (from the publisher's µs stamp to the output's arrival at a
    /// tail reader, and from entry id to entry id). With `--steps`, one run per rate step until
    /// one falls short, and the highest sustained rate. Needs `mt5-hub` built (`MT5_HUB_BIN`,
    /// else next to this binary).
    E2e {
        /// The Redis to use (streams under a fresh prefix).
        #[arg(long, env = "MT5_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Events per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Events in all.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Filter processes.
        #[arg(long, default_value_t = 2)]
        filters: usize,
        /// Events per publish batch.
        #[arg(long)]
        batch: Option<u64>,
        /// Rate steps `START,STEP,MAX` (events/s) instead of `--rate`/`--count`: each held
        /// `--hold` seconds on fresh streams, stopping at the first step whose e2e p95 is 50 ms
        /// or more, that lost an event, or whose publisher achieved under 95 % of the rate.
        #[arg(long, value_name = "START,STEP,MAX", conflicts_with_all = ["rate", "count"])]
        steps: Option<e2e::Steps>,
        /// Seconds at each rate step.
        #[arg(long, default_value_t = 60, requires = "steps")]
        hold: u64,
    },
    /// Drain one preloaded backlog with the original Python design (`filter_consumer.py` of
    /// `--python-ref`) and with `mt5-hub filter`, same rules, same articles, same private
    /// `redis-server` (`MT5_REDIS_SERVER`, else `redis-server` on PATH), timed until the group
    /// has lag 0 and nothing pending; rounds interleave the sides. Needs `ci/pyref-venv` (or
    /// `--python`) and `mt5-hub` built (`MT5_HUB_BIN`, else next to this binary).
    Drain {
        /// Events in the backlog.
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        /// Rounds; each drains once per side (python, rust, python, rust, ...).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Consumer processes per side.
        #[arg(long, default_value_t = 2)]
        consumers: usize,
        /// Sentiment score: `eodhd` (the article's own polarity; the reference's --no-vader) or
        /// `vader` (computed by each side).
        #[arg(long, value_enum, default_value_t = drain::Sentiment::Eodhd)]
        sentiment: drain::Sentiment,
        /// Round r uses the reference generator's seed SEED + r.
        #[arg(long, default_value_t = 1000)]
        seed: u64,
        /// The Python interpreter [default: target/pyref-venv/bin/python when it exists, else
        /// python3].
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// The Python reference's folder [default: ../shared/anchors/python_ref from the
        /// repository root].
        #[arg(long, value_name = "DIR")]
        python_ref: Option<PathBuf>,
        /// Print the comparison as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MT5_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // Returning from here (an interrupt included) drops every child process's handle, which
    // kills it: nothing the run started outlives it.
    let outcome = tokio::select! {
        r = run(Cli::parse()) => r,
        () = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mt5-loadtest: {e:#}");
            let failed_check = e.chain().any(|c| matches!(c.downcast_ref(), Some(LoadError::Check(_))));
            ExitCode::from(if failed_check { 1 } else { 2 })
        }
    }
}

/// SIGINT or SIGTERM.
async fn interrupted() {
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

/// Runs the command; `Ok(false)` when events were lost or duplicated.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Gateway {
            url,
            token,
            stream,
            users,
            run_time,
            publishers,
            terminals,
            publish_wait_ms,
        } => {
            let load = gateway::Load {
                users,
                run_time_s: run_time,
                increase_rate: users as f64,
                publishers,
                terminals,
                publish_wait_ms,
            };
            run_gateway(gateway::Target { url, token, stream }, &load).await
        }
        Command::E2e {
            redis_url,
            rate: _,
            count: _,
            filters,
            batch,
            steps: Some(steps),
            hold,
        } => run_e2e_steps(&redis_url, &steps.with_hold(hold), filters, batch).await,
        Command::E2e {
            redis_url,
            rate,
            count,
            filters,
            batch,
            steps: None,
            hold: _,
        } => {
            let load = e2e::Load {
                rate,
                count,
                filters,
                batch,
            };
            run_e2e(&redis_url, &load).await
        }
        Command::Drain {
            events,
            rounds,
            consumers,
            sentiment,
            seed,
            python,
            python_ref,
            json,
        } => {
            let opts = drain_options(events, rounds, consumers, sentiment, seed, python, python_ref);
            run_drain(&opts, json).await
        }
    }
}

/// The drain comparison's options from `drain`'s arguments: the defaults of
/// [`drain::Options::new`] with `mt5-hub` from [`hub_bin`] (its expected path when missing,
/// so the comparison says where it looked), the interpreter and the reference's folder only
/// when given.
fn drain_options(
    events: u64,
    rounds: u32,
    consumers: usize,
    sentiment: drain::Sentiment,
    seed: u64,
    python: Option<PathBuf>,
    python_ref: Option<PathBuf>,
) -> drain::Options {
    let mut opts = drain::Options::new(hub_bin().unwrap_or_else(|e| match e {
        mt5_chaos::harness::HarnessError::HubBinaryMissing { path } => path,
        _ => PathBuf::from("mt5-hub"),
    }));
    opts.events = events;
    opts.rounds = rounds;
    opts.consumers = consumers;
    opts.sentiment = sentiment;
    opts.seed = seed;
    if let Some(p) = python {
        opts.python = p;
    }
    if let Some(d) = python_ref {
        opts.python_ref = d;
    }
    opts
}

/// `gateway`: loads the gateway at `target`, prints the result line and records its report
/// row; says on stderr what to check when requests failed or nothing was acknowledged. `true`
/// when every request succeeded, something was published, and every terminal got every event
/// once, in order.
async fn run_gateway(target: gateway::Target, load: &gateway::Load) -> anyhow::Result<bool> {
    let users = load.users;
    let r = gateway::run(target, load).await?;
    println!("{}", r.line());
    report::record(&report::gateway_row(
        &format!("gateway {users} users (mt5-loadtest)"),
        &r,
    ))?;
    let errors = r.posts.failed + r.polls.failed;
    if r.published == 0 || errors > 0 {
        eprintln!(
            "mt5-loadtest: {errors} requests failed, {} publishes acknowledged: is the stream on both of the gateway's allow-lists, and the token right?",
            r.published
        );
    }
    Ok(r.published > 0 && errors == 0 && r.lost == 0 && r.duplicates == 0 && r.out_of_order == 0)
}

/// `e2e --steps`: runs the rate steps on `redis_url`, printing and recording each step as it
/// ends (recording stops at the first failure, which is returned after the steps), then the
/// summary line. `false` when a step that could be made lost or duplicated an event.
async fn run_e2e_steps(
    redis_url: &str,
    steps: &e2e::Steps,
    filters: usize,
    batch: Option<u64>,
) -> anyhow::Result<bool> {
    let prefix = format!("loadtest-{}", std::process::id());
    let mut recorded: anyhow::Result<()> = Ok(());
    let r = e2e::run_steps("loadtest-e2e", redis_url, &prefix, steps, filters, batch, |step| {
        println!("{}", step.line());
        if let (Ok(r), true) = (&step.outcome, recorded.is_ok()) {
            let run = format!("e2e step {:.0}/s (mt5-loadtest --steps)", step.rate);
            recorded = report::record(&report::e2e_row(&run, &step.load, r))
                .map(drop)
                .map_err(Into::into);
        }
    })
    .await
    .context("the e2e steps")?;
    recorded?;
    println!("{}", r.line());
    // A step that could not be made (its backlog did not drain in time) marks the limit;
    // a loss or a duplicate is a failure wherever it happens.
    Ok(r.steps
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok())
        .all(|r| r.lost == 0 && r.duplicates == 0))
}

/// `e2e` at one rate: runs `load` on `redis_url`, prints the result line and records its report
/// row. `false` when an event was lost or duplicated.
async fn run_e2e(redis_url: &str, load: &e2e::Load) -> anyhow::Result<bool> {
    let prefix = format!("loadtest-{}", std::process::id());
    let r = e2e::run("loadtest-e2e", redis_url, &prefix, load)
        .await
        .context("the e2e run")?;
    println!("{}", r.line());
    report::record(&report::e2e_row(
        &format!("e2e {}/s (mt5-loadtest)", load.rate),
        load,
        &r,
    ))?;
    Ok(r.lost == 0 && r.duplicates == 0)
}

/// `drain`: runs the comparison of `opts` and prints it (as JSON with `json`, the report line
/// then going to stderr), putting its report row. Always `true`: a run that does not check
/// out is an error.
async fn run_drain(opts: &drain::Options, json: bool) -> anyhow::Result<bool> {
    let r = drain::run(opts).await.context("the drain comparison")?;
    let row = report::drain_row(
        &format!(
            "drain {} {} events ×{} (mt5-loadtest)",
            opts.sentiment.as_str(),
            opts.events,
            opts.rounds
        ),
        &r,
    );
    if json {
        // stdout stays one JSON document; the report line goes to stderr.
        println!("{:#}", r.to_json());
        eprintln!("{}", row.line());
        report::put(&row)?;
    } else {
        print!("{}", r.text());
        report::record(&row)?;
    }
    Ok(true)
}
