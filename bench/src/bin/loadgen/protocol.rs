//! What the main process and its session workers say to each other: one JSON object per
//! line, a command on the worker's stdin and its reply on the worker's stdout.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::delivery::{ChangeRef, GroupDelivery};
use nextup_bench::histogram::SparseHistogram;

/// Where sessions connect: a full `ws://` URL and the address to dial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetSpec {
    pub url: String,
    pub addr: SocketAddr,
    /// The tenant's number in this run.
    pub tenant: u32,
    /// The group results are reported in (the server process).
    pub group: u32,
}

/// `count` sessions to `targets[target]`, from `source` when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenItem {
    pub target: u32,
    pub count: u32,
    pub source: Option<Ipv4Addr>,
}

/// The changes one tenant got in a measured stretch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantChanges {
    pub tenant: u32,
    pub changes: Vec<ChangeRef>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open sessions, all at once, and wait for each one's snapshot.
    Open {
        targets: Vec<TargetSpec>,
        items: Vec<OpenItem>,
        timeout_ms: u64,
    },
    /// Start a measured stretch: forget what was recorded and restart the clock.
    Window,
    /// How many live sessions of these tenants have not yet seen these seqs.
    Behind {
        targets: Vec<(u32, u64)>,
    },
    /// Judge what each session recorded since [`Command::Window`] against these changes
    /// (`changes` is how many the run made, over all tenants).
    Collect {
        changes: u32,
        tenants: Vec<TenantChanges>,
    },
    Status,
    Quit,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Opened {
        opened: u32,
        /// Opened and got their snapshot in time.
        ready: u32,
        /// Failed sessions by reason (`"429 too_many_sessions"`, `"connect: …"`).
        failures: BTreeMap<String, u64>,
        /// TCP connect + WebSocket handshake, in microseconds.
        handshake: SparseHistogram,
        /// Sessions opened, by target (a list: map keys must be strings in JSON).
        per_target: Vec<(u32, u64)>,
    },
    Window,
    Behind {
        sessions: u64,
    },
    Collected {
        groups: Vec<GroupDelivery>,
    },
    Status {
        sessions: u64,
        live: u64,
        /// How sessions that are no longer live ended (`"close 1013"`, `"broken"`).
        ends: BTreeMap<String, u64>,
        /// Frames the cheap envelope reader could not read (parsed fully instead).
        full_parses: u64,
        frames: u64,
    },
    Error {
        message: String,
    },
}
