//! Workers making random REST changes, and the view of tickets they choose from.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nextup_bench::api::{ApiError, ChangeAction, Priority, Status, Ticket, TicketAction};
use rand::rngs::SmallRng;
use rand::{RngExt, make_rng};
use uuid::Uuid;

use crate::{MAX_WAITING, Shared};

/// The tickets the workers know of, to pick actions that mostly make sense.
#[derive(Default)]
pub struct View {
    tickets: HashMap<Uuid, Known>,
    /// Ids by status; entries go stale and are dropped when picked.
    by_status: HashMap<Status, Vec<Uuid>>,
    waiting: usize,
}

#[derive(Clone, Copy)]
struct Known {
    status: Status,
    service: Uuid,
    updated: Instant,
}

const TERMINAL_KEPT: usize = 300;

impl View {
    fn set(&mut self, ticket: &Ticket) {
        let known = Known {
            status: ticket.status,
            service: ticket.service.id,
            updated: Instant::now(),
        };
        let old = self.tickets.insert(ticket.id, known);
        if old.map(|k| k.status) == Some(Status::Waiting) {
            self.waiting -= 1;
        }
        if ticket.status == Status::Waiting {
            self.waiting += 1;
        }
        if old.map(|k| k.status) == Some(ticket.status) {
            return;
        }
        if ticket.status == Status::Done {
            self.tickets.remove(&ticket.id);
            return;
        }
        let list = self.by_status.entry(ticket.status).or_default();
        list.push(ticket.id);
        if matches!(ticket.status, Status::NoShow | Status::Cancelled) && list.len() > TERMINAL_KEPT
        {
            let oldest = list.remove(0);
            if self.tickets.get(&oldest).map(|k| k.status) == Some(ticket.status) {
                self.tickets.remove(&oldest);
            }
        }
    }

    fn forget(&mut self, id: Uuid) {
        if let Some(known) = self.tickets.remove(&id)
            && known.status == Status::Waiting
        {
            self.waiting -= 1;
        }
    }

    /// A random ticket of one of `statuses`, with its service.
    fn pick(&mut self, statuses: &[Status], rng: &mut SmallRng) -> Option<(Uuid, Uuid)> {
        for _ in 0..8 {
            let status = statuses[rng.random_range(0..statuses.len())];
            let list = self.by_status.entry(status).or_default();
            if list.is_empty() {
                continue;
            }
            let i = rng.random_range(0..list.len());
            let id = list[i];
            match self.tickets.get(&id) {
                Some(known) if known.status == status => return Some((id, known.service)),
                _ => {
                    list.swap_remove(i);
                }
            }
        }
        None
    }
}

/// Every 10 s, re-reads the active tickets so that changes whose answer was lost (during
/// the outage) do not leave the workers' view stuck.
pub async fn resync_view(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let asked = Instant::now();
        let Ok(tickets) = shared.operator.tickets(None).await else {
            continue;
        };
        let mut view = shared.view.lock().unwrap();
        let listed: HashSet<Uuid> = tickets.iter().map(|t| t.id).collect();
        for ticket in &tickets {
            view.set(ticket);
        }
        let gone: Vec<Uuid> = view
            .tickets
            .iter()
            .filter(|(id, k)| {
                matches!(k.status, Status::Waiting | Status::Called | Status::Serving)
                    && k.updated < asked
                    && !listed.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            view.forget(id);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Issue,
    CallNext,
    Call,
    Act(TicketAction),
    Transfer,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Issue => "issue",
            Op::CallNext => "call-next",
            Op::Call => "call",
            Op::Act(action) => action.path(),
            Op::Transfer => "transfer",
        }
    }

    fn change(self) -> ChangeAction {
        match self {
            Op::Issue => ChangeAction::Issued,
            Op::CallNext | Op::Call => ChangeAction::Called,
            Op::Act(action) => action.change(),
            Op::Transfer => ChangeAction::Transferred,
        }
    }
}

const WEIGHTED_OPS: [(Op, u32); 10] = [
    (Op::Issue, 22),
    (Op::CallNext, 16),
    (Op::Call, 4),
    (Op::Act(TicketAction::Recall), 6),
    (Op::Act(TicketAction::Start), 14),
    (Op::Act(TicketAction::Finish), 14),
    (Op::Act(TicketAction::NoShow), 5),
    (Op::Act(TicketAction::Cancel), 5),
    (Op::Transfer, 5),
    (Op::Act(TicketAction::Reactivate), 5),
];

/// A 2xx change answered to a worker.
pub struct Recorded {
    pub ticket: Uuid,
    pub action: ChangeAction,
    pub started: Instant,
    pub latency: Duration,
}

/// A failed request.
pub struct Failure {
    pub op: &'static str,
    pub error: ApiError,
    /// The ticket it acted on (`None` for issue and call-next).
    pub ticket: Option<Uuid>,
    pub change: ChangeAction,
    pub started: Instant,
    pub latency: Duration,
}

#[derive(Default)]
pub struct WorkerLog {
    pub requests: u64,
    pub changes: Vec<Recorded>,
    pub failures: Vec<Failure>,
    pub nothing_waiting: u64,
}

pub async fn worker(n: usize, shared: Arc<Shared>) -> WorkerLog {
    let api = if n.is_multiple_of(2) {
        shared.admin.clone()
    } else {
        shared.operator.clone()
    };
    let mut rng: SmallRng = make_rng();
    let total: u32 = WEIGHTED_OPS.iter().map(|(_, w)| w).sum();
    let mut log = WorkerLog::default();
    while !shared.stop_workers.load(Ordering::SeqCst) {
        let mut roll = rng.random_range(0..total);
        let mut op = Op::Issue;
        for (candidate, weight) in WEIGHTED_OPS {
            if roll < weight {
                op = candidate;
                break;
            }
            roll -= weight;
        }
        let (op, ticket, service) = {
            let mut view = shared.view.lock().unwrap();
            let needs: &[Status] = match op {
                Op::Issue | Op::CallNext => &[],
                Op::Call => &[Status::Waiting],
                Op::Act(TicketAction::Recall | TicketAction::Start | TicketAction::NoShow) => {
                    &[Status::Called]
                }
                Op::Act(TicketAction::Finish) => &[Status::Serving],
                Op::Act(TicketAction::Cancel) => &[Status::Waiting, Status::Called],
                Op::Act(TicketAction::Reactivate) => &[Status::NoShow, Status::Cancelled],
                Op::Transfer => &[Status::Called, Status::Serving],
            };
            let picked = if needs.is_empty() {
                None
            } else {
                view.pick(needs, &mut rng)
            };
            match picked {
                Some((ticket, service)) => (op, Some(ticket), Some(service)),
                None if op == Op::Issue && view.waiting >= MAX_WAITING => {
                    (Op::CallNext, None, None)
                }
                None if needs.is_empty() => (op, None, None),
                None if view.waiting < MAX_WAITING => (Op::Issue, None, None),
                None => (Op::CallNext, None, None),
            }
        };
        let counter = shared.counters[rng.random_range(0..shared.counters.len())];
        let started = Instant::now();
        let result: Result<Option<Ticket>, ApiError> = match (op, ticket) {
            (Op::Issue, _) => {
                let service = shared.services[rng.random_range(0..shared.services.len())];
                let priority = if rng.random_bool(0.1) {
                    Priority::Priority
                } else {
                    Priority::Normal
                };
                api.issue(service, priority).await.map(Some)
            }
            (Op::CallNext, _) => api.call_next(counter, None).await,
            (Op::Call, Some(id)) => api.call(id, counter).await.map(Some),
            (Op::Act(action), Some(id)) => api.act(id, action).await.map(Some),
            (Op::Transfer, Some(id)) => {
                let others: Vec<Uuid> = shared
                    .services
                    .iter()
                    .copied()
                    .filter(|s| Some(*s) != service)
                    .collect();
                let to = others[rng.random_range(0..others.len())];
                api.transfer(id, to).await.map(Some)
            }
            _ => unreachable!("ticket actions always have a ticket"),
        };
        let latency = started.elapsed();
        log.requests += 1;
        match result {
            Ok(Some(answer)) => {
                shared.view.lock().unwrap().set(&answer);
                shared.ok_changes.fetch_add(1, Ordering::Relaxed);
                log.changes.push(Recorded {
                    ticket: answer.id,
                    action: op.change(),
                    started,
                    latency,
                });
            }
            Ok(None) => log.nothing_waiting += 1,
            Err(error) => {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(id) = ticket {
                    if error.is(409, "invalid_transition") {
                        if let Ok(now) = api.ticket(id).await {
                            shared.view.lock().unwrap().set(&now);
                        }
                    } else if error.is(404, "ticket_not_found") {
                        shared.view.lock().unwrap().forget(id);
                    }
                }
                log.failures.push(Failure {
                    op: op.name(),
                    error,
                    ticket,
                    change: op.change(),
                    started,
                    latency,
                });
            }
        }
        let think = shared.think.mul_f64(rng.random_range(0.0..2.0));
        tokio::time::sleep(think).await;
    }
    log
}
