//! tenants: many tenants with a few totem sessions each, and changes spread over all of
//! them at random. Sessions connect in two steps (one per tenant, then the rest), so that
//! the memory of a tenant's hub and that of a session can be told apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::rngs::SmallRng;
use rand::{RngExt, make_rng};
use serde_json::json;
use tokio::sync::Mutex;

use nextup_bench::api::Api;
use nextup_bench::sys::FileLimit;

use crate::changes::Desk;
use crate::measure::{self, SessionOpts, StretchPlan};
use crate::protocol::TargetSpec;
use crate::report::{self, Table, mib};
use crate::setup::{self, Deployment, Needs};
use crate::{Common, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tenants to create.
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Totem sessions per tenant.
    #[arg(long, default_value_t = 10)]
    pub sessions_per_tenant: usize,
    /// Changes, each to a tenant picked at random.
    #[arg(long, default_value_t = 2000)]
    pub changes: usize,
    /// Pause between two changes, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub interval_ms: u64,
    #[command(flatten)]
    pub opts: SessionOpts,
}

pub async fn run(
    common: &Common,
    args: &Args,
    deployment: &Deployment,
    limit: &FileLimit,
) -> anyhow::Result<Outcome> {
    if args.tenants == 0 || args.sessions_per_tenant == 0 {
        bail!("--tenants and --sessions-per-tenant must be positive");
    }
    let started = Instant::now();
    let tenants = setup::ready_tenants(
        deployment,
        Needs {
            services: 1,
            counters: 1,
            operator: false,
        },
        common.setup_jobs * 4,
    )
    .await?;
    let api_setup = started.elapsed();
    eprintln!(
        "loadgen: {} tenants ready through the API in {:.1} s",
        tenants.len(),
        api_setup.as_secs_f64()
    );
    let servers = &deployment.servers;
    let settle = Duration::from_secs_f64(args.opts.settle_secs);
    let mut rss_idle = Vec::new();
    for server in servers {
        rss_idle.push(measure::settled_rss(server, settle).await);
    }
    // Target t * servers + s: tenant t on server s.
    let mut targets = Vec::new();
    for (t, tenant) in tenants.iter().enumerate() {
        for (s, server) in servers.iter().enumerate() {
            targets.push(TargetSpec {
                url: server.totem_url(&tenant.slug),
                addr: server.addr,
                tenant: t as u32,
                group: s as u32,
            });
        }
    }
    let total = args.tenants * args.sessions_per_tenant;
    let (mut fleet, notes) = measure::start_fleet(&args.opts, total, servers, limit).await?;
    for note in &notes {
        eprintln!("loadgen: note: {note}");
    }
    // Session j of tenant t goes to server j % servers.
    let step_plan = |from: usize, to: usize| -> Vec<(u32, u64)> {
        let mut plan = Vec::new();
        for t in 0..args.tenants {
            let mut per_server = vec![0u64; servers.len()];
            for j in from..to {
                per_server[j % servers.len()] += 1;
            }
            for (s, n) in per_server.into_iter().enumerate() {
                if n > 0 {
                    plan.push(((t * servers.len() + s) as u32, n));
                }
            }
        }
        plan
    };
    let mut per_server = vec![0u64; servers.len()];
    let mut steps = Vec::new();
    for (from, to) in [(0, 1), (1, args.sessions_per_tenant)] {
        if from >= to {
            continue;
        }
        eprintln!(
            "loadgen: opening sessions {}..{} of every tenant",
            from + 1,
            to
        );
        let (opened, ramp) =
            measure::ramp(&mut fleet, &targets, &step_plan(from, to), &args.opts).await?;
        for (target, n) in &opened.per_target {
            per_server[*target as usize % servers.len()] += n;
        }
        let registered = measure::wait_registered(
            deployment,
            &per_server,
            &[("audience", "totem")],
            Duration::from_secs(120),
        )
        .await;
        let mut rss = Vec::new();
        for server in servers {
            rss.push(measure::settled_rss(server, settle).await);
        }
        steps.push((opened, ramp, registered, rss));
    }

    let desks = Arc::new(
        tenants
            .iter()
            .map(|t| Mutex::new(Desk::new(t.admin.clone(), t.services[0], t.counters[0])))
            .collect::<Vec<_>>(),
    );
    let apis: Vec<Api> = tenants.iter().map(|t| t.admin.clone()).collect();
    let mut rng: SmallRng = make_rng();
    let count = args.tenants;
    eprintln!(
        "loadgen: {} changes every {} ms over {} tenants",
        args.changes, args.interval_ms, args.tenants
    );
    let stretch = measure::stretch(
        deployment,
        Some(&mut fleet),
        StretchPlan {
            desks: &desks,
            apis: &apis,
            count: args.changes,
            interval: Duration::from_millis(args.interval_ms),
            drain: Duration::from_secs_f64(args.opts.drain_secs),
        },
        move || rng.random_range(0..count),
    )
    .await?;
    let status = fleet.status().await?;
    let procs = fleet.len();
    fleet.quit().await;

    // Memory: step 1 adds a hub and a session per tenant, step 2 only sessions.
    let sum = |v: &[Option<u64>]| -> Option<u64> { v.iter().copied().sum() };
    let idle = sum(&rss_idle);
    let after_first = steps.first().and_then(|s| sum(&s.3));
    let after_all = steps.last().and_then(|s| sum(&s.3));
    let first_sessions = steps.first().map_or(0, |s| s.0.opened);
    let other_sessions: u64 = steps.iter().skip(1).map(|s| s.0.opened).sum();
    let connected = first_sessions + other_sessions;
    let kib_per_session = match (after_first, after_all) {
        (Some(a), Some(b)) if other_sessions > 0 => {
            Some((b as f64 - a as f64) / other_sessions as f64)
        }
        _ => None,
    };
    let kib_per_hub = match (idle, after_first) {
        (Some(i), Some(a)) if first_sessions > 0 => {
            Some((a as f64 - i as f64) / first_sessions as f64 - kib_per_session.unwrap_or(0.0))
        }
        _ => None,
    };
    let kib_per_session_overall = match (idle, after_all) {
        (Some(i), Some(b)) if connected > 0 => Some((b as f64 - i as f64) / connected as f64),
        _ => None,
    };

    let mut text = format!(
        "tenants: {} tenants × {} totem sessions = {} sessions ({} open, {} failed), {} changes \
         every {} ms to random tenants, {} session worker(s)\n",
        args.tenants,
        args.sessions_per_tenant,
        total,
        connected,
        steps.iter().map(|s| s.0.failed()).sum::<u64>(),
        args.changes,
        args.interval_ms,
        procs
    );
    for note in &notes {
        text.push_str(&format!("note: {note}\n"));
    }
    text.push_str(&format!(
        "setup: tenants and admins with the CLI {:.1} s, services/counters/logins through the \
         API {:.1} s; ramp {}\n",
        deployment.cli_setup.as_secs_f64(),
        api_setup.as_secs_f64(),
        steps
            .iter()
            .map(|s| format!("{} sessions in {:.1} s", s.0.opened, s.1.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", then ")
    ));
    let mut memory = Table::new(&["memory", "RSS MiB", "KiB each"]);
    memory.row(vec![
        "idle (no tenant has a session)".into(),
        mib(idle),
        "-".into(),
    ]);
    memory.row(vec![
        format!("+1 session per tenant ({first_sessions})"),
        mib(after_first),
        kib_per_hub.map_or("-".into(), |k| format!("{k:.1} per hub")),
    ]);
    memory.row(vec![
        format!("+{other_sessions} more sessions"),
        mib(after_all),
        kib_per_session.map_or("-".into(), |k| format!("{k:.2} per session")),
    ]);
    memory.row(vec![
        "all sessions and hubs together".into(),
        "-".into(),
        kib_per_session_overall.map_or("-".into(), |k| format!("{k:.2} per session")),
    ]);
    text.push_str(&memory.render());
    let mut table = Table::new(&[
        "changes", "ok", "REST p50", "REST p99", "p50", "p90", "p99", "max", "last p50",
        "last p99", "last max", "missing", "dup", "ooo",
    ]);
    let d = &stretch.all;
    let mut row = vec![stretch.made.len().to_string(), stretch.ok().to_string()];
    row.extend(report::delivery_cells(&stretch));
    table.row(row);
    text.push_str(&table.render());
    text.push_str(&format!(
        "(latencies in ms; \"last\": per change, until the last of its tenant's sessions had \
         it) changes took {:.1} s; drain {:.0} ms; CPU during changes: {}; frames {} (full parses {})\n",
        stretch.secs,
        stretch.drain.as_secs_f64() * 1e3,
        stretch.cpu.percent(stretch.secs),
        status.frames,
        status.full_parses,
    ));
    let mut failures = std::collections::BTreeMap::new();
    for step in &steps {
        for (k, v) in &step.0.failures {
            *failures.entry(k.clone()).or_insert(0u64) += v;
        }
    }
    for (what, map) in [
        ("connect failures", &failures),
        ("REST errors", &stretch.rest_errors),
        ("sessions ended", &status.ends),
    ] {
        if !map.is_empty() {
            text.push_str(&format!("{what}: {}\n", report::counts(map)));
        }
    }
    if stretch.unassigned > 0 || stretch.behind > 0 || d.unmatched > 0 {
        text.push_str(&format!(
            "{} changes not found in the event log, {} sessions behind after the drain, {} \
             frames of changes not made by this run\n",
            stretch.unassigned, stretch.behind, d.unmatched
        ));
    }
    let passed = stretch.clean() && failures.is_empty() && stretch.behind == 0;
    let json = json!({
        "config": {
            "tenants": args.tenants,
            "sessions_per_tenant": args.sessions_per_tenant,
            "changes": args.changes,
            "interval_ms": args.interval_ms,
            "batch": args.opts.batch,
            "session_procs": procs,
            "notes": notes,
        },
        "setup_secs": {"cli": deployment.cli_setup.as_secs_f64(), "api": api_setup.as_secs_f64()},
        "sessions": connected,
        "connect_failures": failures,
        "ramp": steps.iter().map(|s| json!({
            "opened": s.0.opened,
            "secs": s.1.as_secs_f64(),
            "handshake_ms": s.0.handshake.summary_ms(),
            "server_counted": s.2,
            "rss_kib": s.3,
        })).collect::<Vec<_>>(),
        "rss_kib": {"idle": idle, "one_session_per_tenant": after_first, "all_sessions": after_all},
        "kib_per_session": kib_per_session,
        "kib_per_hub": kib_per_hub,
        "kib_per_session_overall": kib_per_session_overall,
        "changes": stretch.json(),
        "session_ends": status.ends,
        "frames": status.frames,
        "full_parses": status.full_parses,
    });
    Ok(Outcome { text, json, passed })
}
