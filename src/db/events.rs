use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Error;
use super::error::stored;
use crate::domain::ids::TenantId;
use crate::domain::ticket::{EventAction, Status};

/// An event as stored in the log: the ticket and the queue as JSON, in the views it was
/// committed with. `views::CommittedChange` is its typed form, and builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub action: String,
    pub previous_status: Option<String>,
    pub ticket: serde_json::Value,
    pub queue: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl EventRow {
    pub fn event_action(&self) -> Result<EventAction, Error> {
        stored(&self.action)
    }

    pub fn previous(&self) -> Result<Option<Status>, Error> {
        self.previous_status.as_deref().map(stored).transpose()
    }
}

pub async fn current_seq(conn: &mut PgConnection, tenant: TenantId) -> Result<i64, Error> {
    Ok(sqlx::query_scalar!(
        "select last_seq from event_sequences where tenant_id = $1",
        tenant.get()
    )
    .fetch_one(conn)
    .await?)
}

/// Takes each tenant's next `count` seqs and returns each tenant's last, in the order
/// given. This locks the tenants' sequence rows until commit, which serialises each
/// tenant's writers: call it as late in the transaction as possible. The rows are locked
/// in tenant order, so two transactions taking seqs of the same tenants never wait on each
/// other crosswise: the update is driven by the sorted list, and the writer's connections
/// cannot scan the table in its physical order instead (`db::writer_pool` turns sequential
/// scans off). One plain update, with no `SELECT … FOR UPDATE` before it, writes each row
/// once (measured in docs/benchmarks.md).
pub async fn take_seqs(
    conn: &mut PgConnection,
    counts: &[(TenantId, i64)],
) -> Result<Vec<i64>, Error> {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable_by_key(|(tenant, _)| *tenant);
    let tenants: Vec<uuid::Uuid> = sorted.iter().map(|(t, _)| t.get()).collect();
    let taken: Vec<i64> = sorted.iter().map(|(_, n)| *n).collect();
    let rows = sqlx::query!(
        r#"update event_sequences s set last_seq = s.last_seq + d.taken
             from unnest($1::uuid[], $2::int8[]) as d(tenant_id, taken)
            where s.tenant_id = d.tenant_id
           returning s.tenant_id as "tenant_id: TenantId", s.last_seq"#,
        &tenants,
        &taken
    )
    .fetch_all(conn)
    .await?;
    counts
        .iter()
        .map(|(tenant, _)| {
            rows.iter()
                .find(|r| r.tenant_id == *tenant)
                .map(|r| r.last_seq)
                .ok_or_else(|| Error::unexpected(anyhow::anyhow!("tenant {tenant} has no seq")))
        })
        .collect()
}

/// Appends events of any tenants in one statement; `ticket_ids[i]` is the ticket of
/// `events[i]`, `tenants[i]` its tenant.
pub async fn insert_events(
    conn: &mut PgConnection,
    tenants: &[TenantId],
    events: &[EventRow],
    ticket_ids: &[uuid::Uuid],
) -> Result<(), Error> {
    let tenants: Vec<uuid::Uuid> = tenants.iter().map(|t| t.get()).collect();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    let previous: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.previous_status.as_deref())
        .collect();
    let tickets: Vec<serde_json::Value> = events.iter().map(|e| e.ticket.clone()).collect();
    let queues: Vec<serde_json::Value> = events.iter().map(|e| e.queue.clone()).collect();
    let created: Vec<DateTime<Utc>> = events.iter().map(|e| e.created_at).collect();
    sqlx::query!(
        "insert into events (tenant_id, seq, action, previous_status, ticket_id, ticket, queue,
                             created_at)
         select e.* from unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::uuid[],
                                $6::jsonb[], $7::jsonb[], $8::timestamptz[])
                as e(tenant_id, seq, action, previous_status, ticket_id, ticket, queue,
                     created_at)",
        &tenants,
        &seqs,
        &actions as &[&str],
        &previous as &[Option<&str>],
        ticket_ids,
        &tickets,
        &queues,
        &created
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn oldest_seq(conn: &mut PgConnection, tenant: TenantId) -> Result<Option<i64>, Error> {
    Ok(sqlx::query_scalar!(
        "select min(seq) from events where tenant_id = $1",
        tenant.get()
    )
    .fetch_one(conn)
    .await?)
}

/// The first `limit` events with `after < seq <= up_to`, in seq order.
pub async fn list_events(
    conn: &mut PgConnection,
    tenant: TenantId,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<EventRow>, Error> {
    Ok(sqlx::query_as!(
        EventRow,
        "select seq, action, previous_status, ticket, queue, created_at from events
         where tenant_id = $1 and seq > $2 and seq <= $3 order by seq limit $4",
        tenant.get(),
        after,
        up_to,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// Deletes up to `batch` events created before `before`; returns how many went. Small
/// batches keep each delete's locks and WAL short while the server is busy.
pub async fn prune_events(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "delete from events where ctid = any(array(
             select ctid from events where created_at < $1 limit $2))",
        before,
        batch
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
