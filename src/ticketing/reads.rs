use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::Error;
use crate::db;
use crate::db::Entity;
use crate::db::queue::ServiceLoad;
use crate::db::tenants::Tenant;
use crate::db::tickets::NextPreview;
use crate::domain::call_order::{CallOrder, NextReason, ahead_in_service};
use crate::domain::ids::{CounterId, ServiceId, TenantId, TicketId};
use crate::domain::ticket::Status;
use crate::views::{Audience, CommittedChange, OperatorTicket, ServiceSummary, service_summaries};

/// One ticket with `ahead` and its estimate.
pub async fn load_ticket(
    conn: &mut PgConnection,
    tenant: &Tenant,
    id: TicketId,
    now: DateTime<Utc>,
) -> Result<OperatorTicket, Error> {
    let record = db::tickets::find_record(conn, tenant.id, id)
        .await?
        .ok_or(Error::NotFound(Entity::Ticket))?;
    let (ahead, loads) = if record.status == Status::Waiting {
        let ahead = db::tickets::count_ahead(conn, &record).await?;
        let loads = db::queue::service_loads(conn, tenant.id, now).await?;
        (Some(ahead), loads)
    } else {
        (None, Vec::new())
    };
    Ok(OperatorTicket::from_record(record, ahead, &loads)?)
}

/// What call-next would take at a counter now, and why (`GET …/counters/{id}/next`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NextCall {
    #[schema(required = true)]
    pub ticket: Option<OperatorTicket>,
    /// `priority`, `waited_longest` or `fair_turn`; `None` when nobody waits.
    #[schema(value_type = Option<String>, required = true)]
    pub reason: Option<&'static str>,
    pub priority_streak: u32,
    #[schema(required = true)]
    pub priority_ratio: Option<u32>,
    #[schema(required = true)]
    pub max_calls: Option<u32>,
}

/// The ticket call-next would call to the counter now from `services` (all when `None`),
/// by the same rules and SQL as the call itself, without calling it. `conn` should be in a
/// repeatable-read transaction, so that the ticket is read as it was found.
pub async fn next_call(
    conn: &mut PgConnection,
    tenant: &Tenant,
    counter: CounterId,
    services: Option<&[ServiceId]>,
    now: DateTime<Utc>,
) -> Result<NextCall, Error> {
    if services.is_some_and(<[ServiceId]>::is_empty) {
        return Err(Error::NoServicesNamed);
    }
    let services: Option<Vec<uuid::Uuid>> =
        services.map(|ids| ids.iter().map(|id| id.get()).collect());
    let found = db::tickets::preview_next(
        conn,
        tenant.id,
        counter,
        services.as_deref(),
        tenant.call_rules(now),
    )
    .await?;
    let (ticket, priority_waits, priority_streak) = match found {
        NextPreview::NoCounter => return Err(Error::NotFound(Entity::Counter)),
        NextPreview::CounterInactive => return Err(db::Conflict::CounterInactive.into()),
        NextPreview::UnknownService => return Err(Error::NotFound(Entity::Service)),
        NextPreview::Found {
            ticket,
            priority_waits,
            priority_streak,
        } => (ticket, priority_waits, priority_streak),
    };
    let ticket = match ticket {
        Some(id) => Some(load_ticket(conn, tenant, id, now).await?),
        None => None,
    };
    Ok(NextCall {
        reason: ticket
            .as_ref()
            .map(|t| NextReason::of(t.public.priority, priority_waits).as_str()),
        ticket,
        priority_streak,
        priority_ratio: tenant.settings.priority_ratio,
        max_calls: tenant.settings.max_calls,
    })
}

/// The changes with `after < seq <= up_to`, in seq order, read back from the log: what a
/// client resuming after `after` is sent.
pub async fn changes_after(
    conn: &mut PgConnection,
    tenant: TenantId,
    after: i64,
    up_to: i64,
) -> Result<Vec<CommittedChange>, Error> {
    let rows = db::events::list_events(conn, tenant, after, up_to, i64::MAX).await?;
    Ok(rows
        .into_iter()
        .map(CommittedChange::try_from)
        .collect::<Result<_, _>>()?)
}

/// The queue as of `seq`: read in one repeatable-read snapshot, so the tickets listed are
/// exactly the state after event `seq`.
#[derive(Debug, Clone)]
pub struct QueueSnapshot {
    pub tenant_slug: String,
    pub tenant_name: String,
    pub seq: i64,
    pub services: Vec<ServiceSummary>,
    /// In call order.
    pub waiting: Vec<OperatorTicket>,
    /// Called or serving, most recent call first.
    pub called: Vec<OperatorTicket>,
}

#[derive(Serialize)]
struct TenantRef<'a> {
    slug: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct SnapshotBody<'a, T> {
    tenant: TenantRef<'a>,
    seq: i64,
    services: &'a [ServiceSummary],
    waiting: Vec<T>,
    called: Vec<T>,
}

impl QueueSnapshot {
    /// Appends the snapshot as JSON, in the projection of `audience`, to `out`.
    pub fn write_json(&self, audience: Audience, out: &mut Vec<u8>) {
        let written = match audience {
            Audience::Public => serde_json::to_writer(out, &self.body(|t| &t.public)),
            Audience::Operator => serde_json::to_writer(out, &self.body(|t| t)),
        };
        written.expect("snapshots always serialize");
    }

    fn body<'a, T: Serialize>(
        &'a self,
        project: impl Fn(&'a OperatorTicket) -> T,
    ) -> SnapshotBody<'a, T> {
        SnapshotBody {
            tenant: TenantRef {
                slug: &self.tenant_slug,
                name: &self.tenant_name,
            },
            seq: self.seq,
            services: &self.services,
            waiting: self.waiting.iter().map(&project).collect(),
            called: self.called.iter().map(&project).collect(),
        }
    }
}

/// Reads the snapshot. `conn` must be in a repeatable-read transaction for `seq` and the
/// tickets to agree (see `snapshot_transaction`).
pub async fn queue_snapshot(
    conn: &mut PgConnection,
    tenant: &Tenant,
    now: DateTime<Utc>,
) -> Result<QueueSnapshot, Error> {
    let seq = db::events::current_seq(conn, tenant.id).await?;
    let loads = db::queue::service_loads(conn, tenant.id, now).await?;
    let active = [Status::Waiting, Status::Called, Status::Serving];
    let records = db::tickets::list_records(conn, tenant.id, &active, None, None).await?;
    let (waiting, mut called) = in_queue_order(records, &loads)?;
    called.sort_by_key(|t| std::cmp::Reverse(t.public.called_at));
    Ok(QueueSnapshot {
        tenant_slug: tenant.slug.clone(),
        tenant_name: tenant.name.clone(),
        seq,
        services: service_summaries(&loads),
        waiting,
        called,
    })
}

/// Splits tickets into the waiting ones, in call order with their `ahead`, and the others
/// in the order given. `records` must hold every waiting ticket of their services for
/// `ahead` to be right.
pub fn in_queue_order(
    records: Vec<db::tickets::TicketRecord>,
    loads: &[ServiceLoad],
) -> Result<(Vec<OperatorTicket>, Vec<OperatorTicket>), Error> {
    let (mut waiting, called): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| r.status == Status::Waiting);
    let order = |r: &db::tickets::TicketRecord| CallOrder::new(r.priority, r.created_at, r.id);
    waiting.sort_by_key(order);
    let aheads = ahead_in_service(waiting.iter().map(|r| r.service_id));
    let waiting = waiting
        .into_iter()
        .zip(aheads)
        .map(|(record, ahead)| OperatorTicket::from_record(record, Some(ahead), loads))
        .collect::<Result<Vec<_>, _>>()?;
    let called = called
        .into_iter()
        .map(|record| OperatorTicket::from_record(record, None, loads))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((waiting, called))
}
