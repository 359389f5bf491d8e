//! A session worker: a child process that holds WebSocket sessions for the main process and
//! records when each `ticket_update` arrives. Several workers split sessions that one
//! process could not hold (the open-files limit is per process). Commands come on stdin,
//! replies go to stdout (see `protocol.rs`).
//!
//! A session does as little as possible per frame: read the envelope from the end of the
//! text ([`envelope::peek`]), take the clock, push 8 bytes under an uncontended lock.
//! Protocol pings are answered by tungstenite while it reads.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use nextup_bench::api::ApiError;
use nextup_bench::histogram::Histogram;
use nextup_bench::session::{FrameKind, parse_frame};
use nextup_bench::{envelope, net, sys};

use crate::delivery::{GroupAcc, Record, TenantIndex};
use crate::protocol::{Command, OpenItem, Reply, TargetSpec};

/// Handshakes (TCP connect, then the WebSocket upgrade) give up after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct State {
    epoch_ns: u64,
    records: Vec<Record>,
    /// Highest seq seen (snapshot or change).
    last_seq: u64,
    end: Option<String>,
}

struct Slot {
    tenant: u32,
    group: u32,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    full_parses: AtomicU64,
}

struct Worker {
    slots: Vec<Slot>,
    epoch_ns: u64,
    counters: Arc<Counters>,
}

/// Small buffers: sessions read small messages, and a process holds thousands of them.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
}

pub fn main() -> anyhow::Result<()> {
    // The main process raised the limit already; children inherit it. Raise again in case
    // the worker was started by hand.
    let _ = sys::raise_file_limit(0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot build the worker's runtime")?;
    runtime.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut worker = Worker {
        slots: Vec::new(),
        epoch_ns: sys::mono_ns(),
        counters: Arc::new(Counters::default()),
    };
    while let Some(line) = lines.next_line().await? {
        let reply = match serde_json::from_str::<Command>(&line) {
            Ok(Command::Quit) => break,
            Ok(command) => worker.handle(command).await,
            Err(e) => Reply::Error {
                message: format!("bad command: {e}"),
            },
        };
        let mut text = serde_json::to_string(&reply)?;
        text.push('\n');
        stdout.write_all(text.as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}

impl Worker {
    async fn handle(&mut self, command: Command) -> Reply {
        match command {
            Command::Open {
                targets,
                items,
                timeout_ms,
            } => {
                self.open(&targets, &items, Duration::from_millis(timeout_ms))
                    .await
            }
            Command::Window => {
                self.epoch_ns = sys::mono_ns();
                for slot in &self.slots {
                    let mut state = slot.state.lock().expect("not poisoned");
                    state.epoch_ns = self.epoch_ns;
                    state.records.clear();
                }
                Reply::Window
            }
            Command::Behind { targets } => {
                let wanted: HashMap<u32, u64> = targets.into_iter().collect();
                let sessions = self
                    .slots
                    .iter()
                    .filter(|slot| {
                        let Some(&seq) = wanted.get(&slot.tenant) else {
                            return false;
                        };
                        let state = slot.state.lock().expect("not poisoned");
                        state.end.is_none() && state.last_seq < seq
                    })
                    .count() as u64;
                Reply::Behind { sessions }
            }
            Command::Collect { changes, tenants } => {
                let indexes: HashMap<u32, TenantIndex> = tenants
                    .iter()
                    .map(|t| (t.tenant, TenantIndex::new(&t.changes)))
                    .collect();
                let mut groups: BTreeMap<u32, GroupAcc> = BTreeMap::new();
                for slot in &self.slots {
                    let records =
                        std::mem::take(&mut slot.state.lock().expect("not poisoned").records);
                    groups
                        .entry(slot.group)
                        .or_insert_with(|| GroupAcc::new(slot.group, changes as usize))
                        .add_session(&records, self.epoch_ns, indexes.get(&slot.tenant));
                }
                Reply::Collected {
                    groups: groups.into_values().map(GroupAcc::finish).collect(),
                }
            }
            Command::Status => {
                let mut ends = BTreeMap::new();
                let mut live = 0;
                for slot in &self.slots {
                    match &slot.state.lock().expect("not poisoned").end {
                        None => live += 1,
                        Some(end) => *ends.entry(end.clone()).or_default() += 1,
                    }
                }
                Reply::Status {
                    sessions: self.slots.len() as u64,
                    live,
                    ends,
                    full_parses: self.counters.full_parses.load(Ordering::Relaxed),
                    frames: self.counters.frames.load(Ordering::Relaxed),
                }
            }
            Command::Quit => Reply::Error {
                message: "quit is handled by the loop".to_owned(),
            },
        }
    }

    async fn open(&mut self, targets: &[TargetSpec], items: &[OpenItem], wait: Duration) -> Reply {
        let mut set = JoinSet::new();
        for item in items {
            let Some(target) = targets.get(item.target as usize) else {
                return Reply::Error {
                    message: format!("no target {}", item.target),
                };
            };
            for _ in 0..item.count {
                let target = target.clone();
                let source = item.source;
                let epoch_ns = self.epoch_ns;
                let counters = self.counters.clone();
                let index = item.target;
                set.spawn(async move {
                    (
                        index,
                        open_one(target, source, epoch_ns, counters, wait).await,
                    )
                });
            }
        }
        let mut opened = 0;
        let mut ready = 0;
        let mut failures = BTreeMap::new();
        let mut handshake = Histogram::default();
        let mut per_target: BTreeMap<u32, u64> = BTreeMap::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((target, Ok(done))) => {
                    opened += 1;
                    *per_target.entry(target).or_default() += 1;
                    handshake.record(done.handshake_us);
                    if done.ready {
                        ready += 1;
                    } else {
                        *failures
                            .entry(format!("no snapshot within {} s", wait.as_secs()))
                            .or_default() += 1;
                    }
                    self.slots.push(done.slot);
                }
                Ok((_, Err(reason))) => *failures.entry(reason).or_default() += 1,
                Err(e) => *failures.entry(format!("task: {e}")).or_default() += 1,
            }
        }
        Reply::Opened {
            opened,
            ready,
            failures,
            handshake: handshake.to_sparse(),
            per_target: per_target.into_iter().collect(),
        }
    }
}

struct Opened {
    slot: Slot,
    handshake_us: u64,
    ready: bool,
}

async fn open_one(
    target: TargetSpec,
    source: Option<Ipv4Addr>,
    epoch_ns: u64,
    counters: Arc<Counters>,
    wait: Duration,
) -> Result<Opened, String> {
    let started = Instant::now();
    let ws = handshake(&target.url, target.addr, source).await?;
    let handshake_us = started.elapsed().as_micros() as u64;
    let state = Arc::new(Mutex::new(State {
        epoch_ns,
        ..State::default()
    }));
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(run_session(ws, state.clone(), counters, ready_tx));
    let ready = matches!(tokio::time::timeout(wait, ready_rx).await, Ok(Ok(())));
    Ok(Opened {
        slot: Slot {
            tenant: target.tenant,
            group: target.group,
            state,
        },
        handshake_us,
        ready,
    })
}

async fn handshake(
    url: &str,
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
) -> Result<WebSocketStream<TcpStream>, String> {
    let stream =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, net::connect_from(addr, source)).await {
            Err(_) => return Err("connect: timed out".to_owned()),
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Ok(Ok(stream)) => stream,
        };
    let request = url
        .into_client_request()
        .map_err(|e| format!("bad url: {e}"))?;
    let upgrade = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Err(_) => Err("handshake: timed out".to_owned()),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err(ApiError::from_body(response.status().as_u16(), body).key())
        }
        Ok(Err(e)) => Err(format!("handshake: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

async fn run_session(
    mut ws: WebSocketStream<TcpStream>,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let end = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let at = sys::mono_ns();
                counters.frames.fetch_add(1, Ordering::Relaxed);
                let (kind, seq) = envelope::peek(text.as_str()).unwrap_or_else(|| {
                    counters.full_parses.fetch_add(1, Ordering::Relaxed);
                    let frame = parse_frame(text.as_str(), Instant::now());
                    (frame.kind, frame.seq)
                });
                match (kind, seq) {
                    (FrameKind::TicketUpdate, Some(seq)) => {
                        let mut s = state.lock().expect("not poisoned");
                        let at_us = (at.saturating_sub(s.epoch_ns) / 1000).min(u64::from(u32::MAX));
                        s.records.push(Record {
                            seq: u32::try_from(seq).unwrap_or(u32::MAX),
                            at_us: at_us as u32,
                        });
                        s.last_seq = s.last_seq.max(seq);
                    }
                    (FrameKind::Snapshot, seq) => {
                        if let Some(seq) = seq {
                            let mut s = state.lock().expect("not poisoned");
                            s.last_seq = s.last_seq.max(seq);
                        }
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or("close 1005".to_owned(), |f| {
                    format!("close {}", u16::from(f.code))
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("broken: {e}"),
            None => break "ended".to_owned(),
        }
    };
    state.lock().expect("not poisoned").end = Some(end);
}
