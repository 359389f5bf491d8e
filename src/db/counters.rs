use serde::Serialize;
use sqlx::PgConnection;

use super::{Conflict, Entity, Error, OnConstraint};
use crate::domain::ids::{CounterId, DisplayName, TenantId};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Counter {
    pub id: CounterId,
    pub name: String,
    /// Whether calls may be made to it (contract §9); inactive counters are listed to
    /// admins only.
    pub active: bool,
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
        active: true,
    })
}

/// The tenant's counters by name: the active ones, or all with `only_active` false.
pub async fn list_counters(
    conn: &mut PgConnection,
    tenant: TenantId,
    only_active: bool,
) -> Result<Vec<Counter>, Error> {
    Ok(sqlx::query_as!(
        Counter,
        r#"select id as "id: CounterId", name, active from counters
            where tenant_id = $1 and (active or not $2) order by name"#,
        tenant.get(),
        only_active
    )
    .fetch_all(conn)
    .await?)
}

/// Renames the counter and/or (de)activates it; what is `None` stays.
pub async fn update_counter(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: CounterId,
    name: Option<&DisplayName>,
    active: Option<bool>,
) -> Result<Counter, Error> {
    sqlx::query_as!(
        Counter,
        r#"update counters set name = coalesce($3, name), active = coalesce($4, active)
            where tenant_id = $1 and id = $2
           returning id as "id: CounterId", name, active"#,
        tenant.get(),
        id.get(),
        name.map(DisplayName::as_str),
        active
    )
    .fetch_optional(conn)
    .await
    .on_constraint(
        "counters_tenant_name_key",
        Conflict::CounterNameTaken.into(),
    )?
    .ok_or(Error::NotFound(Entity::Counter))
}

/// A counter locked by this transaction, whether it is active, and whether it holds a
/// called or serving ticket.
pub struct LockedCounter {
    pub id: CounterId,
    pub active: bool,
    pub busy: bool,
}

/// Locks the counter row for the rest of the transaction, so calls to one counter are
/// serialised, and says whether it is active and whether it is busy, in one round trip. Within a process a
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
        r#"select c.id as "id: CounterId", c.active,
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
