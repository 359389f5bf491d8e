//! The pieces the session scenarios (fanout, tenants) share: sizing the session workers,
//! ramping sessions up in batches, waiting for the server to count them and for its memory
//! to settle, and one measured stretch of changes.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use nextup_bench::api::{self, Api};
use nextup_bench::histogram::Histogram;
use nextup_bench::stats::Summary;
use nextup_bench::{net, sys};

use crate::changes::{self, Desk, Made};
use crate::delivery::GroupDelivery;
use crate::fleet::{Fleet, Opened};
use crate::protocol::TargetSpec;
use crate::setup::{Deployment, ServerRef};

/// Options of the scenarios with sessions.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Sessions")]
pub struct SessionOpts {
    /// Sessions opened at once while ramping up.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Loopback source addresses (127.0.0.1, .2, …) to spread client sockets over; 0: as
    /// many as the largest session count needs.
    #[arg(long, default_value_t = 0)]
    pub source_addrs: usize,
    /// Session worker processes; 0: as many as the open-files limit needs.
    #[arg(long, default_value_t = 0)]
    pub session_procs: usize,
    /// Longest wait, after the last change of a stretch, for every session to have it (s).
    #[arg(long, default_value_t = 15.0)]
    pub drain_secs: f64,
    /// Longest wait for the server's memory to settle before reading it (s).
    #[arg(long, default_value_t = 10.0)]
    pub settle_secs: f64,
    /// Longest wait for a new session's snapshot (s).
    #[arg(long, default_value_t = 30.0)]
    pub ready_secs: f64,
}

/// File descriptors a process keeps for itself besides its sessions.
const FD_RESERVE: u64 = 200;

/// The session workers for up to `max_sessions`, and the notes to print about limits.
pub async fn start_fleet(
    opts: &SessionOpts,
    max_sessions: usize,
    servers: &[ServerRef],
    limit: &sys::FileLimit,
) -> anyhow::Result<(Fleet, Vec<String>)> {
    let mut notes = Vec::new();
    let capacity = limit.soft.saturating_sub(FD_RESERVE).max(1);
    let needed = (max_sessions as u64).div_ceil(capacity).max(1) as usize;
    let procs = if opts.session_procs > 0 {
        opts.session_procs
    } else {
        needed
    };
    if procs < needed {
        notes.push(format!(
            "{max_sessions} sessions need {needed} session workers at {capacity} sessions each \
             (open-files limit {}); {procs} given",
            limit.soft
        ));
    }
    if needed > 1 {
        notes.push(format!(
            "open-files limit is {} per process (hard {}): sessions run in {procs} worker \
             processes",
            limit.soft, limit.hard
        ));
    }
    let spread = servers.iter().all(|s| net::can_spread(&s.addr));
    let sources = if !spread {
        notes.push("the server is not on loopback: the kernel picks source addresses".into());
        None
    } else if opts.source_addrs > 0 {
        Some(opts.source_addrs.min(net::MAX_SOURCES))
    } else {
        Some(net::sources_needed(max_sessions, sys::ephemeral_ports()))
    };
    for server in servers {
        let Some(pid) = server.pid else { continue };
        let share = max_sessions.div_ceil(servers.len()) as u64;
        if let Some(limit) = sys::file_limit_of(pid)
            && limit < share + FD_RESERVE
        {
            notes.push(format!(
                "server pid {pid} has an open-files limit of {limit}: it cannot hold {share} \
                 sessions (expect refused or failed handshakes)"
            ));
        }
    }
    let fleet = Fleet::start(procs, capacity, sources).await?;
    Ok((fleet, notes))
}

/// Opens `plan` (target, count) in batches of `batch` sessions.
pub async fn ramp(
    fleet: &mut Fleet,
    targets: &[TargetSpec],
    plan: &[(u32, u64)],
    opts: &SessionOpts,
) -> anyhow::Result<(Opened, Duration)> {
    let started = Instant::now();
    let mut total = Opened::default();
    let mut queue: Vec<(u32, u64)> = plan.iter().rev().copied().collect();
    let want: u64 = plan.iter().map(|(_, n)| n).sum();
    while !queue.is_empty() {
        let mut batch = Vec::new();
        let mut room = opts.batch.max(1) as u64;
        while room > 0 {
            let Some((target, count)) = queue.pop() else {
                break;
            };
            let take = count.min(room);
            batch.push((target, take));
            room -= take;
            if take < count {
                queue.push((target, count - take));
            }
        }
        let timeout_ms = (opts.ready_secs * 1e3) as u64;
        let opened = fleet.open(targets, &batch, timeout_ms).await?;
        total.add(opened);
        if std::io::stderr().is_terminal() {
            eprint!(
                "\rloadgen: {} of {want} sessions open ({} failed)   ",
                total.opened,
                total.failed()
            );
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    eprintln!(
        "loadgen: {} of {want} sessions open ({} failed) in {:.1} s",
        total.opened,
        total.failed(),
        started.elapsed().as_secs_f64()
    );
    Ok((total, started.elapsed()))
}

/// The servers' `nextup_ws_sessions` (matching `labels`), read until each reaches its
/// expected count or `limit` passes.
pub async fn wait_registered(
    deployment: &Deployment,
    expected: &[u64],
    labels: &[(&str, &str)],
    limit: Duration,
) -> Vec<Option<u64>> {
    let deadline = Instant::now() + limit;
    let mut seen = vec![None; deployment.servers.len()];
    loop {
        for (i, server) in deployment.servers.iter().enumerate() {
            let api = Api::with_client(deployment.http.clone(), &server.http_base, "-");
            if let Ok(text) = api.get_text("/metrics").await {
                seen[i] = api::metric_sum(&text, "nextup_ws_sessions", labels).map(|v| v as u64);
            }
        }
        let done = seen
            .iter()
            .zip(expected)
            .all(|(s, e)| s.is_some_and(|s| s >= *e));
        if done || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The server's RSS once it stops moving (two readings 1 s apart within 0.5 %), or the last
/// reading after `limit`.
pub async fn settled_rss(server: &ServerRef, limit: Duration) -> Option<u64> {
    let deadline = Instant::now() + limit;
    let mut readings: Vec<u64> = Vec::new();
    loop {
        readings.push(server.rss_kib()?);
        if readings.len() >= 5 {
            let (now, before) = (readings[readings.len() - 1], readings[readings.len() - 5]);
            if now.abs_diff(before) as f64 <= before as f64 * 0.005 {
                return Some(now);
            }
        }
        if Instant::now() > deadline {
            return readings.last().copied();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// CPU seconds used so far by the servers (`None` without pids), by this tool (this
/// process and its session workers) and by local `postgres` processes (`None` if none).
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub server: Option<f64>,
    pub tool: f64,
    pub postgres: Option<f64>,
}

impl Cpu {
    pub fn now(servers: &[ServerRef], workers: &[u32]) -> Cpu {
        let (server, tool) = cpu_now(servers, workers);
        let postgres = sys::cpu_time_of_command("postgres").map(|d| d.as_secs_f64());
        Cpu {
            server,
            tool,
            postgres,
        }
    }

    /// The CPU used since `earlier`.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            server: self.server.zip(earlier.server).map(|(b, a)| b - a),
            tool: self.tool - earlier.tool,
            postgres: self.postgres.zip(earlier.postgres).map(|(b, a)| b - a),
        }
    }

    /// `server 45 %, postgres 80 %, loadgen 8 %` of one core over `secs`.
    pub fn percent(&self, secs: f64) -> String {
        let pct =
            |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{:.0} %", c / secs * 100.0));
        format!(
            "server {}, postgres {}, loadgen {} (100 % = one core)",
            pct(self.server),
            pct(self.postgres),
            pct(Some(self.tool))
        )
    }

    /// `45 / 80 / 8 %`: the same, for a table cell.
    pub fn short_percent(&self, secs: f64) -> String {
        let pct = |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{:.0}", c / secs * 100.0));
        format!(
            "{} / {} / {} %",
            pct(self.server),
            pct(self.postgres),
            pct(Some(self.tool))
        )
    }

    pub fn json(&self) -> Value {
        let round = |v: f64| (v * 100.0).round() / 100.0;
        json!({
            "server_secs": self.server.map(round),
            "postgres_secs": self.postgres.map(round),
            "loadgen_secs": round(self.tool),
        })
    }
}

fn cpu_now(servers: &[ServerRef], workers: &[u32]) -> (Option<f64>, f64) {
    let server = servers
        .iter()
        .map(ServerRef::cpu_secs)
        .try_fold(0.0, |sum, s| s.map(|s| sum + s));
    let tool = std::iter::once(std::process::id())
        .chain(workers.iter().copied())
        .filter_map(sys::cpu_time)
        .map(|d| d.as_secs_f64())
        .sum();
    (server, tool)
}

/// One measured stretch of changes.
pub struct Stretch {
    pub made: Vec<Made>,
    pub secs: f64,
    pub rest: Option<Summary>,
    pub rest_errors: BTreeMap<String, u64>,
    /// Per group (server), and all together.
    pub groups: BTreeMap<u32, GroupDelivery>,
    pub all: GroupDelivery,
    /// Successful changes the event log did not show.
    pub unassigned: u64,
    /// Live sessions still behind when the drain wait ended.
    pub behind: u64,
    /// From the end of the last request until every session had its change.
    pub drain: Duration,
    pub cpu: Cpu,
}

pub struct StretchPlan<'a> {
    pub desks: &'a Arc<Vec<Mutex<Desk>>>,
    /// Reads the event log, per tenant.
    pub apis: &'a [Api],
    pub count: usize,
    pub interval: Duration,
    pub drain: Duration,
}

/// Makes `count` changes, lets the sessions catch up, and judges what they received.
/// Without a fleet only REST is measured.
pub async fn stretch(
    deployment: &Deployment,
    mut fleet: Option<&mut Fleet>,
    plan: StretchPlan<'_>,
    pick: impl FnMut() -> usize,
) -> anyhow::Result<Stretch> {
    let mut base = Vec::with_capacity(plan.apis.len());
    for api in plan.apis {
        base.push(
            api.queue()
                .await
                .context("GET queue before the changes")?
                .seq,
        );
    }
    let worker_pids = fleet.as_ref().map(|f| f.pids()).unwrap_or_default();
    if let Some(fleet) = fleet.as_deref_mut() {
        fleet.window().await?;
    }
    let cpu0 = Cpu::now(&deployment.servers, &worker_pids);
    let started = Instant::now();
    let made = changes::drive(plan.desks, plan.count, plan.interval, pick).await;
    let secs = started.elapsed().as_secs_f64();
    let ended = Instant::now();
    let (latencies, rest_errors) = changes::rest_figures(&made);
    let assigned = changes::assign_all(&made, plan.apis, &base).await?;
    let mut behind = 0;
    let mut drain = Duration::ZERO;
    let mut groups = BTreeMap::new();
    if let Some(fleet) = fleet {
        let targets: Vec<(u32, u64)> = assigned.last_seq.iter().map(|(t, s)| (*t, *s)).collect();
        let deadline = ended + plan.drain;
        loop {
            behind = fleet.behind(&targets).await?;
            if behind == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drain = ended.elapsed();
        groups = fleet.collect(made.len() as u32, assigned.tenants).await?;
    }
    let cpu = Cpu::now(&deployment.servers, &worker_pids).since(&cpu0);
    let mut all = GroupDelivery::default();
    for g in groups.values() {
        all.merge(g);
    }
    Ok(Stretch {
        secs,
        rest: Summary::of_millis(&latencies),
        rest_errors,
        groups,
        all,
        unassigned: assigned.unassigned,
        behind,
        drain,
        cpu,
        made,
    })
}

/// Latency (send → frame) and "last session had it" summaries of a group, in ms.
pub fn delivery_summaries(g: &GroupDelivery) -> (Option<Summary>, Option<Summary>) {
    let latency = Histogram::from_sparse(&g.latency).summary_ms();
    let mut lasts: Vec<f64> = g.lasts().map(|us| us as f64 / 1e3).collect();
    (latency, Summary::of(&mut lasts))
}

pub fn delivery_json(g: &GroupDelivery) -> Value {
    let (latency, last) = delivery_summaries(g);
    json!({
        "sessions": g.sessions,
        "pairs": g.pairs,
        "received": Histogram::from_sparse(&g.latency).count(),
        "missing": g.missing,
        "duplicated": g.duplicated,
        "out_of_order": g.out_of_order,
        "unmatched": g.unmatched,
        "latency_ms": latency,
        "last_session_ms": last,
    })
}

impl Stretch {
    pub fn ok(&self) -> usize {
        self.made.iter().filter(|m| m.outcome.is_ok()).count()
    }

    /// No failed request, nothing missing, duplicated or out of order, and every change
    /// found in the log.
    pub fn clean(&self) -> bool {
        self.rest_errors.is_empty()
            && self.all.missing == 0
            && self.all.duplicated == 0
            && self.all.out_of_order == 0
            && self.unassigned == 0
    }

    pub fn json(&self) -> Value {
        let per_server: Vec<Value> = self
            .groups
            .iter()
            .map(|(g, d)| {
                let mut v = delivery_json(d);
                v["server"] = json!(g);
                v
            })
            .collect();
        json!({
            "changes": self.made.len(),
            "changes_ok": self.ok(),
            "secs": self.secs,
            "rest_ms": self.rest,
            "rest_errors": self.rest_errors,
            "unassigned_changes": self.unassigned,
            "delivery": delivery_json(&self.all),
            "per_server": per_server,
            "behind_after_drain": self.behind,
            "drain_ms": self.drain.as_secs_f64() * 1e3,
            "cpu": self.cpu.json(),
        })
    }
}
