use serde::Serialize;
use sqlx::PgConnection;

use super::{Conflict, Entity, Error, OnConstraint};
use crate::domain::ids::{DisplayName, ServiceCode, ServiceId, TenantId};

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
    pub active: bool,
}

pub async fn insert_service(
    conn: &mut PgConnection,
    tenant: TenantId,
    code: &ServiceCode,
    name: &DisplayName,
) -> Result<Service, Error> {
    let id = ServiceId::new();
    sqlx::query!(
        "insert into services (id, tenant_id, code, name) values ($1, $2, $3, $4)",
        id.get(),
        tenant.get(),
        code.as_str(),
        name.as_str()
    )
    .execute(conn)
    .await
    .on_constraint(
        "services_tenant_code_key",
        Conflict::ServiceCodeTaken.into(),
    )?;
    Ok(Service {
        id,
        code: code.as_str().to_owned(),
        name: name.as_str().to_owned(),
        active: true,
    })
}

pub async fn list_services(
    conn: &mut PgConnection,
    tenant: TenantId,
    only_active: bool,
) -> Result<Vec<Service>, Error> {
    Ok(sqlx::query_as!(
        Service,
        r#"select id as "id: ServiceId", code, name, active from services
           where tenant_id = $1 and (active or not $2) order by code"#,
        tenant.get(),
        only_active
    )
    .fetch_all(conn)
    .await?)
}

pub async fn get_service(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ServiceId,
) -> Result<Service, Error> {
    sqlx::query_as!(
        Service,
        r#"select id as "id: ServiceId", code, name, active from services
           where tenant_id = $1 and id = $2"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound(Entity::Service))
}

pub async fn update_service(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: ServiceId,
    name: Option<&DisplayName>,
    active: Option<bool>,
) -> Result<Service, Error> {
    sqlx::query_as!(
        Service,
        r#"update services set name = coalesce($3, name), active = coalesce($4, active)
           where tenant_id = $1 and id = $2
           returning id as "id: ServiceId", code, name, active"#,
        tenant.get(),
        id.get(),
        name.map(DisplayName::as_str),
        active
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound(Entity::Service))
}
