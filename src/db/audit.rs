//! The audit log (contract §9): who did what to what, per tenant, newest first.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use super::Error;
use crate::domain::audit::{Action, Actor, Target};
use crate::domain::ids::{TenantId, UserId};

/// Writes one entry. Called in the transaction of the change it records where there is
/// one, so an entry never outlives a change that rolled back.
pub async fn record(
    conn: &mut PgConnection,
    tenant: TenantId,
    at: DateTime<Utc>,
    actor: Option<&Actor>,
    action: Action,
    target: Option<&Target>,
) -> Result<(), Error> {
    sqlx::query!(
        "insert into audit_log (tenant_id, at, user_id, username, action,
                                target_type, target_id, target_name)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        tenant.get(),
        at,
        actor.map(|a| a.id.get()),
        actor.map(|a| a.username.as_str()),
        action.as_str(),
        target.map(|t| t.kind.as_str()),
        target.map(|t| t.id),
        target.map(|t| t.name.as_str())
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An entry as `GET …/audit` answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct Entry {
    pub at: DateTime<Utc>,
    #[schema(required = true)]
    pub user: Option<EntryUser>,
    pub action: String,
    #[schema(required = true)]
    pub target: Option<EntryTarget>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = UserRef)]
pub struct EntryUser {
    pub id: UserId,
    pub username: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditTarget)]
pub struct EntryTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: uuid::Uuid,
    pub name: String,
}

/// The tenant's `limit` newest entries, newest first (entries of one instant: the last
/// written first).
pub async fn newest(
    conn: &mut PgConnection,
    tenant: TenantId,
    limit: u32,
) -> Result<Vec<Entry>, Error> {
    let rows = sqlx::query!(
        r#"select at, user_id as "user_id?: UserId", username, action,
                  target_type, target_id, target_name
             from audit_log where tenant_id = $1
            order by at desc, id desc
            limit $2"#,
        tenant.get(),
        i64::from(limit)
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Entry {
            at: row.at,
            user: row
                .user_id
                .zip(row.username)
                .map(|(id, username)| EntryUser { id, username }),
            action: row.action,
            target: match (row.target_type, row.target_id, row.target_name) {
                (Some(kind), Some(id), Some(name)) => Some(EntryTarget { kind, id, name }),
                _ => None,
            },
        })
        .collect())
}

/// Deletes up to `batch` entries written before `before`; returns how many.
pub async fn prune(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "delete from audit_log where id in
             (select id from audit_log where at < $1 order by at limit $2)",
        before,
        batch
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
