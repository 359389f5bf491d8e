//! loadgen: nextup's benchmark. It measures a running nextup from outside, over HTTP and
//! WebSocket only: fan-out latency to thousands of sessions and what they cost in memory,
//! write throughput, many tenants at once, and conditional polling. See bench/README.md.
//!
//! The main process sets up, makes the changes and reports. Sessions live in child
//! processes (this binary's hidden `session-worker` command), as many as the open-files
//! limit requires, each with a multi-threaded runtime.

mod changes;
mod delivery;
mod fanout;
mod fleet;
mod floor;
mod history;
mod measure;
mod poll;
mod protocol;
mod report;
mod setup;
mod tenants;
mod throughput;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use nextup_bench::sys;

/// nextup's benchmark: fan-out latency, write throughput, many tenants, conditional polls.
///
/// By default it starts the server itself (`--nextup`, a fresh database, limits lifted);
/// with `--base` it measures a server you started (see bench/README.md).
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// One tenant, N totem sessions: latency from each change's request to every session,
    /// and memory per session, for each N.
    Fanout(fanout::Args),
    /// K concurrent operators issuing tickets, or calling, starting and finishing them.
    Throughput(throughput::Args),
    /// Many tenants with a few sessions each, changes spread over all of them.
    Tenants(tenants::Args),
    /// K clients polling `GET …/queue` with the current `If-None-Match`.
    Poll(poll::Args),
    /// A long history of a busy site written into the database, then `GET …/stats` timed
    /// over a day, a month and all of it.
    Stats(history::Args),
    /// No server: a bare writer sends a message to N loopback connections, the floor
    /// under `fanout` on this machine.
    Floor(floor::Args),
    /// (internal) Holds sessions for the main process.
    #[command(hide = true)]
    SessionWorker,
    /// (internal) The bare writer of `floor`.
    #[command(hide = true)]
    FloorWriter {
        #[arg(long)]
        bytes: usize,
        #[arg(long)]
        threads: usize,
    },
}

/// Options of every scenario.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Server, tenants and output (every scenario)")]
pub struct Common {
    /// Spawn mode: the nextup binary to start (and whose CLI makes tenants).
    #[arg(long, global = true, default_value = "target/release/nextup")]
    pub nextup: PathBuf,
    /// Spawn mode: the PostgreSQL server on which the database `nextup_load_<random>` is made.
    #[arg(
        long,
        global = true,
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub postgres: String,
    /// Spawn mode: server processes on the one database (sessions are split between them;
    /// changes go to the first).
    #[arg(long, global = true, default_value_t = 1)]
    pub servers: usize,
    /// Spawn mode: keep the database afterwards.
    #[arg(long, global = true)]
    pub keep: bool,
    /// Spawn mode: where the server's output goes (default: a file in the temp directory;
    /// with several servers, `.1`, `.2`… are appended).
    #[arg(long, global = true)]
    pub server_log: Option<PathBuf>,
    /// Spawn mode: RUST_LOG of the server (`info` logs every request, which costs CPU).
    #[arg(long, global = true, default_value = "warn")]
    pub server_rust_log: String,
    /// Spawn mode: more environment for the server, KEY=VALUE (repeatable).
    #[arg(long = "server-env", global = true, value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// Attach mode: the base URL of a running server, http://HOST:PORT (repeat for several
    /// processes on one database).
    #[arg(long, global = true)]
    pub base: Vec<String>,
    /// Attach mode: the process id of each --base, in order (for memory and CPU figures).
    #[arg(long, global = true)]
    pub pid: Vec<u32>,
    /// Attach mode: the tenant's slug (scenarios with many tenants use SLUG-0001, SLUG-0002, …).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Attach mode: the username of an admin of the tenant(s).
    #[arg(long, global = true)]
    pub admin: Option<String>,
    /// Attach mode: that admin's password.
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// Attach mode: the server's DATABASE_URL; when given, missing tenants and admins are
    /// made with the CLI of --nextup.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// Parallel jobs while making tenants (CLI) and readying them (API).
    #[arg(long, global = true, default_value_t = 4)]
    pub setup_jobs: usize,
    /// Write the JSON summary here too (it is always printed as the last line).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// A label for the report, e.g. the nextup commit.
    #[arg(long, global = true)]
    pub label: Option<String>,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{raw}'"))
}

/// What a scenario hands back: its readable report, its JSON, and whether its checks held.
pub struct Outcome {
    pub text: String,
    pub json: Value,
    pub passed: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let child = match cli.scenario {
        Scenario::SessionWorker => Some(("session worker", worker::main())),
        Scenario::FloorWriter { bytes, threads } => {
            Some(("floor writer", floor::writer_main(bytes, threads)))
        }
        _ => None,
    };
    if let Some((what, result)) = child {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen {what}: error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let common = &cli.common;
    if let Scenario::Floor(args) = &cli.scenario {
        return run_floor(common, args).await;
    }
    let (name, tenants, sessions) = match &cli.scenario {
        Scenario::Fanout(a) => ("fanout", 1, a.sessions.iter().copied().max().unwrap_or(0)),
        Scenario::Throughput(a) => ("throughput", a.most_tenants(), 0),
        Scenario::Tenants(a) => (
            "tenants",
            a.tenants.max(1),
            a.tenants * a.sessions_per_tenant,
        ),
        Scenario::Poll(_) => ("poll", 1, 0),
        Scenario::Stats(_) => ("stats", 1, 0),
        Scenario::Floor(_) | Scenario::SessionWorker | Scenario::FloorWriter { .. } => {
            unreachable!("handled before")
        }
    };
    // Children (session workers, spawned servers) inherit the raised limit.
    let limit = sys::raise_file_limit(sessions as u64 + 1024)
        .context("cannot read or raise the open-files limit")?;
    if limit.hard < sessions as u64 + 1024 {
        eprintln!(
            "loadgen: note: the open-files hard limit is {} per process ({} sessions wanted); \
             sessions are spread over worker processes, and each server process needs its \
             share of descriptors too",
            limit.hard, sessions
        );
    }
    if !common.base.is_empty() && common.servers != 1 {
        eprintln!("loadgen: note: --servers applies to spawn mode; attach mode uses every --base");
    }
    let deployment = setup::Deployment::prepare(common, tenants).await?;
    let (head_text, head_json) = report::head(name, common, &deployment, &limit);
    let outcome = tokio::select! {
        outcome = async {
            match &cli.scenario {
                Scenario::Fanout(a) => fanout::run(common, a, &deployment, &limit).await,
                Scenario::Throughput(a) => throughput::run(common, a, &deployment).await,
                Scenario::Tenants(a) => tenants::run(common, a, &deployment, &limit).await,
                Scenario::Poll(a) => poll::run(common, a, &deployment).await,
                Scenario::Stats(a) => history::run(common, a, &deployment).await,
                Scenario::Floor(_) | Scenario::SessionWorker | Scenario::FloorWriter { .. } => {
                    unreachable!("handled before")
                }
            }
        } => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let log_counts = deployment.log_counts();
    let logs = deployment.logs().to_vec();
    let exits = deployment.shutdown().await;
    let outcome = outcome?;

    let mut text = head_text;
    text.push_str(&outcome.text);
    for (i, ((errors, warnings), path)) in log_counts.iter().zip(&logs).enumerate() {
        text.push_str(&format!(
            "server {}: {errors} ERROR and {warnings} WARN lines in {}; exit {}\n",
            i + 1,
            path.display(),
            exits
                .get(i)
                .copied()
                .flatten()
                .map_or("unknown".to_owned(), |c| c.to_string())
        ));
    }
    let clean_exit = exits.iter().all(|e| *e == Some(0));
    let passed = outcome.passed && clean_exit;
    let mut json = head_json;
    json["server_log"] = json!(
        log_counts
            .iter()
            .zip(&logs)
            .map(|((e, w), p)| json!({"errors": e, "warnings": w, "path": p}))
            .collect::<Vec<_>>()
    );
    json["server_exits"] = json!(exits);
    report_outcome(common, text, json, outcome.json, passed)
}

/// The floor needs no server, no database and no tenant.
async fn run_floor(common: &Common, args: &floor::Args) -> anyhow::Result<bool> {
    let connections = args.sessions.iter().copied().max().unwrap_or(0) as u64;
    let limit = sys::raise_file_limit(connections + 1024)
        .context("cannot read or raise the open-files limit")?;
    let (text, json) = report::machine_head("floor", common, &limit);
    let outcome = floor::run(args).await?;
    let mut text = text;
    text.push_str(&outcome.text);
    report_outcome(common, text, json, outcome.json, outcome.passed)
}

/// Prints the readable report and the JSON summary (and writes it to `--json`).
fn report_outcome(
    common: &Common,
    mut text: String,
    mut json: Value,
    results: Value,
    passed: bool,
) -> anyhow::Result<bool> {
    text.push_str(&format!(
        "result: {}\n",
        if passed { "PASSED" } else { "FAILED" }
    ));
    print!("{text}");
    if let (Value::Object(target), Value::Object(results)) = (&mut json, results) {
        target.extend(results);
    }
    json["passed"] = json!(passed);
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{json}");
    Ok(passed)
}
