//! fanout: one tenant, N totem sessions, M changes; how long until each session has each
//! change, and what N sessions cost the server in memory. With several servers the
//! sessions are split evenly between them and the changes go to the first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use nextup_bench::histogram::Histogram;
use nextup_bench::svg::{LineChart, Series};
use nextup_bench::sys::FileLimit;

use crate::changes::Desk;
use crate::measure::{self, SessionOpts, Stretch, StretchPlan};
use crate::protocol::TargetSpec;
use crate::report::{self, Table, field, mib, ms};
use crate::setup::{self, Deployment, Needs};
use crate::{Common, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Session counts to measure, in increasing order (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000, 10000])]
    pub sessions: Vec<usize>,
    /// Changes per session count (and for the idle baseline).
    #[arg(long, default_value_t = 200)]
    pub changes: usize,
    /// Pause between two changes, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub interval_ms: u64,
    /// Write an SVG chart of latency against sessions here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    pub opts: SessionOpts,
}

struct Level {
    sessions: usize,
    connected: u64,
    opened: crate::fleet::Opened,
    ramp_secs: f64,
    registered: Vec<Option<u64>>,
    per_server_sessions: Vec<u64>,
    rss: Vec<Option<u64>>,
    stretch: Stretch,
    status: crate::fleet::Status,
}

pub async fn run(
    _common: &Common,
    args: &Args,
    deployment: &Deployment,
    limit: &FileLimit,
) -> anyhow::Result<Outcome> {
    let mut levels_wanted = args.sessions.clone();
    levels_wanted.sort_unstable();
    levels_wanted.dedup();
    if levels_wanted.is_empty() || args.changes == 0 {
        bail!("give --sessions and a positive --changes");
    }
    let slug = deployment.slugs[0].clone();
    let tenant = setup::ready_tenant(
        deployment,
        &slug,
        Needs {
            services: 1,
            counters: 1,
            operator: false,
        },
    )
    .await?;
    let servers = &deployment.servers;
    let targets: Vec<TargetSpec> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| TargetSpec {
            url: s.totem_url(&slug),
            addr: s.addr,
            tenant: 0,
            group: i as u32,
        })
        .collect();
    let settle = Duration::from_secs_f64(args.opts.settle_secs);
    let mut rss_idle = Vec::new();
    for server in servers {
        rss_idle.push(measure::settled_rss(server, settle).await);
    }
    let max = *levels_wanted.last().expect("not empty");
    let (mut fleet, notes) = measure::start_fleet(&args.opts, max, servers, limit).await?;
    for note in &notes {
        eprintln!("loadgen: note: {note}");
    }
    let desks = Arc::new(vec![Mutex::new(Desk::new(
        tenant.admin.clone(),
        tenant.services[0],
        tenant.counters[0],
    ))]);
    let apis = vec![tenant.admin.clone()];
    let plan = || StretchPlan {
        desks: &desks,
        apis: &apis,
        count: args.changes,
        interval: Duration::from_millis(args.interval_ms),
        drain: Duration::from_secs_f64(args.opts.drain_secs),
    };

    eprintln!(
        "loadgen: idle baseline: {} changes without sessions",
        args.changes
    );
    let idle = measure::stretch(deployment, None, plan(), || 0).await?;

    let mut levels: Vec<Level> = Vec::new();
    let mut opened_total = 0u64;
    let mut per_server = vec![0u64; servers.len()];
    for &n in &levels_wanted {
        let need = (n as u64).saturating_sub(opened_total);
        // Session i goes to server i % servers.
        let mut plan_counts = vec![0u64; servers.len()];
        for i in opened_total..opened_total + need {
            plan_counts[(i % servers.len() as u64) as usize] += 1;
        }
        let session_plan: Vec<(u32, u64)> = plan_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(t, c)| (t as u32, *c))
            .collect();
        eprintln!("loadgen: ramping up to {n} sessions");
        let (opened, ramp) = measure::ramp(&mut fleet, &targets, &session_plan, &args.opts).await?;
        opened_total += opened.opened;
        for (t, c) in &opened.per_target {
            per_server[*t as usize] += c;
        }
        let registered = measure::wait_registered(
            deployment,
            &per_server,
            &[("tenant", slug.as_str()), ("audience", "totem")],
            Duration::from_secs(60),
        )
        .await;
        let mut rss = Vec::new();
        for server in servers {
            rss.push(measure::settled_rss(server, settle).await);
        }
        eprintln!(
            "loadgen: {n} sessions: {} open, server counts {:?}; {} changes every {} ms",
            opened_total, registered, args.changes, args.interval_ms
        );
        let stretch = measure::stretch(deployment, Some(&mut fleet), plan(), || 0).await?;
        let status = fleet.status().await?;
        levels.push(Level {
            sessions: n,
            connected: opened_total,
            opened,
            ramp_secs: ramp.as_secs_f64(),
            registered,
            per_server_sessions: per_server.clone(),
            rss,
            stretch,
            status,
        });
    }
    let procs = fleet.len();
    fleet.quit().await;

    // The readable report.
    let mut text = String::new();
    text.push_str(&format!(
        "fan-out: tenant {slug}, {} changes every {} ms (issue → call-next → start → finish), \
         {} session worker(s)\n",
        args.changes, args.interval_ms, procs
    ));
    for note in &notes {
        text.push_str(&format!("note: {note}\n"));
    }
    let kib_per_session = |level: &Level| -> Option<f64> {
        let now: Option<u64> = level.rss.iter().copied().sum();
        let idle: Option<u64> = rss_idle.iter().copied().sum();
        let (now, idle) = (now?, idle?);
        (level.connected > 0).then(|| (now as f64 - idle as f64) / level.connected as f64)
    };
    let mut table = Table::new(&[
        "sessions", "open", "failed", "ramp s", "RSS MiB", "KiB/sess", "REST p50", "REST p99",
        "p50", "p90", "p99", "max", "last p50", "last p99", "last max", "missing", "dup", "ooo",
    ]);
    table.row(vec![
        "0 (idle)".into(),
        "0".into(),
        "-".into(),
        "-".into(),
        mib(rss_idle.iter().copied().sum()),
        "-".into(),
        field(idle.rest.as_ref(), |s| s.p50),
        field(idle.rest.as_ref(), |s| s.p99),
    ]);
    for level in &levels {
        let mut row = vec![
            level.sessions.to_string(),
            level.connected.to_string(),
            level.opened.failed().to_string(),
            format!("{:.1}", level.ramp_secs),
            mib(level.rss.iter().copied().sum()),
            kib_per_session(level).map_or("-".into(), |k| format!("{k:.1}")),
        ];
        row.extend(report::delivery_cells(&level.stretch));
        table.row(row);
    }
    text.push_str(&table.render());
    text.push_str(
        "(latencies in ms, from sending the REST request to each session reading its \
         ticket_update; \"last\": per change, until the last session had it)\n",
    );
    if servers.len() > 1 {
        let mut per = Table::new(&[
            "sessions", "server", "on it", "RSS MiB", "p50", "p99", "max", "last p50", "last max",
            "missing",
        ]);
        for level in &levels {
            for (g, d) in &level.stretch.groups {
                let (latency, last) = measure::delivery_summaries(d);
                let i = *g as usize;
                per.row(vec![
                    level.sessions.to_string(),
                    format!("{}", i + 1),
                    level.per_server_sessions[i].to_string(),
                    mib(level.rss[i]),
                    field(latency.as_ref(), |s| s.p50),
                    field(latency.as_ref(), |s| s.p99),
                    field(latency.as_ref(), |s| s.max),
                    field(last.as_ref(), |s| s.p50),
                    field(last.as_ref(), |s| s.max),
                    d.missing.to_string(),
                ]);
            }
        }
        text.push_str("per server process (changes are sent to server 1):\n");
        text.push_str(&per.render());
    }
    for level in &levels {
        let s = &level.stretch;
        let extra: Vec<String> = [
            (!level.opened.failures.is_empty()).then(|| {
                format!(
                    "connect failures: {}",
                    report::counts(&level.opened.failures)
                )
            }),
            (!s.rest_errors.is_empty())
                .then(|| format!("REST errors: {}", report::counts(&s.rest_errors))),
            (!level.status.ends.is_empty())
                .then(|| format!("sessions ended: {}", report::counts(&level.status.ends))),
            (s.unassigned > 0)
                .then(|| format!("{} changes not found in the event log", s.unassigned)),
            (s.all.unmatched > 0)
                .then(|| format!("{} frames of changes not made by this run", s.all.unmatched)),
            (s.behind > 0)
                .then(|| format!("{} sessions still behind after the drain wait", s.behind)),
        ]
        .into_iter()
        .flatten()
        .collect();
        text.push_str(&format!(
            "{} sessions: handshake p50 {} ms p99 {} ms; drain {:.0} ms; CPU during changes: {}; frames {} (full parses {}){}\n",
            level.sessions,
            ms(level.opened.handshake.percentile(50.0).map(|us| us as f64 / 1e3)),
            ms(level.opened.handshake.percentile(99.0).map(|us| us as f64 / 1e3)),
            s.drain.as_secs_f64() * 1e3,
            s.cpu.percent(s.secs),
            level.status.frames,
            level.status.full_parses,
            if extra.is_empty() {
                String::new()
            } else {
                format!("; {}", extra.join("; "))
            }
        ));
    }

    if let Some(path) = &args.svg {
        let series = |name: &str, pick: &dyn Fn(&Level) -> Option<f64>| Series {
            name: name.to_owned(),
            points: levels
                .iter()
                .filter_map(|l| Some((l.sessions as f64, pick(l)?)))
                .collect(),
        };
        let latency = |l: &Level| measure::delivery_summaries(&l.stretch.all).0;
        let last = |l: &Level| measure::delivery_summaries(&l.stretch.all).1;
        let chart = LineChart {
            title: format!(
                "nextup fan-out: request → ticket_update ({} server{})",
                servers.len(),
                if servers.len() > 1 { "s" } else { "" }
            ),
            x_label: "totem sessions".to_owned(),
            y_label: "latency (ms)".to_owned(),
            series: vec![
                series("p50", &|l| latency(l).map(|s| s.p50)),
                series("p99", &|l| latency(l).map(|s| s.p99)),
                series("last session, median", &|l| last(l).map(|s| s.p50)),
                series("last session, max", &|l| last(l).map(|s| s.max)),
            ],
        };
        std::fs::write(path, chart.to_svg())?;
        text.push_str(&format!("chart: {}\n", path.display()));
    }

    let passed = idle.rest_errors.is_empty()
        && levels
            .iter()
            .all(|l| l.stretch.clean() && l.opened.failed() == 0 && l.stretch.behind == 0);
    let levels_json: Vec<Value> = levels
        .iter()
        .map(|l| {
            let mut v = l.stretch.json();
            v["sessions"] = json!(l.sessions);
            v["connected"] = json!(l.connected);
            v["connect_failures"] = json!(l.opened.failures);
            v["not_ready"] = json!(l.opened.opened - l.opened.ready);
            v["ramp_secs"] = json!(l.ramp_secs);
            v["handshake_ms"] = json!(l.opened.handshake.summary_ms());
            v["sessions_per_server"] = json!(l.per_server_sessions);
            v["server_counted"] = json!(l.registered);
            v["rss_kib"] = json!(l.rss);
            v["kib_per_session"] = json!(kib_per_session(l));
            v["session_ends"] = json!(l.status.ends);
            v["frames"] = json!(l.status.frames);
            v["full_parses"] = json!(l.status.full_parses);
            v
        })
        .collect();
    let json = json!({
        "config": {
            "sessions": levels_wanted,
            "changes": args.changes,
            "interval_ms": args.interval_ms,
            "batch": args.opts.batch,
            "session_procs": procs,
            "notes": notes,
        },
        "rss_idle_kib": rss_idle,
        "idle": idle.json(),
        "levels": levels_json,
        "handshake_all_ms": levels.iter().fold(Histogram::default(), |mut h, l| {
            h.merge(&l.opened.handshake);
            h
        }).summary_ms(),
    });
    Ok(Outcome { text, json, passed })
}
