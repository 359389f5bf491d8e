use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgConnection;

use super::{Conflict, Entity, Error, OnConstraint};
use crate::domain::business_day::{BusinessDay, OpeningHours};
use crate::domain::call_order::CallRules;
use crate::domain::ids::{DisplayName, Slug, TenantId};
use crate::domain::numbering::parse_timezone;
use crate::domain::settings::Settings;

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub timezone: Tz,
    pub settings: Settings,
}

impl Tenant {
    /// When this tenant is open and when its day closes.
    pub fn business_day(&self) -> BusinessDay<'_> {
        BusinessDay {
            tz: self.timezone,
            hours: self.settings.opening_hours.as_ref(),
        }
    }

    /// What bounds a call-next made at `now`: the fair ratio, and the tickets of the
    /// current business day only (issued since its last automatic close).
    pub fn call_rules(&self, now: DateTime<Utc>) -> CallRules {
        CallRules {
            priority_ratio: self.settings.priority_ratio,
            issued_since: self.business_day().last_close(now),
        }
    }
}

struct TenantRow {
    id: TenantId,
    slug: String,
    name: String,
    timezone: String,
    opening_hours: Option<serde_json::Value>,
    max_calls: Option<i32>,
    priority_ratio: Option<i32>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = Error;
    fn try_from(row: TenantRow) -> Result<Self, Error> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::unexpected(anyhow::anyhow!("tenant {} has a bad {what}: {e}", row.slug))
        };
        let timezone = parse_timezone(&row.timezone).map_err(|e| bad("time zone", &e))?;
        let opening_hours = row
            .opening_hours
            .as_ref()
            .map(OpeningHours::from_json)
            .transpose()
            .map_err(|e| bad("opening_hours", &e))?;
        // The table's checks keep both at 1 or more.
        let positive = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok());
        let settings = Settings {
            opening_hours,
            max_calls: positive(row.max_calls),
            priority_ratio: positive(row.priority_ratio),
        };
        Ok(Tenant {
            id: row.id,
            slug: row.slug,
            name: row.name,
            timezone,
            settings,
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
        settings: Settings::default(),
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
        r#"select id as "id: TenantId", slug, name, timezone, opening_hours, max_calls, priority_ratio
           from tenants where slug = $1"#,
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
        r#"select id as "id: TenantId", slug, name, timezone, opening_hours, max_calls, priority_ratio
           from tenants order by slug"#
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Tenant::try_from).collect()
}

/// The tenant, its row locked until the transaction ends: a settings change reads and
/// writes the settings under this lock, so two changes at once do not lose one another.
pub async fn lock_tenant(conn: &mut PgConnection, tenant: TenantId) -> Result<Tenant, Error> {
    let row = sqlx::query_as!(
        TenantRow,
        r#"select id as "id: TenantId", slug, name, timezone, opening_hours, max_calls, priority_ratio
           from tenants where id = $1 for update"#,
        tenant.get()
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound(Entity::Tenant))?;
    Tenant::try_from(row)
}

/// Stores the tenant's time zone and settings (already validated).
pub async fn update_settings(
    conn: &mut PgConnection,
    tenant: TenantId,
    timezone: Tz,
    settings: &Settings,
) -> Result<(), Error> {
    let as_i32 = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    sqlx::query!(
        "update tenants set timezone = $2, opening_hours = $3, max_calls = $4, priority_ratio = $5
         where id = $1",
        tenant.get(),
        timezone.name(),
        settings.opening_hours.as_ref().map(OpeningHours::to_json),
        as_i32(settings.max_calls),
        as_i32(settings.priority_ratio),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How long a process trusts the tenant it read: a change of settings made by another
/// process sharing the database is seen within this time.
pub const TENANT_FRESHNESS: Duration = Duration::from_secs(1);

/// Tenants by slug, remembered by this process for [`TENANT_FRESHNESS`]: the hot paths
/// (issuing, the WebSocket handshake, polls) would otherwise read the tenant on every
/// request. A tenant's id, slug and name never change; its time zone and settings do
/// (`PATCH …/settings`), and the process that changes them remembers the new ones at once.
/// When a tenant's entry is stale, one request reads it again while the others go on with
/// the entry they have (a wave of handshakes must not all queue for the database).
/// Unknown slugs are not remembered, so a tenant created later is found at once.
#[derive(Default)]
pub struct KnownTenants {
    by_slug: RwLock<HashMap<String, KnownTenant>>,
    /// Settings changes made by this process, for readers that keep tenants of their own
    /// (the day closer) to read them again.
    settings_changes: AtomicU64,
}

struct KnownTenant {
    tenant: Tenant,
    read_at: Instant,
    /// When a request set out to read the stale entry again, if one has.
    refresh_started: Mutex<Option<Instant>>,
}

impl KnownTenants {
    /// The tenant, if this process has read it within [`TENANT_FRESHNESS`].
    fn fresh(&self, slug: &str) -> Option<Tenant> {
        self.by_slug
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slug)
            .filter(|known| known.read_at.elapsed() < TENANT_FRESHNESS)
            .map(|known| known.tenant.clone())
    }

    /// The tenant, if this process has read it recently, or if it is being read again
    /// (by another request); `None` tells the caller to read it.
    pub fn known(&self, slug: &str) -> Option<Tenant> {
        if let Some(tenant) = self.fresh(slug) {
            return Some(tenant);
        }
        let by_slug = self.by_slug.read().unwrap_or_else(PoisonError::into_inner);
        let known = by_slug.get(slug)?;
        let mut started = known
            .refresh_started
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *started {
            // A read that has not answered within the freshness time may have failed.
            Some(at) if at.elapsed() < TENANT_FRESHNESS => Some(known.tenant.clone()),
            _ => {
                *started = Some(Instant::now());
                None
            }
        }
    }

    /// The tenant: as known, or read (see [`KnownTenants::read`]).
    pub async fn get(&self, conn: &mut PgConnection, slug: &str) -> Result<Tenant, Error> {
        match self.known(slug) {
            Some(tenant) => Ok(tenant),
            None => self.read(conn, slug).await,
        }
    }

    /// Reads the tenant and remembers it: for a caller that [`KnownTenants::known`] told to.
    /// Callers that waited for a connection meanwhile find the tenant another has just read.
    pub async fn read(&self, conn: &mut PgConnection, slug: &str) -> Result<Tenant, Error> {
        if let Some(tenant) = self.fresh(slug) {
            return Ok(tenant);
        }
        let tenant = get_tenant(conn, slug).await?;
        self.remember(&tenant);
        Ok(tenant)
    }

    /// Remembers the tenant whose settings this process just changed.
    pub fn settings_changed(&self, tenant: &Tenant) {
        self.remember(tenant);
        self.settings_changes.fetch_add(1, Ordering::Release);
    }

    /// How many settings changes this process has made.
    pub fn settings_changes(&self) -> u64 {
        self.settings_changes.load(Ordering::Acquire)
    }

    /// Remembers the tenant as just read or changed.
    pub fn remember(&self, tenant: &Tenant) {
        let known = KnownTenant {
            tenant: tenant.clone(),
            read_at: Instant::now(),
            refresh_started: Mutex::new(None),
        };
        self.by_slug
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.slug.clone(), known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        Tenant {
            id: TenantId::new(),
            slug: "clinic".to_owned(),
            name: "Clinic".to_owned(),
            timezone: chrono_tz::UTC,
            settings: Settings::default(),
        }
    }

    /// Makes the remembered entry as old as `age`.
    fn age(known: &KnownTenants, slug: &str, age: Duration) {
        let mut by_slug = known.by_slug.write().unwrap();
        let entry = by_slug.get_mut(slug).unwrap();
        entry.read_at = Instant::now().checked_sub(age).unwrap();
    }

    #[test]
    fn a_stale_tenant_is_read_again_by_one_caller_while_the_others_use_it() {
        let known = KnownTenants::default();
        assert!(known.known("clinic").is_none(), "never read");
        known.remember(&tenant());
        assert!(known.known("clinic").is_some(), "fresh");

        age(&known, "clinic", TENANT_FRESHNESS * 2);
        assert!(
            known.known("clinic").is_none(),
            "the first caller reads it again"
        );
        assert!(known.known("clinic").is_some(), "the others go on with it");
        assert!(known.fresh("clinic").is_none());

        // A read that never came back: after the freshness time, another caller tries.
        {
            let by_slug = known.by_slug.read().unwrap();
            let started = Instant::now().checked_sub(TENANT_FRESHNESS * 2).unwrap();
            *by_slug["clinic"].refresh_started.lock().unwrap() = Some(started);
        }
        assert!(known.known("clinic").is_none());

        known.remember(&tenant());
        assert!(known.fresh("clinic").is_some(), "read again");
    }

    #[test]
    fn a_settings_change_is_remembered_and_counted() {
        let known = KnownTenants::default();
        let mut changed = tenant();
        changed.settings.max_calls = Some(2);
        known.settings_changed(&changed);
        assert_eq!(known.settings_changes(), 1);
        assert_eq!(known.known("clinic").unwrap().settings.max_calls, Some(2));
    }
}
