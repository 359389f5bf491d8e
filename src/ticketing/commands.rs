use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Error;
use crate::db;
use crate::db::Entity;
use crate::db::events::EventRow;
use crate::db::queue::{QueueChanges, ServiceCount, WaitingPlace};
use crate::db::tenants::Tenant;
use crate::db::tickets::{CallNextAt, NextCall, StatusChange, StatusChangeOutcome, TicketRecord};
use crate::domain::batch::{QueueMove, behind_at_own_seq};
use crate::domain::call_order::{CallOrder, ahead_from_counts};
use crate::domain::ids::{CounterId, ServiceId, TicketId, UserId};
use crate::domain::ticket::{
    Action, EventAction, Priority, Status, sources, transition, waiting_delta,
};
use crate::ticketing::paces::{PaceCache, Paces};
use crate::views::{OperatorTicket, service_summaries};

/// A ticket change as committed: the ticket right after it, and its event.
#[derive(Debug, Clone)]
pub struct Change {
    pub ticket: OperatorTicket,
    pub event: EventRow,
}

/// A change written in the transaction whose event is not appended yet: the ticket as the
/// change left it, what happened, and when. [`record_changes`] appends the events.
#[derive(Debug, Clone)]
pub struct Pending {
    pub record: TicketRecord,
    pub action: EventAction,
    pub previous: Option<Status>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct IssueTicket {
    pub service: ServiceId,
    pub priority: Priority,
    pub customer_name: Option<String>,
    /// Refused (`queue_full`) when its service already has this many waiting tickets;
    /// `None` for no limit (an operator's issue).
    pub waiting_limit: Option<u32>,
}

/// Calls the next waiting ticket of `services` (all services when `None`) to the counter;
/// `None` when nobody is waiting.
pub async fn call_next(
    conn: &mut PgConnection,
    tenant: &Tenant,
    counter: CounterId,
    services: Option<Vec<ServiceId>>,
    operator: UserId,
    now: DateTime<Utc>,
) -> Result<Option<Pending>, Error> {
    let services: Option<Vec<uuid::Uuid>> = match services {
        Some(wanted) if wanted.is_empty() => {
            return Err(Error::NoServicesNamed);
        }
        wanted => wanted.map(|ids| ids.into_iter().map(ServiceId::get).collect()),
    };
    let next = db::tickets::call_next_waiting(
        conn,
        tenant.id,
        counter,
        services.as_deref(),
        operator,
        now,
    )
    .await?;
    called(next, now)
}

/// Call-nexts from all services at distinct counters, in one round trip. The outer error
/// is the database's, and fails the batch (a counter another process called to at the same
/// moment fails the statement too); the inner ones answer single calls, in the order given.
pub async fn call_next_many(
    conn: &mut PgConnection,
    tenant: &Tenant,
    calls: &[CallNextAt],
) -> Result<Vec<Result<Option<Pending>, Error>>, Error> {
    let found = db::tickets::call_next_many(conn, tenant.id, calls).await?;
    Ok(found
        .into_iter()
        .zip(calls)
        .map(|(next, call)| called(next, call.now))
        .collect())
}

/// The answer to a call-next from what it found.
fn called(next: NextCall, now: DateTime<Utc>) -> Result<Option<Pending>, Error> {
    // Call-next takes waiting tickets only.
    let previous = Status::Waiting;
    transition(previous, Action::Call)?;
    match next {
        NextCall::NoCounter => Err(Error::NotFound(Entity::Counter)),
        NextCall::CounterBusy => Err(Error::CounterBusy),
        NextCall::UnknownService => Err(Error::NotFound(Entity::Service)),
        NextCall::NobodyWaiting => Ok(None),
        NextCall::Called(record) => Ok(Some(Pending {
            record: *record,
            action: EventAction::Called,
            previous: Some(previous),
            now,
        })),
    }
}

/// Calls this waiting ticket to the counter, out of order.
pub async fn call_ticket(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    counter: CounterId,
    operator: UserId,
    now: DateTime<Utc>,
) -> Result<Pending, Error> {
    let counter = db::counters::lock_counter(conn, tenant.id, counter).await?;
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(Error::NotFound(Entity::Ticket))?;
    transition(ticket.status, Action::Call)?;
    if counter.busy {
        return Err(Error::CounterBusy);
    }
    Ok(Pending {
        record: db::tickets::mark_called(conn, ticket.id, counter.id, operator, now).await?,
        action: EventAction::Called,
        previous: Some(ticket.status),
        now,
    })
}

/// Applies one of the actions that need nothing but the ticket: recall, start, finish,
/// no-show, cancel and reactivate.
pub async fn act(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Pending, Error> {
    if is_status_change(action) {
        let mut answers = set_statuses(conn, tenant, &[StatusAct { id, action, now }]).await?;
        return answers
            .pop()
            .unwrap_or_else(|| Err(Error::unexpected(anyhow::anyhow!("a change got no answer"))));
    }
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(Error::NotFound(Entity::Ticket))?;
    transition(ticket.status, action)?;
    let record = match action {
        Action::Recall => db::tickets::mark_recalled(conn, id, now).await?,
        Action::Reactivate => db::tickets::requeue(conn, id, ticket.service_id).await?,
        _ => {
            return Err(Error::unexpected(anyhow::anyhow!(
                "{action:?} needs a counter or a service; it has its own command"
            )));
        }
    };
    Ok(Pending {
        record,
        action: action.event(),
        previous: Some(ticket.status),
        now,
    })
}

/// Start, finish, no-show and cancel: each leads to one status from the statuses it applies
/// to (the domain's transitions), so [`set_statuses`] checks and changes many tickets in one
/// statement.
pub fn is_status_change(action: Action) -> bool {
    matches!(
        action,
        Action::Start | Action::Finish | Action::NoShow | Action::Cancel
    )
}

/// A start, finish, no-show or cancel of one ticket.
pub struct StatusAct {
    pub id: TicketId,
    pub action: Action,
    pub now: DateTime<Utc>,
}

/// Applies status changes to distinct tickets in one round trip. The outer error is the
/// database's; the inner ones answer single changes, in the order given.
pub async fn set_statuses(
    conn: &mut PgConnection,
    tenant: &Tenant,
    acts: &[StatusAct],
) -> Result<Vec<Result<Pending, Error>>, Error> {
    let mut changes = Vec::with_capacity(acts.len());
    for act in acts {
        let from = sources(act.action);
        let to = from
            .first()
            .and_then(|first| transition(*first, act.action).ok())
            .filter(|_| is_status_change(act.action))
            .ok_or_else(|| {
                Error::unexpected(anyhow::anyhow!("{:?} is no status change", act.action))
            })?;
        changes.push(StatusChange {
            id: act.id,
            from,
            to,
            now: act.now,
        });
    }
    let found = db::tickets::set_statuses_from(conn, tenant.id, &changes).await?;
    Ok(found
        .into_iter()
        .zip(acts)
        .map(|(outcome, act)| match outcome {
            StatusChangeOutcome::Missing => Err(Error::NotFound(Entity::Ticket)),
            StatusChangeOutcome::Refused(status) => {
                transition(status, act.action)?;
                Err(Error::unexpected(anyhow::anyhow!(
                    "{:?} was refused from {status:?}, which it applies to",
                    act.action
                )))
            }
            StatusChangeOutcome::Changed { previous, record } => Ok(Pending {
                record: *record,
                action: act.action.event(),
                previous: Some(previous),
                now: act.now,
            }),
        })
        .collect())
}

/// Moves a called or serving ticket to the waiting queue of another service, keeping its
/// code and original issue time.
pub async fn transfer(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    target: ServiceId,
    now: DateTime<Utc>,
) -> Result<Pending, Error> {
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(Error::NotFound(Entity::Ticket))?;
    transition(ticket.status, Action::Transfer)?;
    let target = db::services::get_service(conn, tenant.id, target).await?;
    if target.id == ticket.service_id {
        return Err(Error::SameService);
    }
    if !target.active {
        return Err(Error::ServiceInactive);
    }
    Ok(Pending {
        record: db::tickets::requeue(conn, id, target.id).await?,
        action: EventAction::Transferred,
        previous: Some(ticket.status),
        now,
    })
}

/// Appends the events of changes made in this transaction, in the order given, and returns
/// them with the tickets as their events show them.
///
/// Taking the seqs locks the tenant's sequence row until commit and serialises the
/// tenant's writers, so it comes last: the tickets are written (and locked) already, and the
/// services' paces are read before. Under the lock: the waiting counts (moved by these
/// changes and read with every change of smaller seq, so each event describes the queue
/// exactly at its seq), the events, and the commit: three round trips after the lock is
/// taken, however many changes there are. The counts and places read once after all
/// changes are walked back to each change's own seq.
pub async fn record_changes(
    conn: &mut PgConnection,
    tenant: &Tenant,
    pending: Vec<Pending>,
    paces: &PaceCache,
) -> Result<Vec<Change>, Error> {
    let Some(latest) = pending.iter().map(|p| p.now).max() else {
        return Ok(Vec::new());
    };
    let paces = paces.for_tenant(conn, tenant.id, latest).await?;
    let mut moves = Vec::with_capacity(pending.len());
    for p in &pending {
        let status: Status = p.record.status.parse().map_err(Error::unexpected)?;
        let priority: Priority = p.record.priority.parse().map_err(Error::unexpected)?;
        moves.push(QueueMove {
            ticket: p.record.id,
            class: (p.record.service_id, priority),
            place: CallOrder::new(priority, p.record.created_at, p.record.id),
            delta: waiting_delta(p.previous, status),
            waiting: status == Status::Waiting,
        });
    }

    let count = pending.len();
    let last_seq = db::events::take_seqs(conn, tenant.id, count as i64).await?;
    let waiting: Vec<WaitingPlace> = moves
        .iter()
        .filter(|m| m.waiting)
        .map(|m| WaitingPlace {
            ticket: m.ticket.get(),
            service: m.class.0,
            priority: m.class.1,
            created_at: m.place.created_at,
        })
        .collect();
    let (mut counts, behind_waiting) = db::queue::count_changes(
        conn,
        tenant.id,
        QueueChanges {
            moved: &moved_per_service(&moves),
            waiting: &waiting,
        },
    )
    .await?;
    let mut behind_waiting = behind_waiting.into_iter();
    let behind_after: Vec<u32> = moves
        .iter()
        .map(|m| {
            if m.waiting {
                behind_waiting.next().unwrap_or_default()
            } else {
                0
            }
        })
        .collect();
    let behind = behind_at_own_seq(&moves, &behind_after);

    // Walk back from the last seq, undoing each change in the counts after its event.
    let mut changes = Vec::with_capacity(count);
    for (k, p) in pending.into_iter().enumerate().rev() {
        let m = &moves[k];
        let change = change_at(
            p.record,
            ChangeAt {
                seq: last_seq - (count - 1 - k) as i64,
                action: p.action,
                previous: p.previous,
                counts: counts.clone(),
                behind: behind[k],
                paces: &paces,
                now: p.now,
            },
        )?;
        changes.push(change);
        if let Some(service) = counts.iter_mut().find(|c| c.id == m.class.0) {
            service.waiting = service.waiting.before(m.class.1, m.delta);
        }
    }
    changes.reverse();
    let events: Vec<&EventRow> = changes.iter().map(|c| &c.event).collect();
    let tickets: Vec<uuid::Uuid> = moves.iter().map(|m| m.ticket.get()).collect();
    db::events::insert_events(conn, tenant.id, &events, &tickets).await?;
    Ok(changes)
}

/// Per service, how the changes moved its (normal, priority) waiting counts.
fn moved_per_service(moves: &[TicketMove]) -> Vec<(ServiceId, i32, i32)> {
    let mut moved: Vec<(ServiceId, i32, i32)> = Vec::new();
    for m in moves.iter().filter(|m| m.delta != 0) {
        let (service, priority) = m.class;
        let at = match moved.iter().position(|(s, _, _)| *s == service) {
            Some(at) => at,
            None => {
                moved.push((service, 0, 0));
                moved.len() - 1
            }
        };
        match priority {
            Priority::Normal => moved[at].1 += m.delta,
            Priority::Priority => moved[at].2 += m.delta,
        }
    }
    moved
}

type TicketMove = QueueMove<TicketId, (ServiceId, Priority), CallOrder<TicketId>>;

/// Where a change lands in the tenant's log: its seq, and the waiting counts right after it.
pub struct ChangeAt<'a> {
    pub seq: i64,
    pub action: EventAction,
    pub previous: Option<Status>,
    /// Every service's waiting counts with this change applied.
    pub counts: Vec<ServiceCount>,
    /// Tickets of the changed ticket's class queued behind it (0 when it is not waiting).
    pub behind: u32,
    pub paces: &'a Paces,
    pub now: DateTime<Utc>,
}

/// The ticket view and the event of a change: what the log stores, the caller gets and
/// sessions are sent.
pub fn change_at(record: TicketRecord, at: ChangeAt<'_>) -> Result<Change, Error> {
    let status: Status = record.status.parse().map_err(Error::unexpected)?;
    let priority: Priority = record.priority.parse().map_err(Error::unexpected)?;
    let ahead = (status == Status::Waiting).then(|| {
        let service = at.counts.iter().find(|c| c.id == record.service_id);
        ahead_from_counts(
            priority,
            service.map(|c| c.waiting).unwrap_or_default(),
            at.behind,
        )
    });
    let loads = db::queue::with_paces(at.counts, at.paces);
    let ticket = OperatorTicket::from_record(record, ahead, &loads)?;
    let event = EventRow {
        seq: at.seq,
        action: at.action.as_str().to_owned(),
        previous_status: at.previous.map(|s| s.as_str().to_owned()),
        ticket: serde_json::to_value(&ticket).map_err(Error::unexpected)?,
        queue: serde_json::to_value(service_summaries(&loads)).map_err(Error::unexpected)?,
        created_at: at.now,
    };
    Ok(Change { ticket, event })
}
