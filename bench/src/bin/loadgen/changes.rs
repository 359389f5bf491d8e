//! Making changes at a steady pace and learning their `seq`s.
//!
//! Each tenant has a [`Desk`] that cycles issue → call-next → start → finish through REST,
//! one request at a time (the desk is locked while its request runs), so every request is
//! one change. The response does not carry the change's `seq`; afterwards the tenant's event
//! log (`GET …/events?since=<seq before>`) gives it, matched by ticket id and action, which
//! stays right even if someone else changes the tenant meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use tokio::sync::Mutex;
use uuid::Uuid;

use nextup_bench::api::{Api, ApiError, ChangeAction, Priority};
use nextup_bench::session::{Frame, FrameKind};
use nextup_bench::sys;

use crate::delivery::ChangeRef;
use crate::protocol::TenantChanges;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Issue,
    Call,
    Start,
    Finish,
}

/// One tenant's operator at one counter, cycling a ticket through its life.
pub struct Desk {
    api: Api,
    service: Uuid,
    counter: Uuid,
    step: Step,
    ticket: Option<Uuid>,
}

/// One request that was meant to change a ticket.
#[derive(Debug, Clone)]
pub struct Made {
    pub tenant: u32,
    /// When the request was sent ([`sys::mono_ns`]).
    pub sent_ns: u64,
    pub latency: Duration,
    /// The ticket and the change, or why there was none (an error key).
    pub outcome: Result<(Uuid, ChangeAction), String>,
}

impl Desk {
    pub fn new(api: Api, service: Uuid, counter: Uuid) -> Self {
        Self {
            api,
            service,
            counter,
            step: Step::Issue,
            ticket: None,
        }
    }

    /// Sends the next request of the cycle.
    pub async fn next(&mut self, tenant: u32) -> Made {
        let sent_ns = sys::mono_ns();
        let started = Instant::now();
        let result: Result<(Uuid, ChangeAction), ApiError> = match (self.step, self.ticket) {
            (Step::Issue, _) | (_, None) => self
                .api
                .issue(self.service, Priority::Normal)
                .await
                .map(|t| (t.id, ChangeAction::Issued)),
            (Step::Call, _) => match self.api.call_next(self.counter, None).await {
                Ok(Some(t)) => Ok((t.id, ChangeAction::Called)),
                Ok(None) => Err(ApiError {
                    status: Some(204),
                    code: "nothing_waiting".to_owned(),
                    message: "call-next found no waiting ticket".to_owned(),
                }),
                Err(e) => Err(e),
            },
            (Step::Start, Some(id)) => self
                .api
                .start(id)
                .await
                .map(|t| (t.id, ChangeAction::Started)),
            (Step::Finish, Some(id)) => self
                .api
                .finish(id)
                .await
                .map(|t| (t.id, ChangeAction::Finished)),
        };
        let latency = started.elapsed();
        match &result {
            Ok((id, action)) => {
                self.ticket = Some(*id);
                self.step = match action {
                    ChangeAction::Issued => Step::Call,
                    ChangeAction::Called => Step::Start,
                    ChangeAction::Started => Step::Finish,
                    _ => Step::Issue,
                };
            }
            // Nothing waits any more (someone else called it): issue again.
            Err(e) if e.status == Some(204) => self.step = Step::Issue,
            Err(_) => {}
        }
        Made {
            tenant,
            sent_ns,
            latency,
            outcome: result.map_err(|e| e.key()),
        }
    }
}

/// Makes `count` changes, one every `interval`, to the tenant `pick` names each time.
/// A change waits while its tenant's previous request runs, and is timed from when it is
/// actually sent. Returns them in the order they were started.
pub async fn drive(
    desks: &Arc<Vec<Mutex<Desk>>>,
    count: usize,
    interval: Duration,
    mut pick: impl FnMut() -> usize,
) -> Vec<Made> {
    let mut tick = tokio::time::interval(interval.max(Duration::from_micros(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        tick.tick().await;
        let tenant = pick();
        let desks = desks.clone();
        tasks.push(tokio::spawn(async move {
            let mut desk = desks[tenant].lock().await;
            desk.next(tenant as u32).await
        }));
    }
    join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.expect("a change task does not panic"))
        .collect()
}

/// REST latencies (ms) of the successful changes, and errors by key.
pub fn rest_figures(made: &[Made]) -> (Vec<Duration>, BTreeMap<String, u64>) {
    let mut ok = Vec::new();
    let mut errors = BTreeMap::new();
    for m in made {
        match &m.outcome {
            Ok(_) => ok.push(m.latency),
            Err(key) => *errors.entry(key.clone()).or_default() += 1,
        }
    }
    (ok, errors)
}

/// The `seq` of each successful change of one tenant, from its event log (the
/// `ticket_update` frames of `GET …/events`). `None` for a change the log does not show.
pub fn assign_seqs(made: &[&Made], log: &[Frame]) -> Vec<Option<u64>> {
    let by_change: HashMap<(Uuid, ChangeAction), u64> = log
        .iter()
        .filter(|f| f.kind == FrameKind::TicketUpdate)
        .filter_map(|f| Some(((f.ticket?, f.action?), f.seq?)))
        .collect();
    made.iter()
        .map(|m| {
            m.outcome
                .as_ref()
                .ok()
                .and_then(|key| by_change.get(key).copied())
        })
        .collect()
}

/// What the seq lookup gave, over all tenants.
#[derive(Debug, Default)]
pub struct Assigned {
    pub tenants: Vec<TenantChanges>,
    /// Successful changes the log did not show.
    pub unassigned: u64,
    /// The highest seq per tenant (what every session must reach).
    pub last_seq: BTreeMap<u32, u64>,
}

/// Reads each touched tenant's log after `base[tenant]` and gives every successful change
/// its seq. `apis[tenant]` reads the log.
pub async fn assign_all(made: &[Made], apis: &[Api], base: &[u64]) -> anyhow::Result<Assigned> {
    let mut by_tenant: BTreeMap<u32, Vec<(u32, &Made)>> = BTreeMap::new();
    for (i, m) in made.iter().enumerate() {
        if m.outcome.is_ok() {
            by_tenant.entry(m.tenant).or_default().push((i as u32, m));
        }
    }
    let touched: Vec<u32> = by_tenant.keys().copied().collect();
    let reads = touched.into_iter().map(|t| {
        let api = apis[t as usize].clone();
        let since = base[t as usize];
        async move { (t, api.events(since).await) }
    });
    let mut logs = HashMap::new();
    let mut results = stream::iter(reads).buffer_unordered(16);
    while let Some((t, result)) = results.next().await {
        let events = result.map_err(|e| anyhow::anyhow!("GET events of tenant {t}: {e}"))?;
        logs.insert(t, events.frames);
    }
    let mut assigned = Assigned::default();
    for (tenant, changes) in by_tenant {
        let log = logs.remove(&tenant).unwrap_or_default();
        let refs: Vec<&Made> = changes.iter().map(|(_, m)| *m).collect();
        let seqs = assign_seqs(&refs, &log);
        let mut list = Vec::new();
        for ((index, m), seq) in changes.iter().zip(seqs) {
            match seq {
                Some(seq) => list.push(ChangeRef {
                    index: *index,
                    seq,
                    sent_ns: m.sent_ns,
                }),
                None => assigned.unassigned += 1,
            }
        }
        if let Some(last) = list.iter().map(|c| c.seq).max() {
            assigned.last_seq.insert(tenant, last);
        }
        assigned.tenants.push(TenantChanges {
            tenant,
            changes: list,
        });
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(ticket: Uuid, action: ChangeAction) -> Made {
        Made {
            tenant: 0,
            sent_ns: 0,
            latency: Duration::from_millis(1),
            outcome: Ok((ticket, action)),
        }
    }

    fn logged(seq: u64, ticket: Uuid, action: ChangeAction) -> [Frame; 2] {
        let frame = Frame {
            at: Instant::now(),
            kind: FrameKind::TicketUpdate,
            seq: Some(seq),
            ticket: Some(ticket),
            action: Some(action),
            hello_seq: None,
        };
        [
            frame,
            Frame {
                kind: FrameKind::QueueUpdate,
                ticket: None,
                action: None,
                ..frame
            },
        ]
    }

    #[test]
    fn changes_get_their_seq_by_ticket_and_action_whatever_the_order() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let changes = [
            made(a, ChangeAction::Issued),
            made(a, ChangeAction::Called),
            made(b, ChangeAction::Issued),
            Made {
                outcome: Err("409 counter_busy".to_owned()),
                ..made(b, ChangeAction::Called)
            },
            made(b, ChangeAction::Started),
        ];
        // Seq 12 was someone else's; b's issue committed before a's call.
        let log: Vec<Frame> = [
            logged(10, a, ChangeAction::Issued),
            logged(11, b, ChangeAction::Issued),
            logged(12, Uuid::from_u128(3), ChangeAction::Issued),
            logged(13, a, ChangeAction::Called),
        ]
        .into_iter()
        .flatten()
        .collect();
        let refs: Vec<&Made> = changes.iter().collect();
        assert_eq!(
            assign_seqs(&refs, &log),
            vec![Some(10), Some(13), Some(11), None, None]
        );
    }

    #[test]
    fn rest_figures_split_successes_from_errors() {
        let a = Uuid::from_u128(1);
        let changes = [
            made(a, ChangeAction::Issued),
            Made {
                outcome: Err("503 database_unavailable".to_owned()),
                ..made(a, ChangeAction::Called)
            },
        ];
        let (ok, errors) = rest_figures(&changes);
        assert_eq!(ok.len(), 1);
        assert_eq!(errors.get("503 database_unavailable"), Some(&1));
    }
}
