//! The floor under fan-out: the same deliveries with no server in the way.
//!
//! A child process (this binary's hidden `floor-writer` command) accepts N loopback TCP
//! connections from the main process and, at each round, writes one message of `--bytes`
//! to every connection from `--writer-threads` threads, and does nothing else: no HTTP, no
//! WebSocket framing, no actors. The main process reads the connections on a tokio runtime
//! and takes the clock when a connection has the whole message. So the figures are what the
//! machine's kernel and scheduler alone cost to deliver one change to N sockets, with the
//! reader on the same cores, as in `fanout`: the floor under any server's fan-out here.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream};
use std::process::{ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::AsyncReadExt;

use nextup_bench::histogram::Histogram;
use nextup_bench::{net, sys};

use crate::Outcome;
use crate::report::{Table, ms};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connection counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub sessions: Vec<usize>,
    /// Rounds (one message to every connection) per connection count.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Pause between rounds.
    #[arg(long, default_value_t = 250)]
    pub interval_ms: u64,
    /// Size of each message: 640 is about what a change's two frames take on the wire.
    #[arg(long, default_value_t = 640)]
    pub bytes: usize,
    /// Threads that write, each to its share of the connections (nextup runs one worker
    /// per core).
    #[arg(long, default_value_t = 2)]
    pub writer_threads: usize,
}

/// One connection count's figures.
struct Measured {
    sessions: usize,
    latency: Histogram,
    last: Histogram,
    missing: u64,
    writer_cpu: Duration,
    reader_cpu: Duration,
}

pub async fn run(args: &Args) -> anyhow::Result<Outcome> {
    if args.bytes == 0 || args.rounds == 0 || args.writer_threads == 0 {
        bail!("--bytes, --rounds and --writer-threads must be at least 1");
    }
    let mut measured = Vec::new();
    for &sessions in &args.sessions {
        eprintln!("loadgen: floor with {sessions} connections");
        measured.push(measure(args, sessions).await?);
    }

    let mut table = Table::new(&[
        "connections",
        "p50",
        "p90",
        "p99",
        "max",
        "last p50",
        "last p99",
        "last max",
        "missing",
        "writer CPU/round",
        "reader CPU/round",
    ]);
    let mut rows = Vec::new();
    for m in &measured {
        let all = m.latency.summary_ms();
        let last = m.last.summary_ms();
        let per_round = |cpu: Duration| cpu.as_secs_f64() * 1e3 / args.rounds as f64;
        table.row(vec![
            m.sessions.to_string(),
            ms(all.map(|s| s.p50)),
            ms(all.map(|s| s.p90)),
            ms(all.map(|s| s.p99)),
            ms(all.map(|s| s.max)),
            ms(last.map(|s| s.p50)),
            ms(last.map(|s| s.p99)),
            ms(last.map(|s| s.max)),
            m.missing.to_string(),
            format!("{:.1} ms", per_round(m.writer_cpu)),
            format!("{:.1} ms", per_round(m.reader_cpu)),
        ]);
        rows.push(json!({
            "sessions": m.sessions,
            "latency_ms": all,
            "last_ms": last,
            "missing": m.missing,
            "writer_cpu_ms_per_round": per_round(m.writer_cpu),
            "reader_cpu_ms_per_round": per_round(m.reader_cpu),
        }));
    }
    let text = format!(
        "floor: {} rounds every {} ms of {} bytes to each connection, {} writer thread(s), \
         no server\n{}(latencies in ms, from telling the writer to each connection having \
         the whole message; \"last\": per round, until the last connection had it; CPU per \
         round is user + system time)\n",
        args.rounds,
        args.interval_ms,
        args.bytes,
        args.writer_threads,
        table.render()
    );
    let passed = measured.iter().all(|m| m.missing == 0);
    Ok(Outcome {
        text,
        json: json!({
            "config": {
                "rounds": args.rounds,
                "interval_ms": args.interval_ms,
                "bytes": args.bytes,
                "writer_threads": args.writer_threads,
            },
            "floor": rows,
        }),
        passed,
    })
}

async fn measure(args: &Args, sessions: usize) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut child = WriterProcess(
        std::process::Command::new(exe)
            .arg("floor-writer")
            .args(["--bytes", &args.bytes.to_string()])
            .args(["--threads", &args.writer_threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the floor writer")?,
    );
    let mut to_writer = child.0.stdin.take().context("the writer's stdin")?;
    let mut from_writer = std::io::BufReader::new(child.0.stdout.take().context("its stdout")?);
    let server: SocketAddr = expect_line(&mut from_writer, "port")?
        .parse()
        .context("the writer's address")?;

    // The writer accepts while the connections are made: its backlog is short.
    writeln!(to_writer, "accept {sessions}")?;
    to_writer.flush()?;
    let sources = net::sources_needed(sessions, sys::ephemeral_ports());
    let mut streams = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let source = (sources > 1).then(|| net::source_for(i as u64, sources));
        streams.push(
            net::connect_from(server, source)
                .await
                .with_context(|| format!("connection {i} to the floor writer"))?,
        );
    }
    expect_line(&mut from_writer, "ready")?;

    // When each connection had each round's message.
    let arrivals: Vec<Arc<Mutex<Vec<u64>>>> = (0..sessions)
        .map(|_| Arc::new(Mutex::new(Vec::with_capacity(args.rounds))))
        .collect();
    let mut readers = tokio::task::JoinSet::new();
    for (mut stream, arrived) in streams.into_iter().zip(arrivals.iter().cloned()) {
        let bytes = args.bytes as u64;
        readers.spawn(async move {
            let mut buf = [0u8; 4096];
            let mut total = 0u64;
            let mut next_whole = bytes;
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
                let now = sys::mono_ns();
                let mut arrived = arrived.lock().unwrap_or_else(|p| p.into_inner());
                while total >= next_whole {
                    arrived.push(now);
                    next_whole += bytes;
                }
            }
        });
    }

    let writer_pid = child.0.id();
    let cpu = || (sys::cpu_time(writer_pid), sys::cpu_time(std::process::id()));
    let before = cpu();
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
    let mut started = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        tick.tick().await;
        started.push(sys::mono_ns());
        writeln!(to_writer, "go")?;
        to_writer.flush()?;
    }
    // The last round's messages are read within a tick; then the writer closes.
    tick.tick().await;
    let after = cpu();
    drop(to_writer);
    let _ = child.0.wait();
    while readers.join_next().await.is_some() {}

    let arrivals: Vec<Vec<u64>> = arrivals
        .iter()
        .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    let (latency, last, missing) = judge(&started, &arrivals);
    let spent = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    Ok(Measured {
        sessions,
        latency,
        last,
        missing,
        writer_cpu: spent(before.0, after.0),
        reader_cpu: spent(before.1, after.1),
    })
}

/// The writer child, killed if the measurement stops half-way (it may be blocked in
/// `accept` and never see its stdin close).
struct WriterProcess(std::process::Child);

impl Drop for WriterProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// From each round's start and each connection's arrival times (`CLOCK_MONOTONIC`, ns):
/// the latency of every delivery, per round the latency of the last connection, and how
/// many deliveries never came (all in µs).
fn judge(started: &[u64], arrivals: &[Vec<u64>]) -> (Histogram, Histogram, u64) {
    let rounds = started.len();
    let mut latency = Histogram::default();
    let mut last = vec![None::<u64>; rounds];
    let mut missing = 0;
    for arrived in arrivals {
        missing += rounds.saturating_sub(arrived.len()) as u64;
        for (round, at) in arrived.iter().take(rounds).enumerate() {
            let micros = at.saturating_sub(started[round]) / 1_000;
            latency.record(micros);
            last[round] = Some(last[round].map_or(micros, |l| l.max(micros)));
        }
    }
    let mut last_histogram = Histogram::default();
    for micros in last.into_iter().flatten() {
        last_histogram.record(micros);
    }
    (latency, last_histogram, missing)
}

/// Reads the writer's next line, which must be `word` (and returns what follows it).
fn expect_line(from: &mut std::io::BufReader<ChildStdout>, word: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    from.read_line(&mut line)
        .context("reading from the floor writer")?;
    match line.trim_end().split_once(' ') {
        Some((w, rest)) if w == word => Ok(rest.to_owned()),
        None if line.trim_end() == word => Ok(String::new()),
        _ => bail!("the floor writer said {line:?}, not {word}"),
    }
}

/// The writer: `port ADDR`, then `accept N` → `ready`, then one round per `go`, until its
/// stdin closes. Blocking sockets and plain threads: the least a server could do.
pub fn writer_main(bytes: usize, threads: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen")?;
    let stdin = std::io::stdin();
    let mut commands = stdin.lock().lines();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "port {}", listener.local_addr()?)?;
    stdout.flush()?;

    let line = commands.next().context("no accept command")??;
    let Some(count) = line.strip_prefix("accept ").and_then(|n| n.parse().ok()) else {
        bail!("expected 'accept N', got {line:?}");
    };
    let threads = threads.max(1);
    let mut shares: Vec<Vec<StdTcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..count {
        let (stream, _) = listener.accept().context("accept")?;
        shares[i % threads].push(stream);
    }
    writeln!(stdout, "ready")?;
    stdout.flush()?;

    let message = vec![b'x'; bytes];
    // Every round, the command thread and the writers meet at the barrier, then write.
    let barrier = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for mut share in shares {
        let barrier = barrier.clone();
        let message = message.clone();
        let done = done.clone();
        handles.push(std::thread::spawn(move || {
            loop {
                barrier.wait();
                if done.load(Ordering::Acquire) {
                    return;
                }
                for stream in &mut share {
                    // A failed connection is counted as missing by the reader.
                    let _ = stream.write_all(&message);
                }
            }
        }));
    }
    for line in commands {
        if line? == "go" {
            barrier.wait();
        }
    }
    done.store(true, Ordering::Release);
    barrier.wait();
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_is_judged_by_its_slowest_connection_and_gaps_are_missing() {
        let started = [1_000_000, 11_000_000];
        let arrivals = vec![
            vec![3_000_000, 12_000_000], // 2 ms, then 1 ms
            vec![5_000_000],             // 4 ms, then nothing
        ];
        let (latency, last, missing) = judge(&started, &arrivals);
        assert_eq!(latency.count(), 3);
        assert_eq!(latency.max(), Some(4_000));
        assert_eq!(last.count(), 2);
        assert_eq!(last.max(), Some(4_000));
        assert_eq!(last.summary_ms().map(|s| s.min), Some(1.0));
        assert_eq!(missing, 1);
    }
}
