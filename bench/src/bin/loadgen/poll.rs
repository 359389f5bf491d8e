//! poll: K anonymous clients asking `GET …/queue` with the current `If-None-Match` as fast as
//! they can, as polling displays do while nothing changes: the server should answer 304
//! from memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde_json::json;

use nextup_bench::api::Priority;
use nextup_bench::stats::Summary;

use crate::measure;
use crate::report::{self, Table, field};
use crate::setup::{self, Deployment, Needs};
use crate::{Common, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// How long they run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Waiting tickets the queue holds while it is polled.
    #[arg(long, default_value_t = 20)]
    pub waiting: usize,
}

#[derive(Default)]
struct ClientLog {
    not_modified: Vec<Duration>,
    full: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

async fn client(http: reqwest::Client, url: String, etag: String, deadline: Instant) -> ClientLog {
    let mut log = ClientLog::default();
    while Instant::now() < deadline {
        let started = Instant::now();
        let response = http.get(&url).header(IF_NONE_MATCH, &etag).send().await;
        match response {
            Ok(r) if r.status().as_u16() == 304 => log.not_modified.push(started.elapsed()),
            Ok(r) if r.status().is_success() => {
                // Read the body so that the connection can be reused.
                match r.bytes().await {
                    Ok(_) => log.full.push(started.elapsed()),
                    Err(_) => *log.errors.entry("transport".to_owned()).or_default() += 1,
                }
            }
            Ok(r) => {
                *log.errors
                    .entry(r.status().as_u16().to_string())
                    .or_default() += 1
            }
            Err(e) => {
                *log.errors
                    .entry(nextup_bench::api::ApiError::transport(&e).key())
                    .or_default() += 1
            }
        }
    }
    log
}

pub async fn run(
    _common: &Common,
    args: &Args,
    deployment: &Deployment,
) -> anyhow::Result<Outcome> {
    if args.clients == 0 || args.secs <= 0.0 {
        bail!("--clients and --secs must be positive");
    }
    let slug = deployment.slugs[0].clone();
    let tenant = setup::ready_tenant(
        deployment,
        &slug,
        Needs {
            services: 1,
            counters: 0,
            operator: false,
        },
    )
    .await?;
    for _ in 0..args.waiting {
        tenant
            .admin
            .issue(tenant.services[0], Priority::Normal)
            .await?;
    }
    let url = format!(
        "{}/api/v1/tenants/{slug}/queue",
        deployment.servers[0].http_base
    );
    let first = deployment.http.get(&url).send().await?.error_for_status()?;
    let etag = first
        .headers()
        .get(ETAG)
        .context("GET …/queue answered without an ETag")?
        .to_str()?
        .to_owned();
    first.bytes().await?;

    eprintln!(
        "loadgen: {} clients polling {url} with If-None-Match: {etag}",
        args.clients
    );
    let cpu0 = measure::Cpu::now(&deployment.servers, &[]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.secs);
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            tokio::spawn(client(
                deployment.http.clone(),
                url.clone(),
                etag.clone(),
                deadline,
            ))
        })
        .collect();
    let mut all = ClientLog::default();
    for task in tasks {
        let log = task.await?;
        all.not_modified.extend(log.not_modified);
        all.full.extend(log.full);
        for (k, v) in log.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = measure::Cpu::now(&deployment.servers, &[]).since(&cpu0);

    let answered = all.not_modified.len() + all.full.len();
    let failed: u64 = all.errors.values().sum();
    let share_304 = all.not_modified.len() as f64 / answered.max(1) as f64;
    let mut every: Vec<Duration> = all.not_modified.clone();
    every.extend(&all.full);
    let summaries = [
        (
            "304",
            Summary::of_millis(&all.not_modified),
            all.not_modified.len(),
        ),
        ("200", Summary::of_millis(&all.full), all.full.len()),
        ("all", Summary::of_millis(&every), answered),
    ];
    let mut table = Table::new(&["answer", "count", "per s", "p50", "p90", "p99", "max"]);
    for (what, summary, count) in &summaries {
        if *count == 0 {
            continue;
        }
        table.row(vec![
            (*what).to_owned(),
            count.to_string(),
            format!("{:.0}", *count as f64 / elapsed),
            field(summary.as_ref(), |s| s.p50),
            field(summary.as_ref(), |s| s.p90),
            field(summary.as_ref(), |s| s.p99),
            field(summary.as_ref(), |s| s.max),
        ]);
    }
    let mut text = format!(
        "poll: {} clients, GET …/queue with If-None-Match: {etag}, {:.1} s, {} waiting tickets\n",
        args.clients, elapsed, args.waiting
    );
    text.push_str(&table.render());
    text.push_str(&format!(
        "{:.0} requests/s (target ≥ 20000); 304 share {:.2} %; errors: {}; CPU: {}\n",
        answered as f64 / elapsed,
        share_304 * 100.0,
        report::counts(&all.errors),
        cpu.percent(elapsed)
    ));
    let json = json!({
        "config": {"clients": args.clients, "secs": args.secs, "waiting": args.waiting},
        "etag": etag,
        "elapsed_secs": elapsed,
        "requests": answered,
        "requests_per_sec": answered as f64 / elapsed,
        "not_modified": all.not_modified.len(),
        "share_304": share_304,
        "latency_ms": {"304": summaries[0].1, "200": summaries[1].1, "all": summaries[2].1},
        "errors": all.errors,
        "cpu": cpu.json(),
    });
    Ok(Outcome {
        text,
        json,
        passed: failed == 0 && share_304 >= 0.99,
    })
}
