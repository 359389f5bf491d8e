use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::db;
use crate::db::events::{EventRow, NewEvent};
use crate::db::queue::{CountedChange, ServiceCount};
use crate::db::tenants::Tenant;
use crate::db::tickets::TicketRecord;
use crate::domain::ids::{CounterId, ServiceCode, ServiceId, TicketId, UserId};
use crate::domain::numbering::{service_day, ticket_code};
use crate::domain::ticket::{
    Action, EventAction, Priority, Status, ahead_from_counts, transition, waiting_delta,
};
use crate::error::{ApiError, Resource};
use crate::ticketing::paces::{PaceCache, Paces};
use crate::ticketing::turns::{SeqTurns, Turn};
use crate::views::{OperatorTicket, service_summaries};

/// A ticket change as committed: the ticket right after it, and its event.
#[derive(Debug, Clone)]
pub struct Change {
    pub ticket: OperatorTicket,
    pub event: EventRow,
}

/// When a change happens, and the per-process caches it may use.
pub struct ChangeContext<'a> {
    pub now: DateTime<Utc>,
    pub paces: &'a PaceCache,
    pub turns: &'a SeqTurns,
    /// The turn taken by `record_change`, held until the context is dropped (after commit).
    pub turn: std::sync::Mutex<Option<Turn>>,
}

#[derive(Debug, Clone)]
pub struct IssueTicket {
    pub service: ServiceId,
    pub priority: Priority,
    pub customer_name: Option<String>,
}

pub async fn issue(
    conn: &mut PgConnection,
    tenant: &Tenant,
    request: IssueTicket,
    at: &ChangeContext<'_>,
) -> Result<Change, ApiError> {
    let service = db::services::get_service(conn, tenant.id, request.service).await?;
    if !service.active {
        return Err(ApiError::ServiceInactive);
    }
    let code = ServiceCode::parse(&service.code).map_err(ApiError::internal)?;
    let day = service_day(at.now, tenant.timezone);
    let number = db::tickets::next_number(conn, service.id, day).await?;
    let code = ticket_code(&code, number);
    let id = db::tickets::insert_ticket(
        conn,
        db::tickets::NewTicket {
            tenant: tenant.id,
            service: service.id,
            code: &code,
            service_day: day,
            priority: request.priority,
            customer_name: request.customer_name.as_deref(),
            created_at: at.now,
        },
    )
    .await?;
    // Everything about the new ticket is known here: no need to read it back.
    let record = TicketRecord {
        id,
        code,
        status: Status::Waiting.as_str().to_owned(),
        priority: request.priority.as_str().to_owned(),
        call_count: 0,
        customer_name: request.customer_name,
        created_at: at.now,
        called_at: None,
        started_at: None,
        finished_at: None,
        service_id: service.id,
        service_code: service.code,
        service_name: service.name,
        counter_id: None,
        counter_name: None,
        operator_id: None,
        operator_username: None,
    };
    record_change(conn, tenant, record, EventAction::Issued, None, at).await
}

/// Calls the next waiting ticket of `services` (all services when `None`) to the counter;
/// `None` when nobody is waiting.
pub async fn call_next(
    conn: &mut PgConnection,
    tenant: &Tenant,
    counter: CounterId,
    services: Option<Vec<ServiceId>>,
    operator: UserId,
    at: &ChangeContext<'_>,
) -> Result<Option<Change>, ApiError> {
    let counter = db::counters::lock_counter(conn, tenant.id, counter).await?;
    if db::counters::is_counter_busy(conn, counter.id).await? {
        return Err(ApiError::CounterBusy);
    }
    let services = match services {
        None => None,
        Some(wanted) => Some(known_services(conn, tenant, wanted).await?),
    };
    let Some(ticket) = db::tickets::lock_next_waiting(conn, tenant.id, services.as_deref()).await?
    else {
        return Ok(None);
    };
    transition(ticket.status, Action::Call)?;
    db::tickets::mark_called(conn, ticket.id, counter.id, operator, at.now).await?;
    let record = changed_record(conn, tenant, ticket.id).await?;
    let change = record_change(
        conn,
        tenant,
        record,
        EventAction::Called,
        Some(ticket.status),
        at,
    )
    .await?;
    Ok(Some(change))
}

async fn known_services(
    conn: &mut PgConnection,
    tenant: &Tenant,
    wanted: Vec<ServiceId>,
) -> Result<Vec<uuid::Uuid>, ApiError> {
    if wanted.is_empty() {
        return Err(ApiError::Invalid(
            "service_ids must list at least one service (omit it to call from all)".into(),
        ));
    }
    let known = db::services::list_services(conn, tenant.id, false).await?;
    wanted
        .into_iter()
        .map(|id| {
            known
                .iter()
                .any(|s| s.id == id)
                .then_some(id.get())
                .ok_or(ApiError::NotFound(Resource::Service))
        })
        .collect()
}

/// Calls this waiting ticket to the counter, out of order.
pub async fn call_ticket(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    counter: CounterId,
    operator: UserId,
    at: &ChangeContext<'_>,
) -> Result<Change, ApiError> {
    let counter = db::counters::lock_counter(conn, tenant.id, counter).await?;
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Ticket))?;
    transition(ticket.status, Action::Call)?;
    if db::counters::is_counter_busy(conn, counter.id).await? {
        return Err(ApiError::CounterBusy);
    }
    db::tickets::mark_called(conn, ticket.id, counter.id, operator, at.now).await?;
    let record = changed_record(conn, tenant, id).await?;
    record_change(
        conn,
        tenant,
        record,
        EventAction::Called,
        Some(ticket.status),
        at,
    )
    .await
}

/// Applies one of the actions that need nothing but the ticket: recall, start, finish,
/// no-show, cancel and reactivate.
pub async fn act(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    action: Action,
    at: &ChangeContext<'_>,
) -> Result<Change, ApiError> {
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Ticket))?;
    let to = transition(ticket.status, action)?;
    match action {
        Action::Recall => db::tickets::mark_recalled(conn, id, at.now).await?,
        Action::Start | Action::Finish | Action::NoShow | Action::Cancel => {
            db::tickets::set_status(conn, id, to, at.now).await?
        }
        Action::Reactivate => db::tickets::requeue(conn, id, ticket.service_id).await?,
        Action::Call | Action::Transfer => {
            return Err(ApiError::internal(anyhow::anyhow!(
                "{action:?} needs a counter or a service; it has its own command"
            )));
        }
    }
    let record = changed_record(conn, tenant, id).await?;
    record_change(
        conn,
        tenant,
        record,
        action.event(),
        Some(ticket.status),
        at,
    )
    .await
}

/// Moves a called or serving ticket to the waiting queue of another service, keeping its
/// code and original issue time.
pub async fn transfer(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    target: ServiceId,
    at: &ChangeContext<'_>,
) -> Result<Change, ApiError> {
    let ticket = db::tickets::lock_ticket(conn, tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Ticket))?;
    transition(ticket.status, Action::Transfer)?;
    let target = db::services::get_service(conn, tenant.id, target).await?;
    if target.id == ticket.service_id {
        return Err(ApiError::SameService);
    }
    if !target.active {
        return Err(ApiError::ServiceInactive);
    }
    db::tickets::requeue(conn, id, target.id).await?;
    let record = changed_record(conn, tenant, id).await?;
    record_change(
        conn,
        tenant,
        record,
        EventAction::Transferred,
        Some(ticket.status),
        at,
    )
    .await
}

/// The changed ticket as this transaction left it (its row is locked by the change).
async fn changed_record(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
) -> Result<TicketRecord, ApiError> {
    db::tickets::find_record(conn, tenant.id, id)
        .await?
        .ok_or(ApiError::NotFound(Resource::Ticket))
}

/// Appends the event of a change.
///
/// Taking the seq locks the tenant's sequence row until commit and serialises the tenant's
/// writers, so everything that does not need the lock is done before it: the ticket (its
/// row is already locked by this transaction) and the services' paces. Under the lock: the
/// waiting counts (moved by this change, read with every change of smaller seq, so each
/// event describes the queue exactly at its seq, with `ahead` in the same statement), the
/// event, and the commit — three round trips after the lock is taken.
async fn record_change(
    conn: &mut PgConnection,
    tenant: &Tenant,
    record: TicketRecord,
    action: EventAction,
    previous: Option<Status>,
    at: &ChangeContext<'_>,
) -> Result<Change, ApiError> {
    let paces = at.paces.for_tenant(conn, tenant.id, at.now).await?;

    let turn = at.turns.take(tenant.id).await;
    *at.turn
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(turn);
    let seq = db::events::next_seq(conn, tenant.id).await?;
    let priority: Priority = record.priority.parse().map_err(ApiError::internal)?;
    let status: Status = record.status.parse().map_err(ApiError::internal)?;
    let waiting = status == Status::Waiting;
    let (counts, behind) = db::queue::count_change(
        conn,
        tenant.id,
        CountedChange {
            service: record.service_id,
            priority,
            delta: waiting_delta(previous, status),
            waiting_ticket: waiting.then_some(&record),
        },
    )
    .await?;
    let change = change_at(
        record,
        ChangeAt {
            seq,
            action,
            previous,
            counts,
            behind,
            paces: &paces,
            now: at.now,
        },
    )?;
    let event = &change.event;
    db::events::insert_event(
        conn,
        NewEvent {
            tenant: tenant.id,
            seq,
            action: &event.action,
            previous_status: event.previous_status.as_deref(),
            ticket_id: change.ticket.public.id,
            ticket: event.ticket.clone(),
            queue: event.queue.clone(),
            created_at: at.now,
        },
    )
    .await?;
    Ok(change)
}

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
pub fn change_at(record: TicketRecord, at: ChangeAt<'_>) -> Result<Change, ApiError> {
    let status: Status = record.status.parse().map_err(ApiError::internal)?;
    let priority: Priority = record.priority.parse().map_err(ApiError::internal)?;
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
        ticket: serde_json::to_value(&ticket).map_err(ApiError::internal)?,
        queue: serde_json::to_value(service_summaries(&loads)).map_err(ApiError::internal)?,
        created_at: at.now,
    };
    Ok(Change { ticket, event })
}
