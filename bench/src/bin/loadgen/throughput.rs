//! throughput: K clients with operator tokens writing as fast as they can for T seconds,
//! on one tenant or spread over many.
//!
//! - `issue`: each client issues tickets;
//! - `cycle`: each client is the operator of its own counter (in every tenant) and runs
//!   call-next → start → finish. Waiting tickets are issued beforehand, outside the
//!   measurement; a call-next that finds nothing (204) is counted apart, not as a cycle.
//!
//! Against an attached server, the tickets the run leaves waiting are cancelled afterwards:
//! a queue thousands long would make every later snapshot (and handshake) slow.
//!
//! `--tenants 1,100 --rounds 4` compares tenant counts in one run: the deployment has the
//! largest count of tenants, and each round measures every count in turn, on the first N
//! tenants, against the same server and database. A shared machine's speed can drift by a
//! quarter from minute to minute, so rates of separate runs compare less well than rates
//! taken in alternation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::stream::{self, StreamExt};
use rand::rngs::SmallRng;
use rand::{RngExt, make_rng};
use serde_json::{Value, json};
use uuid::Uuid;

use nextup_bench::api::{self, Api, ApiError, Priority};
use nextup_bench::stats::Summary;

use crate::measure;
use crate::report::{self, Table, field};
use crate::setup::{self, Deployment, Needs, Tenant};
use crate::{Common, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Issue,
    Cycle,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "issue")]
    pub mode: Mode,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// How long they run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// Tenants the clients and their tickets are spread over; several counts, comma
    /// separated (`1,100`), are measured in turn, each compared with the first.
    #[arg(long, value_delimiter = ',', default_values_t = [1])]
    pub tenants: Vec<usize>,
    /// Times each tenant count is measured, in alternation.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Cycle mode: waiting tickets to issue beforehand, over all tenants (default: 100 per
    /// client per second of the run, plus a margin per tenant for the random spread).
    #[arg(long)]
    pub preissue: Option<usize>,
    /// Issue mode: send each issue with a fresh `Idempotency-Key`, as the kiosk page does.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// With several server processes: client N sends its requests to process N mod the
    /// number of processes, so that all of them write the tenants' changes at once (by
    /// default every request goes to the first).
    #[arg(long)]
    pub spread: bool,
}

impl Args {
    /// Tenants the deployment needs: the largest count measured.
    pub fn most_tenants(&self) -> usize {
        self.tenants.iter().copied().max().unwrap_or(1).max(1)
    }
}

const KINDS: [&str; 5] = ["issue", "call_next", "call_next_empty", "start", "finish"];

#[derive(Default)]
struct ClientLog {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
    cycles: u64,
    /// Issue mode: the tickets issued, by tenant.
    issued: Vec<(usize, Uuid)>,
}

impl ClientLog {
    fn timed<T>(&mut self, kind: &'static str, started: Instant, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => self
                .latencies
                .entry(kind)
                .or_default()
                .push(started.elapsed()),
            Err(e) => {
                *self
                    .errors
                    .entry(format!("{kind}: {}", e.key()))
                    .or_default() += 1
            }
        }
    }
}

async fn client(
    n: usize,
    mode: Mode,
    keyed: bool,
    tenants: Arc<Vec<Tenant>>,
    used: usize,
    base: Option<String>,
    deadline: Instant,
) -> ClientLog {
    let mut log = ClientLog::default();
    let mut rng: SmallRng = make_rng();
    // Each tenant's operator, through this client's server process.
    let apis: Vec<Api> = tenants[..used]
        .iter()
        .map(|t| match &base {
            Some(base) => t.operator.at(base),
            None => t.operator.clone(),
        })
        .collect();
    while Instant::now() < deadline {
        let t = if used == 1 {
            0
        } else {
            rng.random_range(0..used)
        };
        let tenant = &tenants[t];
        let api = &apis[t];
        match mode {
            Mode::Issue => {
                let started = Instant::now();
                let key = keyed.then(|| format!("loadgen-{n}-{:016x}", rng.random::<u64>()));
                let result = api
                    .issue_keyed(tenant.services[0], Priority::Normal, key.as_deref())
                    .await;
                log.timed("issue", started, &result);
                if let Ok(ticket) = &result {
                    log.issued.push((t, ticket.id));
                }
            }
            Mode::Cycle => {
                let counter = tenant.counters[n];
                let started = Instant::now();
                let called = api.call_next(counter, None).await;
                let ticket: Uuid = match called {
                    Ok(Some(ticket)) => {
                        log.timed("call_next", started, &Ok::<(), ApiError>(()));
                        ticket.id
                    }
                    Ok(None) => {
                        log.timed("call_next_empty", started, &Ok::<(), ApiError>(()));
                        continue;
                    }
                    Err(e) => {
                        log.timed("call_next", started, &Err::<(), _>(e));
                        continue;
                    }
                };
                let started = Instant::now();
                let result = api.start(ticket).await;
                log.timed("start", started, &result);
                if result.is_err() {
                    // Free the counter for the next call.
                    let _ = api.cancel(ticket).await;
                    continue;
                }
                let started = Instant::now();
                let mut result = api.finish(ticket).await;
                log.timed("finish", started, &result);
                if result.is_err() {
                    result = api.finish(ticket).await;
                }
                if result.is_ok() {
                    log.cycles += 1;
                }
            }
        }
    }
    log
}

/// The writers' batches, summed over the server processes, from their
/// `nextup_change_batch_size` and `nextup_change_batch_tenants` histograms.
#[derive(Debug, Default, Clone, Copy)]
struct WriterBatches {
    batches: f64,
    requests: f64,
    tenants: f64,
}

impl WriterBatches {
    async fn read(deployment: &Deployment) -> Self {
        let mut sum = Self::default();
        for server in &deployment.servers {
            let api = Api::with_client(deployment.http.clone(), &server.http_base, "-");
            let Ok(text) = api.get_text("/metrics").await else {
                continue;
            };
            let metric = |name| api::metric_sum(&text, name, &[]).unwrap_or(0.0);
            sum.batches += metric("nextup_change_batch_size_count");
            sum.requests += metric("nextup_change_batch_size_sum");
            sum.tenants += metric("nextup_change_batch_tenants_sum");
        }
        sum
    }

    fn since(self, before: &Self) -> Self {
        Self {
            batches: self.batches - before.batches,
            requests: self.requests - before.requests,
            tenants: self.tenants - before.tenants,
        }
    }

    /// Batches per second, requests per batch and tenants per batch, if there were any.
    fn rates(&self, secs: f64) -> Option<(f64, f64, f64)> {
        (self.batches > 0.0).then(|| {
            (
                self.batches / secs,
                self.requests / self.batches,
                self.tenants / self.batches,
            )
        })
    }

    fn json(&self, secs: f64) -> Value {
        self.rates(secs)
            .map_or(Value::Null, |(per_sec, requests, tenants)| {
                json!({
                    "per_sec": per_sec,
                    "requests_per_batch": requests,
                    "tenants_per_batch": tenants,
                })
            })
    }
}

/// Cancels those of `tickets` (tenant, id) that still wait; returns how many, and the time.
async fn cancel_left(tenants: &[Tenant], tickets: Vec<(usize, Uuid)>) -> (usize, f64) {
    let started = Instant::now();
    let mut by_tenant: BTreeMap<usize, std::collections::HashSet<Uuid>> = BTreeMap::new();
    for (t, id) in tickets {
        by_tenant.entry(t).or_default().insert(id);
    }
    let mut waiting = Vec::new();
    for (t, ids) in &by_tenant {
        let api = &tenants[*t].operator;
        match api.tickets(Some(api::Status::Waiting)).await {
            Ok(list) => waiting.extend(
                list.into_iter()
                    .filter(|ticket| ids.contains(&ticket.id))
                    .map(|ticket| (*t, ticket.id)),
            ),
            Err(e) => eprintln!("loadgen: warning: cannot list waiting tickets: {e}"),
        }
    }
    let cancelled = stream::iter(waiting)
        .map(|(t, id)| async move { tenants[t].operator.cancel(id).await.is_ok() })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    (cancelled, started.elapsed().as_secs_f64())
}

pub async fn run(common: &Common, args: &Args, deployment: &Deployment) -> anyhow::Result<Outcome> {
    if args.clients == 0 || args.secs <= 0.0 || args.rounds == 0 {
        bail!("--clients, --secs and --rounds must be positive");
    }
    if args.tenants.contains(&0) {
        bail!("--tenants counts must be positive");
    }
    let started = Instant::now();
    let tenants = setup::ready_tenants(
        deployment,
        Needs {
            services: 1,
            counters: if args.mode == Mode::Cycle {
                args.clients
            } else {
                0
            },
            operator: true,
        },
        common.setup_jobs * 4,
    )
    .await?;
    let api_setup = started.elapsed().as_secs_f64();
    let tenants = Arc::new(tenants);

    if let ([used], 1) = (args.tenants.as_slice(), args.rounds) {
        let measured = measure(args, deployment, &tenants, *used).await?;
        let mut text = measured.header(args, deployment);
        text.push_str(&format!(
            "setup: API {api_setup:.1} s{}\n",
            measured.preissue_note()
        ));
        text.push_str(&measured.text);
        let mut json = measured.json;
        json["setup_secs"] = json!({
            "cli": deployment.cli_setup.as_secs_f64(),
            "api": api_setup,
            "preissue": measured.preissue_secs,
        });
        return Ok(Outcome {
            text,
            json,
            passed: measured.failed == 0,
        });
    }
    compare(args, deployment, &tenants, api_setup).await
}

/// Each tenant count of `--tenants`, measured `--rounds` times in alternation, and each
/// count's mean rate against the first count's.
async fn compare(
    args: &Args,
    deployment: &Deployment,
    tenants: &Arc<Vec<Tenant>>,
    api_setup: f64,
) -> anyhow::Result<Outcome> {
    let unit = match args.mode {
        Mode::Issue => "issues/s",
        Mode::Cycle => "cycles/s",
    };
    let mut table = Table::new(&[
        "round",
        "tenants",
        unit,
        "worst p99",
        "batches/s",
        "req/batch",
        "tenants/batch",
        "CPU server / postgres / loadgen",
    ]);
    let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut runs = Vec::new();
    let mut failed = 0;
    for round in 1..=args.rounds {
        for &used in &args.tenants {
            let measured = measure(args, deployment, tenants, used).await?;
            let batches = measured.batches.rates(measured.elapsed);
            let cell = |pick: fn((f64, f64, f64)) -> f64, digits: usize| {
                batches.map_or("-".to_owned(), |b| format!("{:.*}", digits, pick(b)))
            };
            table.row(vec![
                round.to_string(),
                used.to_string(),
                format!("{:.0}", measured.rate),
                measured
                    .worst_p99
                    .map_or("-".to_owned(), |p| format!("{p:.1} ms")),
                cell(|b| b.0, 0),
                cell(|b| b.1, 1),
                cell(|b| b.2, 1),
                measured.cpu.short_percent(measured.elapsed),
            ]);
            eprintln!(
                "loadgen: round {round}, {used} tenant(s): {:.0} {unit}",
                measured.rate
            );
            rates.entry(used).or_default().push(measured.rate);
            failed += measured.failed;
            let mut json = measured.json;
            json["round"] = json!(round);
            runs.push(json);
        }
    }
    let first = args.tenants[0];
    let mut text = format!(
        "throughput: {:?} mode{}, {} clients with operator tokens, {:.1} s per run, \
         {} tenant(s) deployed; {} round(s) of {}\n",
        args.mode,
        keyed_note(args),
        args.clients,
        args.secs,
        tenants.len(),
        args.rounds,
        args.tenants
            .iter()
            .map(|n| format!("{n} tenant(s)"))
            .collect::<Vec<_>>()
            .join(", then ")
    );
    text.push_str(&format!("setup: API {api_setup:.1} s\n"));
    text.push_str(&table.render());
    let mut summary = Vec::new();
    for count in CountMean::of(&args.tenants, &rates) {
        text.push_str(&format!(
            "mean: {} tenant(s) {:.0} {unit} ({:.0} % of {first} tenant(s)), runs {}\n",
            count.tenants,
            count.mean,
            count.of_first * 100.0,
            count
                .runs
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        summary.push(json!({
            "tenants": count.tenants,
            "runs_per_sec": count.runs,
            "mean_per_sec": count.mean,
            "of_first": count.of_first,
        }));
    }
    text.push_str(&format!("failed requests: {failed}\n"));
    let json = json!({
        "config": {
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "clients": args.clients,
            "secs": args.secs,
            "tenants": args.tenants,
            "rounds": args.rounds,
            "idempotency_keys": args.idempotency_keys,
            "servers": deployment.servers.len(),
            "spread": args.spread,
        },
        "setup_secs": {"cli": deployment.cli_setup.as_secs_f64(), "api": api_setup},
        "compare": summary,
        "runs": runs,
    });
    Ok(Outcome {
        text,
        json,
        passed: failed == 0,
    })
}

/// One tenant count's runs in a comparison, and their mean against the first count's.
#[derive(Debug, PartialEq)]
struct CountMean {
    tenants: usize,
    runs: Vec<f64>,
    mean: f64,
    of_first: f64,
}

impl CountMean {
    /// Each count of `order` once, in that order, from the rates measured for it.
    fn of(order: &[usize], rates: &BTreeMap<usize, Vec<f64>>) -> Vec<CountMean> {
        let mean = |runs: &[f64]| runs.iter().sum::<f64>() / runs.len().max(1) as f64;
        let base = order
            .first()
            .and_then(|first| rates.get(first))
            .map_or(0.0, |runs| mean(runs));
        let mut seen = std::collections::BTreeSet::new();
        order
            .iter()
            .filter(|&&tenants| seen.insert(tenants))
            .filter_map(|&tenants| {
                let runs = rates.get(&tenants)?.clone();
                let mean = mean(&runs);
                Some(CountMean {
                    tenants,
                    of_first: if base > 0.0 { mean / base } else { 0.0 },
                    mean,
                    runs,
                })
            })
            .collect()
    }
}

fn keyed_note(args: &Args) -> &'static str {
    if args.idempotency_keys {
        " with an Idempotency-Key per issue"
    } else {
        ""
    }
}

/// One measured run on the first `used` tenants.
struct Measured {
    /// Its report, from the latency table on.
    text: String,
    json: Value,
    elapsed: f64,
    /// Issues or cycles per second, as the mode counts.
    rate: f64,
    /// The highest p99 of any request kind, in ms.
    worst_p99: Option<f64>,
    failed: u64,
    cpu: measure::Cpu,
    batches: WriterBatches,
    used: usize,
    preissued: usize,
    preissue_secs: f64,
}

impl Measured {
    fn header(&self, args: &Args, deployment: &Deployment) -> String {
        format!(
            "throughput: {:?} mode{}, {} clients with operator tokens, {:.1} s, {} tenant(s){}\n",
            args.mode,
            keyed_note(args),
            args.clients,
            self.elapsed,
            self.used,
            match deployment.servers.len() {
                1 => String::new(),
                n if args.spread => format!(", requests spread over {n} server processes"),
                n => format!(", every request to the first of {n} server processes"),
            }
        )
    }

    fn preissue_note(&self) -> String {
        if self.preissued > 0 {
            format!(
                ", {} waiting tickets issued beforehand in {:.1} s",
                self.preissued, self.preissue_secs
            )
        } else {
            String::new()
        }
    }
}

/// Runs the clients for `--secs` on the first `used` tenants (cycle mode issues their
/// waiting tickets beforehand, outside the measurement).
async fn measure(
    args: &Args,
    deployment: &Deployment,
    tenants: &Arc<Vec<Tenant>>,
    used: usize,
) -> anyhow::Result<Measured> {
    let used = used.min(tenants.len());
    let mut preissued = 0;
    // Tickets this run issued, which it may leave waiting.
    let mut left: Vec<(usize, Uuid)> = Vec::new();
    let mut preissue_secs = 0.0;
    if args.mode == Mode::Cycle {
        let per_tenant = match args.preissue {
            Some(total) => total.div_ceil(used),
            None => {
                // Clients pick tenants at random: leave room for the luckier ones.
                let mean = args.clients as f64 * args.secs * 100.0 / used as f64;
                (mean + 3.0 * mean.sqrt() + 5.0).ceil() as usize
            }
        };
        eprintln!(
            "loadgen: issuing {} waiting tickets beforehand",
            per_tenant * used
        );
        let started = Instant::now();
        let jobs = tenants[..used]
            .iter()
            .enumerate()
            .flat_map(|(i, t)| (0..per_tenant).map(move |_| (i, t)));
        let results: Vec<(usize, Result<_, ApiError>)> =
            stream::iter(jobs)
                .map(|(i, t)| async move {
                    (i, t.operator.issue(t.services[0], Priority::Normal).await)
                })
                .buffer_unordered(32)
                .collect()
                .await;
        for (i, result) in results {
            match result {
                Ok(ticket) => left.push((i, ticket.id)),
                Err(e) => bail!("cannot issue the waiting tickets: {e}"),
            }
        }
        preissued = left.len();
        preissue_secs = started.elapsed().as_secs_f64();
    }
    if !deployment.analyze().await? {
        eprintln!("loadgen: note: no --database-url, so the database was not analyzed after setup");
    }

    eprintln!(
        "loadgen: {} clients, {:?} mode, {} s, over {} tenant(s)",
        args.clients, args.mode, args.secs, used
    );
    let batches0 = WriterBatches::read(deployment).await;
    let cpu0 = measure::Cpu::now(&deployment.servers, &[]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.secs);
    let tasks: Vec<_> = (0..args.clients)
        .map(|n| {
            let base = args.spread.then(|| {
                deployment.servers[n % deployment.servers.len()]
                    .http_base
                    .clone()
            });
            tokio::spawn(client(
                n,
                args.mode,
                args.idempotency_keys,
                tenants.clone(),
                used,
                base,
                deadline,
            ))
        })
        .collect();
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = measure::Cpu::now(&deployment.servers, &[]).since(&cpu0);
    let batches = WriterBatches::read(deployment).await.since(&batches0);

    let mut latencies: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut cycles = 0;
    for log in logs {
        for (k, v) in log.latencies {
            latencies.entry(k).or_default().extend(v);
        }
        for (k, v) in log.errors {
            *errors.entry(k).or_default() += v;
        }
        cycles += log.cycles;
        left.extend(log.issued);
    }
    let cleanup = if deployment.spawned {
        None
    } else {
        Some(cancel_left(tenants, left).await)
    };
    let ok_requests: usize = latencies.values().map(Vec::len).sum();
    let failed: u64 = errors.values().sum();
    let mut table = Table::new(&["request", "count", "per s", "p50", "p90", "p99", "max"]);
    let mut kinds_json = serde_json::Map::new();
    let mut worst_p99: Option<f64> = None;
    for kind in KINDS {
        let Some(values) = latencies.get(kind) else {
            continue;
        };
        let summary = Summary::of_millis(values);
        if let Some(s) = &summary {
            worst_p99 = Some(worst_p99.map_or(s.p99, |w| w.max(s.p99)));
        }
        table.row(vec![
            kind.to_owned(),
            values.len().to_string(),
            format!("{:.0}", values.len() as f64 / elapsed),
            field(summary.as_ref(), |s| s.p50),
            field(summary.as_ref(), |s| s.p90),
            field(summary.as_ref(), |s| s.p99),
            field(summary.as_ref(), |s| s.max),
        ]);
        kinds_json.insert(
            kind.to_owned(),
            json!({"count": values.len(), "per_sec": values.len() as f64 / elapsed, "latency_ms": summary}),
        );
    }
    let mut text = table.render();
    text.push_str(&format!(
        "total: {:.0} requests/s ({} ok, {} failed){}; CPU: {}\n",
        ok_requests as f64 / elapsed,
        ok_requests,
        failed,
        if args.mode == Mode::Cycle {
            format!(
                "; {:.0} cycles/s ({cycles} cycles)",
                cycles as f64 / elapsed
            )
        } else {
            String::new()
        },
        cpu.percent(elapsed)
    ));
    text.push_str(&format!("errors: {}\n", report::counts(&errors)));
    if let Some((per_sec, requests, tenants)) = batches.rates(elapsed) {
        text.push_str(&format!(
            "writer: {per_sec:.0} batches/s, {requests:.1} requests and {tenants:.1} tenants per batch\n"
        ));
    }
    if let Some((cancelled, secs)) = cleanup {
        text.push_str(&format!(
            "cleanup: cancelled the {cancelled} tickets this run left waiting ({secs:.1} s)\n"
        ));
    }
    let empty = latencies.get("call_next_empty").map_or(0, Vec::len);
    if empty > 0 {
        text.push_str(&format!(
            "note: call-next found nothing {empty} times: raise --preissue\n"
        ));
    }
    let json: Value = json!({
        "config": {
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "clients": args.clients,
            "secs": args.secs,
            "tenants": used,
            "preissued": preissued,
            "idempotency_keys": args.idempotency_keys,
            "servers": deployment.servers.len(),
            "spread": args.spread,
        },
        "elapsed_secs": elapsed,
        "requests_ok": ok_requests,
        "requests_failed": failed,
        "requests_per_sec": ok_requests as f64 / elapsed,
        "cycles": cycles,
        "cycles_per_sec": cycles as f64 / elapsed,
        "kinds": kinds_json,
        "errors": errors,
        "cpu": cpu.json(),
        "writer_batches": batches.json(elapsed),
        "cleanup": cleanup.map(|(cancelled, secs)| json!({"cancelled": cancelled, "secs": secs})),
    });
    let rate = match args.mode {
        Mode::Issue => latencies.get("issue").map_or(0, Vec::len) as f64 / elapsed,
        Mode::Cycle => cycles as f64 / elapsed,
    };
    Ok(Measured {
        text,
        json,
        elapsed,
        rate,
        worst_p99,
        failed,
        cpu,
        batches,
        used,
        preissued,
        preissue_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_is_compared_with_the_first_once_in_the_order_given() {
        let rates = BTreeMap::from([(1, vec![100.0, 300.0]), (100, vec![150.0, 170.0, 160.0])]);
        let means = CountMean::of(&[100, 1, 100], &rates);
        assert_eq!(
            means,
            [
                CountMean {
                    tenants: 100,
                    runs: vec![150.0, 170.0, 160.0],
                    mean: 160.0,
                    of_first: 1.0,
                },
                CountMean {
                    tenants: 1,
                    runs: vec![100.0, 300.0],
                    mean: 200.0,
                    of_first: 1.25,
                },
            ]
        );
    }

    #[test]
    fn a_first_count_with_no_rate_gives_no_ratio_rather_than_infinity() {
        let rates = BTreeMap::from([(1, vec![0.0]), (100, vec![50.0])]);
        let means = CountMean::of(&[1, 100], &rates);
        assert_eq!(means[1].of_first, 0.0);
    }
}
