use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Error;
use crate::db;
use crate::db::Entity;
use crate::db::events::EventRow;
use crate::db::queue::{QueueChanges, ServiceCount, WaitingPlace};
use crate::db::tenants::Tenant;
use crate::db::tickets::{
    CallNextAt, NextCall, Requeue, StatusChange, StatusChangeOutcome, TicketRecord,
};
use crate::domain::batch::{QueueMove, behind_at_own_seq};
use crate::domain::call_order::{CallOrder, Turn, ahead_from_counts};
use crate::domain::ids::{CounterId, ServiceId, TenantId, TicketId, UserId};
use crate::domain::ticket::{
    Action, EventAction, Priority, Status, close_day_change, recall_under_limit, sources,
    transition, waiting_delta,
};
use crate::ticketing::paces::{PaceCache, Paces};
use crate::views::{CommittedChange, OperatorTicket, service_summaries};

/// A ticket change as committed: the ticket right after it, and the change as the log
/// stores it and the hubs send it.
#[derive(Debug, Clone)]
pub struct Change {
    pub ticket: OperatorTicket,
    pub event: CommittedChange,
}

/// A change written in the transaction whose event is not appended yet: the ticket as the
/// change left it, what happened, and when. [`record_changes`] appends the events.
#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant: TenantId,
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
    /// Refused (`closed`) while the tenant is closed (a public issue); an operator may
    /// issue at any time.
    pub only_while_open: bool,
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
        tenant.call_rules(now),
    )
    .await?;
    called(next, tenant.id, now)
}

/// Call-nexts from all services at distinct counters (of any tenants), in one round trip.
/// The outer error is the database's, and fails the batch (a counter another process
/// called to at the same moment fails the statement too); the inner ones answer single
/// calls, in the order given, each with its counter's turn (the calls on a fair turn were
/// served first: see `db::tickets::call_next_many`).
pub async fn call_next_many(
    conn: &mut PgConnection,
    calls: &[CallNextAt],
) -> Result<Vec<(Result<Option<Pending>, Error>, Turn)>, Error> {
    let found = db::tickets::call_next_many(conn, calls).await?;
    Ok(found
        .into_iter()
        .zip(calls)
        .map(|((next, turn), call)| (called(next, call.tenant, call.now), turn))
        .collect())
}

/// The answer to a call-next from what it found.
fn called(next: NextCall, tenant: TenantId, now: DateTime<Utc>) -> Result<Option<Pending>, Error> {
    // Call-next takes waiting tickets only.
    let previous = Status::Waiting;
    transition(previous, Action::Call)?;
    match next {
        NextCall::NoCounter => Err(Error::NotFound(Entity::Counter)),
        NextCall::CounterInactive => Err(db::Conflict::CounterInactive.into()),
        NextCall::CounterBusy => Err(db::Conflict::CounterBusy.into()),
        NextCall::UnknownService => Err(Error::NotFound(Entity::Service)),
        NextCall::NobodyWaiting => Ok(None),
        NextCall::Called(record) => Ok(Some(Pending {
            tenant,
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
    if !counter.active {
        return Err(db::Conflict::CounterInactive.into());
    }
    transition(ticket.status, Action::Call)?;
    if counter.busy {
        return Err(db::Conflict::CounterBusy.into());
    }
    Ok(Pending {
        tenant: tenant.id,
        record: db::tickets::mark_called(conn, ticket.id, counter.id, operator, now).await?,
        action: EventAction::Called,
        previous: Some(ticket.status),
        now,
    })
}

/// Applies one of the actions that need nothing but the ticket: recall, start, finish,
/// no-show, cancel and reactivate. A recall past the tenant's `max_calls` is a no-show
/// instead (`recall_under_limit`).
pub async fn act(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Pending, Error> {
    if is_status_change(action) {
        return status_change(conn, tenant, id, action, now).await;
    }
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(Error::NotFound(Entity::Ticket))?;
    transition(ticket.status, action)?;
    let record = match action {
        Action::Recall => match recall_under_limit(ticket.call_count, tenant.settings.max_calls) {
            Action::Recall => db::tickets::mark_recalled(conn, id, now).await?,
            instead => return status_change(conn, tenant, id, instead, now).await,
        },
        Action::Reactivate => db::tickets::requeue(conn, id, Requeue::Reactivate, now).await?,
        _ => {
            return Err(Error::unexpected(anyhow::anyhow!(
                "{action:?} needs a counter or a service; it has its own command"
            )));
        }
    };
    Ok(Pending {
        tenant: tenant.id,
        record,
        action: action.event(),
        previous: Some(ticket.status),
        now,
    })
}

/// A start, finish, no-show or cancel of one ticket.
async fn status_change(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    action: Action,
    now: DateTime<Utc>,
) -> Result<Pending, Error> {
    let act = StatusAct {
        tenant: tenant.id,
        id,
        action,
        now,
    };
    let mut answers = set_statuses(conn, &[act]).await?;
    answers
        .pop()
        .unwrap_or_else(|| Err(Error::unexpected(anyhow::anyhow!("a change got no answer"))))
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
    pub tenant: TenantId,
    pub id: TicketId,
    pub action: Action,
    pub now: DateTime<Utc>,
}

/// Applies status changes to distinct tickets (of any tenants) in one round trip. The outer
/// error is the database's; the inner ones answer single changes, in the order given.
pub async fn set_statuses(
    conn: &mut PgConnection,
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
            tenant: act.tenant,
            id: act.id,
            from,
            to,
            now: act.now,
        });
    }
    let found = db::tickets::set_statuses_from(conn, &changes).await?;
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
                tenant: act.tenant,
                record: *record,
                action: act.action.event(),
                previous: Some(previous),
                now: act.now,
            }),
        })
        .collect())
}

/// Which tickets a close of the day ends (contract §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayClose {
    /// An admin's close: every ticket issued before the request.
    Now,
    /// The automatic close due at this instant (the end of the opening hours, or local
    /// midnight): every ticket issued before it, once, however many processes try.
    Due(DateTime<Utc>),
}

/// Closes the tenant's day: waiting and called tickets expire, tickets being served are
/// finished (`domain::ticket::close_day_change`), each a change of its own, in issue order.
/// An automatic close already done (by this process or another) changes nothing.
pub async fn close_day(
    conn: &mut PgConnection,
    tenant: TenantId,
    close: DayClose,
    now: DateTime<Utc>,
) -> Result<Vec<Pending>, Error> {
    let before = match close {
        DayClose::Now => now,
        DayClose::Due(due) => {
            if !db::day_closes::claim(conn, tenant, due, now).await? {
                return Ok(Vec::new());
            }
            due
        }
    };
    let moves: Vec<(Status, Status)> = Status::ALL
        .into_iter()
        .filter_map(|from| close_day_change(from).map(|(to, _)| (from, to)))
        .collect();
    // A ticket ends when its day did: an automatic close run late (at start-up, after a
    // night without a process) must not count the night as service time in the estimates.
    db::tickets::close_tickets(conn, tenant, before, &moves, before)
        .await?
        .into_iter()
        .map(|closed| {
            let (_, action) = close_day_change(closed.previous).ok_or_else(|| {
                Error::unexpected(anyhow::anyhow!("a {} ticket was closed", closed.previous))
            })?;
            Ok(Pending {
                tenant,
                record: closed.record,
                action,
                previous: Some(closed.previous),
                now,
            })
        })
        .collect()
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
        tenant: tenant.id,
        record: db::tickets::requeue(conn, id, Requeue::Transfer(target.id), now).await?,
        action: EventAction::Transferred,
        previous: Some(ticket.status),
        now,
    })
}

/// Appends the events of changes made in this transaction, of any tenants, and returns
/// them with the tickets as their events show them, in the order given. Each tenant's
/// changes take its next seqs in the order given.
///
/// Taking the seqs locks the tenants' sequence rows until commit and serialises each
/// tenant's writers, so it comes last: the tickets are written (and locked) already, and the
/// services' paces are read before. Under the locks: the waiting counts (moved by these
/// changes and read with every change of smaller seq, so each event describes the queue
/// exactly at its seq), the events, and the commit: three round trips after the locks are
/// taken, however many changes and tenants there are. The counts and places read once
/// after all changes are walked back to each change's own seq.
pub async fn record_changes(
    conn: &mut PgConnection,
    pending: Vec<Pending>,
    paces: &PaceCache,
) -> Result<Vec<Change>, Error> {
    let tenants = by_tenant(&pending);
    let mut tenant_paces = Vec::with_capacity(tenants.len());
    for (tenant, at) in &tenants {
        let latest = at.iter().map(|&i| pending[i].now).max().unwrap_or_default();
        tenant_paces.push(paces.for_tenant(conn, *tenant, latest).await?);
    }
    let moves: Vec<TicketMove> = pending
        .iter()
        .map(|p| QueueMove {
            ticket: p.record.id,
            class: (p.record.service_id, p.record.priority),
            place: CallOrder::new(p.record.priority, p.record.created_at, p.record.id),
            delta: waiting_delta(p.previous, p.record.status),
            waiting: p.record.status == Status::Waiting,
        })
        .collect();

    let taken: Vec<(TenantId, i64)> = tenants
        .iter()
        .map(|(tenant, at)| (*tenant, at.len() as i64))
        .collect();
    let last_seqs = db::events::take_seqs(conn, &taken).await?;
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
    let tenant_ids: Vec<TenantId> = tenants.iter().map(|(tenant, _)| *tenant).collect();
    let (counts, behind_waiting) = db::queue::count_changes(
        conn,
        &tenant_ids,
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
    // Services belong to one tenant each, so the moves of other tenants never count.
    let behind = behind_at_own_seq(&moves, &behind_after);

    let event_tenants: Vec<TenantId> = pending.iter().map(|p| p.tenant).collect();
    let mut changes: Vec<Option<Change>> = pending.iter().map(|_| None).collect();
    let mut pending: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
    for (((tenant, at), last_seq), paces) in tenants.iter().zip(last_seqs).zip(&tenant_paces) {
        let mut counts: Vec<ServiceCount> = counts
            .iter()
            .filter(|(of, _)| of == tenant)
            .map(|(_, count)| count.clone())
            .collect();
        // Walk back from the tenant's last seq, undoing each change in the counts after
        // its event.
        for (k, &i) in at.iter().enumerate().rev() {
            let p = pending[i]
                .take()
                .ok_or_else(|| Error::unexpected(anyhow::anyhow!("a change listed twice")))?;
            let m = &moves[i];
            changes[i] = Some(change_at(
                p.record,
                ChangeAt {
                    seq: last_seq - (at.len() - 1 - k) as i64,
                    action: p.action,
                    previous: p.previous,
                    counts: counts.clone(),
                    behind: behind[i],
                    paces,
                    now: p.now,
                },
            )?);
            if let Some(service) = counts.iter_mut().find(|c| c.id == m.class.0) {
                service.waiting = service.waiting.before(m.class.1, m.delta);
            }
        }
    }
    let changes = changes
        .into_iter()
        .collect::<Option<Vec<Change>>>()
        .ok_or_else(|| Error::unexpected(anyhow::anyhow!("a change got no event")))?;
    let events: Vec<EventRow> = changes.iter().map(|c| c.event.event_row()).collect();
    let tickets: Vec<uuid::Uuid> = moves.iter().map(|m| m.ticket.get()).collect();
    db::events::insert_events(conn, &event_tenants, &events, &tickets).await?;
    Ok(changes)
}

/// The tenants of the changes, in order of their first change, each with the indexes of
/// its changes in the order given.
fn by_tenant(pending: &[Pending]) -> Vec<(TenantId, Vec<usize>)> {
    let mut tenants: Vec<(TenantId, Vec<usize>)> = Vec::new();
    let mut at_tenant: HashMap<TenantId, usize> = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        let k = *at_tenant.entry(p.tenant).or_insert_with(|| {
            tenants.push((p.tenant, Vec::new()));
            tenants.len() - 1
        });
        tenants[k].1.push(i);
    }
    tenants
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
    let ahead = (record.status == Status::Waiting).then(|| {
        let service = at.counts.iter().find(|c| c.id == record.service_id);
        ahead_from_counts(
            record.priority,
            service.map(|c| c.waiting).unwrap_or_default(),
            at.behind,
        )
    });
    let loads = db::queue::with_paces(at.counts, at.paces);
    let ticket = OperatorTicket::from_record(record, ahead, &loads)?;
    let event = CommittedChange {
        seq: at.seq,
        action: at.action,
        previous: at.previous,
        ticket: ticket.clone(),
        queue: service_summaries(&loads),
        at: at.now,
    };
    Ok(Change { ticket, event })
}
