use serde::Serialize;
use sqlx::PgConnection;

use super::{Conflict, Entity, Error, OnConstraint};
use crate::domain::ids::{CounterId, DisplayName, TenantId};

#[derive(Debug, Clone, Serialize)]
pub struct Counter {
    pub id: CounterId,
    pub name: String,
}

pub async fn insert_counter(
    conn: &mut PgConnection,
    tenant: TenantId,
    name: &DisplayName,
) -> Result<Counter, Error> {
    let id = CounterId::new();
    sqlx::query!(
        "insert into counters (id, tenant_id, name) values ($1, $2, $3)",
        id.get(),
        tenant.get(),
        name.as_str()
    )
    .execute(conn)
    .await
    .on_constraint(
        "counters_tenant_name_key",
        Conflict::CounterNameTaken.into(),
    )?;
    Ok(Counter {
        id,
        name: name.as_str().to_owned(),
    })
}

pub async fn list_counters(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Counter>, Error> {
    Ok(sqlx::query_as!(
        Counter,
        r#"select id as "id: CounterId", name from counters where tenant_id = $1 order by name"#,
        tenant.get()
    )
    .fetch_all(conn)
    .await?)
}

/// A counter locked by this transaction, and whether it holds a called or serving ticket.
pub struct LockedCounter {
    pub id: CounterId,
    pub busy: bool,
}

/// Locks the counter row for the rest of the transaction, so calls to one counter are
/// serialised, and says whether it is busy, in one round trip. Within a process a
/// tenant's changes are made one after another, so the answer is exact. When another
/// process called to this counter while this statement waited for the lock, the answer
/// was read before that commit: the unique index on active tickets per counter then
/// refuses the call (`counter_busy`), which `changes::writer` answers alone.
pub async fn lock_counter(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: CounterId,
) -> Result<LockedCounter, Error> {
    sqlx::query_as!(
        LockedCounter,
        r#"select c.id as "id: CounterId",
                  exists (select 1 from busy_counters b where b.counter_id = c.id) as "busy!"
             from counters c
            where c.tenant_id = $1 and c.id = $2
              for update of c"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound(Entity::Counter))
}
