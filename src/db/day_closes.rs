//! The automatic day closes done (contract §8): one row per tenant and close instant.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Error;
use crate::domain::ids::TenantId;

/// Claims the close of the tenant's day at `due` for this transaction: `true` if no one
/// had, `false` if another transaction did (it waits for that one to end first). So
/// several processes on one database close a day once.
pub async fn claim(
    conn: &mut PgConnection,
    tenant: TenantId,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let claimed = sqlx::query_scalar!(
        r#"insert into day_closes (tenant_id, due_at, closed_at) values ($1, $2, $3)
           on conflict do nothing
           returning true as "claimed!""#,
        tenant.get(),
        due,
        now
    )
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}

/// Forgets the closes due before `before`. Only the latest close of a day is ever claimed
/// again (`BusinessDay::last_close`), so rows older than a day are history.
pub async fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!("delete from day_closes where due_at < $1", before)
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected())
}

/// Of the tenants given with a close instant each, those with a ticket in one of `statuses`
/// issued before their instant: the days a close would change.
pub async fn with_tickets_to_close(
    conn: &mut PgConnection,
    closes: &[(TenantId, DateTime<Utc>)],
    statuses: &[&str],
) -> Result<Vec<TenantId>, Error> {
    let tenants: Vec<uuid::Uuid> = closes.iter().map(|(tenant, _)| tenant.get()).collect();
    let dues: Vec<DateTime<Utc>> = closes.iter().map(|(_, due)| *due).collect();
    Ok(sqlx::query_scalar!(
        r#"select c.tenant_id as "tenant_id!: TenantId"
             from unnest($1::uuid[], $2::timestamptz[]) as c(tenant_id, due_at)
            where exists (select 1 from tickets t
                           where t.tenant_id = c.tenant_id and t.status = any($3)
                             and t.created_at < c.due_at)"#,
        &tenants,
        &dues,
        statuses as &[&str]
    )
    .fetch_all(conn)
    .await?)
}
