use chrono_tz::Tz;
use sqlx::PgConnection;

use super::{Conflict, Entity, Error, OnConstraint};
use crate::domain::ids::{DisplayName, Slug, TenantId};
use crate::domain::numbering::parse_timezone;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub timezone: Tz,
}

struct TenantRow {
    id: TenantId,
    slug: String,
    name: String,
    timezone: String,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;
    fn try_from(row: TenantRow) -> Result<Self, Error> {
        let timezone = parse_timezone(&row.timezone).map_err(|e| {
            Error::unexpected(anyhow::anyhow!(
                "tenant {} has a bad time zone: {e}",
                row.slug
            ))
        })?;
        Ok(Tenant {
            id: row.id,
            slug: row.slug,
            name: row.name,
            timezone,
        })
    }
}

/// Creates a tenant and its event sequence (starting at seq 0).
pub async fn insert_tenant(
    conn: &mut PgConnection,
    slug: &Slug,
    name: &DisplayName,
    timezone: Tz,
) -> Result<Tenant, Error> {
    let id = TenantId::new();
    sqlx::query!(
        "insert into tenants (id, slug, name, timezone) values ($1, $2, $3, $4)",
        id.get(),
        slug.as_str(),
        name.as_str(),
        timezone.name()
    )
    .execute(&mut *conn)
    .await
    .on_constraint("tenants_slug_key", Conflict::SlugTaken.into())?;
    sqlx::query!(
        "insert into event_sequences (tenant_id) values ($1)",
        id.get()
    )
    .execute(&mut *conn)
    .await?;
    Ok(Tenant {
        id,
        slug: slug.as_str().to_owned(),
        name: name.as_str().to_owned(),
        timezone,
    })
}

/// The tenant a client named. Every lookup by slug comes through here, and a name that is
/// not a valid slug (a NUL or other control character, upper case, too long…) names no
/// tenant: it is answered without a query, so it can never become a database error.
pub async fn find_tenant(conn: &mut PgConnection, slug: &str) -> Result<Option<Tenant>, Error> {
    match Slug::parse(slug) {
        Ok(slug) => find_tenant_by_slug(conn, &slug).await,
        Err(_) => Ok(None),
    }
}

async fn find_tenant_by_slug(
    conn: &mut PgConnection,
    slug: &Slug,
) -> Result<Option<Tenant>, Error> {
    let row = sqlx::query_as!(
        TenantRow,
        r#"select id as "id: TenantId", slug, name, timezone from tenants where slug = $1"#,
        slug.as_str()
    )
    .fetch_optional(conn)
    .await?;
    row.map(Tenant::try_from).transpose()
}

/// The tenant a client named; 404 `tenant_not_found` when there is none (see [`find_tenant`]).
pub async fn get_tenant(conn: &mut PgConnection, slug: &str) -> Result<Tenant, Error> {
    find_tenant(conn, slug)
        .await?
        .ok_or(Error::NotFound(Entity::Tenant))
}

pub async fn list_tenants(conn: &mut PgConnection) -> Result<Vec<Tenant>, Error> {
    let rows = sqlx::query_as!(
        TenantRow,
        r#"select id as "id: TenantId", slug, name, timezone from tenants order by slug"#
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Tenant::try_from).collect()
}

/// Tenants by slug, remembered by this process once read: a tenant never changes after it
/// is created (neither the API nor the CLI updates or deletes one), and the hot paths
/// (issuing, the WebSocket handshake, polls) would otherwise read it on every request.
/// Unknown slugs are not remembered, so a tenant created later is found at once.
#[derive(Default)]
pub struct KnownTenants {
    by_slug: std::sync::RwLock<std::collections::HashMap<String, Tenant>>,
}

impl KnownTenants {
    /// The tenant, if this process has read it already.
    pub fn known(&self, slug: &str) -> Option<Tenant> {
        self.by_slug
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(slug)
            .cloned()
    }

    pub async fn get(&self, conn: &mut PgConnection, slug: &str) -> Result<Tenant, Error> {
        if let Some(tenant) = self.known(slug) {
            return Ok(tenant);
        }
        let tenant = get_tenant(conn, slug).await?;
        self.by_slug
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.slug.clone(), tenant.clone());
        Ok(tenant)
    }
}
