//! soak: runs one `nextup serve` for a while under reconnecting WebSocket sessions and random
//! REST changes, cuts its database in the middle, and then checks that nothing was lost,
//! duplicated or reordered, that the outage was answered quickly with 503s, and how the
//! server's memory behaved. See bench/README.md.

mod events;
mod report;
mod sessions;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use nextup_bench::api::Api;
use nextup_bench::proxy::Proxy;
use nextup_bench::server::{self, ServeOptions, Server};
use nextup_bench::session::{Keep, Session, Target};
use nextup_bench::{api, pg};
use rand::rngs::SmallRng;
use rand::{RngExt, make_rng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::events::{EventLog, catch_up_log, poll_events};
use crate::report::{CutWindow, Report};
use crate::sessions::{Phase, SessionHandle, SessionTiming, session_task};
use crate::workers::{View, WorkerLog, resync_view, worker};

pub const SLUG: &str = "soak";
const ADMIN: (&str, &str) = ("soak-admin", "soak-admin-password");
const OPERATOR: (&str, &str) = ("soak-operator", "soak-operator-password");
const SERVICE_NAMES: [(&str, &str); 5] = [
    ("A", "General"),
    ("B", "Exams"),
    ("C", "Pharmacy"),
    ("D", "Billing"),
    ("E", "Results"),
];
/// Waiting tickets above which workers call instead of issuing.
pub const MAX_WAITING: usize = 60;
/// 503s are expected from the cut until this long after the restore.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(15);

/// Soak test of a nextup binary: reconnecting WebSocket sessions, random REST changes and a
/// database outage, then exactly-once, event-log and memory checks.
#[derive(Debug, Parser)]
#[command(name = "soak")]
pub struct Args {
    /// The nextup binary to test, e.g. target/release/nextup.
    #[arg(long)]
    pub nextup: PathBuf,
    /// How long the changes run, in minutes (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Totem (public) WebSocket sessions.
    #[arg(long, default_value_t = 50)]
    pub sessions: usize,
    /// Operator WebSocket sessions.
    #[arg(long, default_value_t = 5)]
    pub operator_sessions: usize,
    /// Workers making random REST changes, each with an operator or admin token.
    #[arg(long, default_value_t = 6)]
    pub workers: usize,
    /// Mean pause between two requests of a worker, in milliseconds (uniform, 0 to twice it).
    #[arg(long, default_value_t = 40)]
    pub think_ms: u64,
    /// Services to create (2 to 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=5))]
    pub services: u8,
    /// Counters (desks) to create.
    #[arg(long, default_value_t = 6)]
    pub counters: usize,
    /// A session stays connected for a random time up to this many seconds, then drops
    /// (with a Close frame or without) and resumes with `since`.
    #[arg(long, default_value_t = 20.0)]
    pub max_connected_secs: f64,
    /// ... after staying away for a random time up to this many seconds.
    #[arg(long, default_value_t = 2.0)]
    pub max_offline_secs: f64,
    /// Length of the database outage in the middle of the run, in seconds (0: none).
    #[arg(long, default_value_t = 20.0)]
    pub cut_secs: f64,
    /// The slowest acceptable 503 answer during the outage, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub max_503_secs: f64,
    /// The PostgreSQL server (URL without a database) on which the soak database is created.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// Keep the soak database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Where the server's output goes (default: nextup-<database>.log in the temp directory).
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// RUST_LOG of the server.
    #[arg(long, default_value = "info")]
    pub server_rust_log: String,
    /// More environment for the server, KEY=VALUE (repeatable; wins over the soak's own).
    #[arg(long = "server-env", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// Seconds to wait after closing every session before reading the final RSS.
    #[arg(long, default_value_t = 5.0)]
    pub settle_secs: f64,
    /// Fail when the final RSS exceeds the baseline by more than this many MiB.
    #[arg(long)]
    pub max_rss_growth_mib: Option<f64>,
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{raw}'"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if !args.minutes.is_finite() || args.minutes <= 0.0 {
        bail!("--minutes must be a positive number");
    }
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    if args.cut_secs < 0.0
        || Duration::from_secs_f64(args.cut_secs) + Duration::from_secs(10) > run_for
    {
        bail!("--cut-secs must leave at least 10 s of the run (use --cut-secs 0 for no outage)");
    }
    if args.max_connected_secs < 1.0 || args.max_offline_secs < 0.0 {
        bail!("--max-connected-secs must be at least 1 and --max-offline-secs at least 0");
    }
    let mut rng: SmallRng = make_rng();
    let database = format!("nextup_soak_{:08x}", rng.random::<u32>());
    let direct_url = pg::database_url(&args.postgres, &database)?;
    eprintln!("soak: database {database}");

    let outcome = soak(&args, &database, &direct_url, run_for).await;
    if args.keep {
        eprintln!("soak: kept database {database}");
    } else if let Err(e) = pg::drop_database(&args.postgres, &database).await {
        eprintln!("soak: warning: {e:#}");
    }
    outcome
}

/// Shared by the workers, the event-log poller and the coordinator.
pub struct Shared {
    pub admin: Api,
    pub operator: Api,
    pub services: Vec<Uuid>,
    pub counters: Vec<Uuid>,
    pub think: Duration,
    pub stop_workers: AtomicBool,
    pub view: Mutex<View>,
    pub ok_changes: AtomicU64,
    pub failures: AtomicU64,
    /// The last seq the poller saw (for progress lines).
    pub seq: AtomicU64,
}

async fn soak(
    args: &Args,
    database: &str,
    direct_url: &str,
    run_for: Duration,
) -> anyhow::Result<bool> {
    // 1. Tenant and admin through the CLI (straight to PostgreSQL), then the server through
    //    the proxy.
    server::create_tenant(&args.nextup, direct_url, SLUG, "Soak test").await?;
    server::create_user(&args.nextup, direct_url, SLUG, ADMIN.0, "admin", ADMIN.1).await?;
    let proxy = Proxy::start(&pg::host_port(&args.postgres)?)
        .await
        .context("cannot start the PostgreSQL proxy")?;
    let log_path = args
        .server_log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("nextup-{database}.log")));
    let mut env = vec![
        (
            "DATABASE_URL".to_owned(),
            pg::via(direct_url, &proxy.addr().to_string())?,
        ),
        ("BIND_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("JWT_SECRET".to_owned(), server::random_secret()),
        ("RUST_LOG".to_owned(), args.server_rust_log.clone()),
    ];
    env.extend(server::generous_limits());
    env.extend(args.server_env.iter().cloned());
    let server = Server::start(&ServeOptions {
        binary: args.nextup.clone(),
        env,
        log: Some(log_path.clone()),
        startup_timeout: Duration::from_secs(60),
    })
    .await?;
    eprintln!(
        "soak: nextup pid {} at {} (log: {})",
        server.pid(),
        server.http_base(),
        log_path.display()
    );

    // 2. Services, counters, an operator; the memory baseline.
    let public = Api::new(&server.http_base(), SLUG);
    let admin_login = public.login(ADMIN.0, ADMIN.1).await?;
    let admin = public.with_token(&admin_login.token);
    let mut services = Vec::new();
    for (code, name) in &SERVICE_NAMES[..usize::from(args.services)] {
        services.push(admin.create_service(code, name).await?.id);
    }
    let mut counters = Vec::new();
    for n in 1..=args.counters.max(1) {
        counters.push(admin.create_counter(&format!("Desk {n}")).await?.id);
    }
    admin
        .create_user(OPERATOR.0, OPERATOR.1, "operator")
        .await?;
    let operator_login = public.login(OPERATOR.0, OPERATOR.1).await?;
    let operator = public.with_token(&operator_login.token);
    let rss_baseline = server.rss_kib()?;

    let shared = Arc::new(Shared {
        admin,
        operator: operator.clone(),
        services,
        counters,
        think: Duration::from_millis(args.think_ms),
        stop_workers: AtomicBool::new(false),
        view: Mutex::new(View::default()),
        ok_changes: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        seq: AtomicU64::new(0),
    });

    // Memory sampler.
    let rss_peak = Arc::new(AtomicU64::new(rss_baseline));
    let sampler = {
        let (pid, peak) = (server.pid(), rss_peak.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(kib) = server::rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // 3. Sessions first, all at seq 0, then the workers.
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let mut sessions = Vec::new();
    for i in 0..args.sessions + args.operator_sessions {
        let (label, target) = if i < args.sessions {
            (format!("totem-{i}"), Target::totem(&server.ws_base(), SLUG))
        } else {
            (
                format!("operator-{}", i - args.sessions),
                Target::operator(&server.ws_base(), SLUG, &operator_login.token),
            )
        };
        let progress = Arc::new(AtomicU64::new(u64::MAX));
        let task = tokio::spawn(session_task(
            Session::new(target, Keep::Changes),
            SessionTiming {
                max_connected: Duration::from_secs_f64(args.max_connected_secs),
                max_offline: Duration::from_secs_f64(args.max_offline_secs),
            },
            phase_rx.clone(),
            progress.clone(),
        ));
        sessions.push(SessionHandle {
            label,
            progress,
            task,
        });
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    while sessions
        .iter()
        .any(|s| s.progress.load(Ordering::Relaxed) == u64::MAX)
    {
        if Instant::now() > ready_by {
            bail!("not every session got its first snapshot within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start_seqs: Vec<u64> = sessions
        .iter()
        .map(|s| s.progress.load(Ordering::Relaxed))
        .collect();
    eprintln!(
        "soak: {} sessions connected; running {:.1} min with {} workers",
        sessions.len(),
        run_for.as_secs_f64() / 60.0,
        args.workers
    );

    let started = Instant::now();
    let log = Arc::new(Mutex::new(EventLog::default()));
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_events(
        public.clone(),
        log.clone(),
        shared.clone(),
        stop_polling.clone(),
    ));
    let resync = tokio::spawn(resync_view(shared.clone()));
    let workers: Vec<JoinHandle<WorkerLog>> = (0..args.workers)
        .map(|n| tokio::spawn(worker(n, shared.clone())))
        .collect();

    // 4. The outage, in the middle of the run.
    let cut_window = Arc::new(Mutex::new(CutWindow::default()));
    let proxy = Arc::new(proxy);
    let cut_task = (args.cut_secs > 0.0).then(|| {
        let cut_len = Duration::from_secs_f64(args.cut_secs);
        let at = started + (run_for - cut_len) / 2;
        let window = cut_window.clone();
        let handle_proxy = proxy.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            handle_proxy.cut();
            window.lock().unwrap().start = Some(Instant::now());
            eprintln!("soak: database cut for {:.0} s", cut_len.as_secs_f64());
            tokio::time::sleep(cut_len).await;
            handle_proxy.restore();
            window.lock().unwrap().end = Some(Instant::now());
            eprintln!("soak: database restored");
        });
        (task, proxy.clone())
    });

    // Progress lines until the end of the run (or Ctrl-C).
    let deadline = started + run_for;
    let mut tick = tokio::time::interval_at(
        (Instant::now() + Duration::from_secs(15)).into(),
        Duration::from_secs(15),
    );
    let interrupted = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => break false,
            _ = tokio::signal::ctrl_c() => break true,
            _ = tick.tick() => eprintln!(
                "soak: [{:>5.0} s] seq {} · {} changes · {} failed requests · RSS {:.1} MiB",
                started.elapsed().as_secs_f64(),
                shared.seq.load(Ordering::Relaxed),
                shared.ok_changes.load(Ordering::Relaxed),
                shared.failures.load(Ordering::Relaxed),
                server.rss_kib().unwrap_or(0) as f64 / 1024.0,
            ),
        }
    };
    if interrupted {
        eprintln!("soak: interrupted; stopping and checking what ran");
    }

    // 5. Stop the changes, let every session catch up, close them, and check.
    shared.stop_workers.store(true, Ordering::SeqCst);
    let mut worker_logs = Vec::new();
    for w in workers {
        worker_logs.push(w.await?);
    }
    resync.abort();
    let ran_for = started.elapsed();
    if let Some((task, proxy)) = &cut_task
        && !task.is_finished()
    {
        task.abort();
        proxy.restore();
        let mut window = cut_window.lock().unwrap();
        if window.start.is_some() && window.end.is_none() {
            window.end = Some(Instant::now());
        }
    }
    stop_polling.store(true, Ordering::SeqCst);
    poller.await?;
    let final_seq = catch_up_log(&public, &log).await?;

    phase_tx.send_replace(Phase::Hold);
    let catch_up_by = Instant::now() + Duration::from_secs(60);
    let caught_up = loop {
        let behind = sessions
            .iter()
            .filter(|s| s.progress.load(Ordering::Relaxed) < final_seq)
            .count();
        if behind == 0 {
            break Ok(());
        }
        if Instant::now() > catch_up_by {
            break Err(behind);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    phase_tx.send_replace(Phase::Stop);
    let mut outcomes = Vec::new();
    for (handle, start_seq) in sessions.into_iter().zip(start_seqs) {
        let session = handle.task.await?;
        outcomes.push((handle.label, start_seq, session));
    }

    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs.max(0.0))).await;
    let rss_after = server.rss_kib()?;
    sampler.abort();
    let rss_peak = rss_peak.load(Ordering::Relaxed).max(rss_after);
    let open_sessions = match operator.get_text("/metrics").await {
        Ok(text) => api::metric_sum(&text, "nextup_ws_sessions", &[("tenant", SLUG)]),
        Err(e) => {
            eprintln!("soak: warning: GET /metrics: {e}");
            None
        }
    };
    let (log_errors, log_warnings) = server.log_counts();
    let exit = server.stop(Duration::from_secs(30)).await;

    let cut = *cut_window.lock().unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    let report = Report {
        args,
        ran_for,
        interrupted,
        final_seq,
        log,
        worker_logs,
        sessions: outcomes,
        caught_up,
        cut,
        rss: (rss_baseline, rss_peak, rss_after),
        open_sessions,
        server_log: (log_errors, log_warnings, log_path),
        exit: exit.map(|status| status.code()),
    };
    Ok(report.print())
}
