//! The main process's side of the session workers: starting them, spreading sessions over
//! them (and over loopback source addresses), and adding up what they report.

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{Context, bail};
use futures_util::future::join_all;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use nextup_bench::histogram::Histogram;
use nextup_bench::net;

use crate::delivery::GroupDelivery;
use crate::protocol::{Command, OpenItem, Reply, TargetSpec, TenantChanges};

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    sessions: u64,
}

impl Worker {
    async fn ask(&mut self, command: &Command) -> anyhow::Result<Reply> {
        let mut text = serde_json::to_string(command)?;
        text.push('\n');
        self.stdin
            .write_all(text.as_bytes())
            .await
            .context("a session worker stopped taking commands")?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .context("a session worker exited")?;
        match serde_json::from_str(&line)? {
            Reply::Error { message } => bail!("session worker: {message}"),
            reply => Ok(reply),
        }
    }
}

/// What opening a batch of sessions gave.
#[derive(Debug, Default)]
pub struct Opened {
    pub opened: u64,
    pub ready: u64,
    pub failures: BTreeMap<String, u64>,
    /// Microseconds.
    pub handshake: Histogram,
    /// Sessions opened per target.
    pub per_target: BTreeMap<u32, u64>,
}

impl Opened {
    pub fn add(&mut self, other: Opened) {
        self.opened += other.opened;
        self.ready += other.ready;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.handshake.merge(&other.handshake);
        for (k, v) in other.per_target {
            *self.per_target.entry(k).or_default() += v;
        }
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

#[derive(Debug, Default)]
pub struct Status {
    pub sessions: u64,
    pub live: u64,
    pub ends: BTreeMap<String, u64>,
    pub full_parses: u64,
    pub frames: u64,
}

pub struct Fleet {
    workers: Vec<Worker>,
    /// Sessions one worker may hold.
    capacity: u64,
    /// Loopback source addresses to spread over (`None`: let the kernel choose).
    sources: Option<usize>,
    /// Sessions opened so far (numbers the next one, for its source address).
    next_index: u64,
}

impl Fleet {
    /// Starts `count` workers (this binary's hidden `session-worker` command).
    pub async fn start(
        count: usize,
        capacity: u64,
        sources: Option<usize>,
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe().context("cannot find this program's path")?;
        let mut workers = Vec::new();
        for _ in 0..count.max(1) {
            let mut child = Process::new(&exe)
                .arg("session-worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a session worker")?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            workers.push(Worker {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
                sessions: 0,
            });
        }
        Ok(Fleet {
            workers,
            capacity,
            sources,
            next_index: 0,
        })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Opens `plan` sessions (target index and count), all at once, spread round-robin over
    /// the workers and the source addresses.
    pub async fn open(
        &mut self,
        targets: &[TargetSpec],
        plan: &[(u32, u64)],
        timeout_ms: u64,
    ) -> anyhow::Result<Opened> {
        let total: u64 = plan.iter().map(|(_, n)| n).sum();
        let room = self.capacity * self.workers.len() as u64
            - self.workers.iter().map(|w| w.sessions).sum::<u64>();
        if total > room {
            bail!(
                "{total} more sessions do not fit in {} session worker(s) of {} sessions each \
                 (the open-files limit); use --session-procs",
                self.workers.len(),
                self.capacity
            );
        }
        let mut items: Vec<BTreeMap<(u32, Option<std::net::Ipv4Addr>), u32>> =
            vec![BTreeMap::new(); self.workers.len()];
        let mut per_worker = vec![0u64; self.workers.len()];
        for &(target, count) in plan {
            for _ in 0..count {
                let index = self.next_index;
                self.next_index += 1;
                // The least loaded worker, so that earlier batches even out.
                let w = (0..self.workers.len())
                    .min_by_key(|&w| self.workers[w].sessions + per_worker[w])
                    .expect("at least one worker");
                per_worker[w] += 1;
                let source = self.sources.map(|k| net::source_for(index, k));
                *items[w].entry((target, source)).or_default() += 1;
            }
        }
        let asks = self
            .workers
            .iter_mut()
            .zip(items)
            .filter(|(_, items)| !items.is_empty())
            .map(|(worker, items)| {
                let items: Vec<OpenItem> = items
                    .into_iter()
                    .map(|((target, source), count)| OpenItem {
                        target,
                        count,
                        source,
                    })
                    .collect();
                let command = Command::Open {
                    targets: targets.to_vec(),
                    items,
                    timeout_ms,
                };
                async move {
                    let reply = worker.ask(&command).await?;
                    let Reply::Opened {
                        opened,
                        ready,
                        failures,
                        handshake,
                        per_target,
                    } = reply
                    else {
                        bail!("unexpected reply to open: {reply:?}");
                    };
                    worker.sessions += u64::from(opened);
                    Ok(Opened {
                        opened: u64::from(opened),
                        ready: u64::from(ready),
                        failures,
                        handshake: Histogram::from_sparse(&handshake),
                        per_target: per_target.into_iter().collect(),
                    })
                }
            });
        let mut total = Opened::default();
        for result in join_all(asks).await {
            total.add(result?);
        }
        Ok(total)
    }

    async fn ask_all(&mut self, command: &Command) -> anyhow::Result<Vec<Reply>> {
        join_all(self.workers.iter_mut().map(|w| w.ask(command)))
            .await
            .into_iter()
            .collect()
    }

    pub async fn window(&mut self) -> anyhow::Result<()> {
        self.ask_all(&Command::Window).await.map(drop)
    }

    /// Live sessions of these tenants that have not yet seen these seqs.
    pub async fn behind(&mut self, targets: &[(u32, u64)]) -> anyhow::Result<u64> {
        let command = Command::Behind {
            targets: targets.to_vec(),
        };
        let mut behind = 0;
        for reply in self.ask_all(&command).await? {
            match reply {
                Reply::Behind { sessions } => behind += sessions,
                other => bail!("unexpected reply to behind: {other:?}"),
            }
        }
        Ok(behind)
    }

    /// What every session received since the last window, per group.
    pub async fn collect(
        &mut self,
        changes: u32,
        tenants: Vec<TenantChanges>,
    ) -> anyhow::Result<BTreeMap<u32, GroupDelivery>> {
        let command = Command::Collect { changes, tenants };
        let mut groups: BTreeMap<u32, GroupDelivery> = BTreeMap::new();
        for reply in self.ask_all(&command).await? {
            let Reply::Collected { groups: part } = reply else {
                bail!("unexpected reply to collect: {reply:?}");
            };
            for g in part {
                groups
                    .entry(g.group)
                    .or_insert_with(|| GroupDelivery {
                        group: g.group,
                        ..GroupDelivery::default()
                    })
                    .merge(&g);
            }
        }
        Ok(groups)
    }

    pub async fn status(&mut self) -> anyhow::Result<Status> {
        let mut total = Status::default();
        for reply in self.ask_all(&Command::Status).await? {
            let Reply::Status {
                sessions,
                live,
                ends,
                full_parses,
                frames,
            } = reply
            else {
                bail!("unexpected reply to status: {reply:?}");
            };
            total.sessions += sessions;
            total.live += live;
            total.full_parses += full_parses;
            total.frames += frames;
            for (k, v) in ends {
                *total.ends.entry(k).or_default() += v;
            }
        }
        Ok(total)
    }

    /// Tells every worker to quit (closing its sockets by exiting) and waits for them.
    pub async fn quit(mut self) {
        for worker in &mut self.workers {
            let _ = worker.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
            let _ = worker.stdin.flush().await;
        }
        for worker in &mut self.workers {
            let wait =
                tokio::time::timeout(std::time::Duration::from_secs(10), worker.child.wait());
            if wait.await.is_err() {
                let _ = worker.child.kill().await;
            }
        }
    }
}
