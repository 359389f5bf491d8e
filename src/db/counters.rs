use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::ids::{CounterId, DisplayName, TenantId};
use crate::error::{ApiError, OnConstraint, Resource};

#[derive(Debug, Clone, Serialize)]
pub struct Counter {
    pub id: CounterId,
    pub name: String,
}

pub async fn insert_counter(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &DisplayName,
) -> Result<Counter, ApiError> {
    let id = CounterId::new();
    sqlx::query!(
        "insert into counters (id, tenant_id, name) values ($1, $2, $3)",
        id.get(),
        tenant.get(),
        name.as_str()
    )
    .execute(conn)
    .await
    .on_constraint("counters_tenant_name_key", ApiError::CounterNameTaken)?;
    Ok(Counter {
        id,
        name: name.as_str().to_owned(),
    })
}

pub async fn list_counters(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Counter>, ApiError> {
    Ok(sqlx::query_as!(
        Counter,
        r#"select id as "id: CounterId", name from counters where tenant_id = $1 order by name"#,
        tenant.get()
    )
    .fetch_all(conn)
    .await?)
}

/// Locks the counter row for the rest of the transaction: calls to one counter are
/// serialised, so its busy check cannot race with another call.
pub async fn lock_counter(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: CounterId,
) -> Result<Counter, ApiError> {
    sqlx::query_as!(
        Counter,
        r#"select id as "id: CounterId", name from counters
           where tenant_id = $1 and id = $2 for update"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?
    .ok_or(ApiError::NotFound(Resource::Counter))
}

/// Whether the counter holds a called or serving ticket.
pub async fn is_counter_busy(conn: &mut PgConnection, id: CounterId) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from tickets where counter_id = $1
           and status in ('called', 'serving')) as "busy!""#,
        id.get()
    )
    .fetch_one(conn)
    .await?)
}
