//! Service paces (mean handle time, desks at work) for the estimates in events, kept per
//! process for a few seconds.
//!
//! A pace is a read over the last hour of calls: cheap once, but not for every change of a
//! busy tenant. Estimates are estimates; a pace up to [`PACE_TTL`] old changes them by
//! little, and the value an event carries is stored with it, so replays still equal the
//! live stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;

use super::Error;
use crate::db;
use crate::domain::estimate::ServicePace;
use crate::domain::ids::{ServiceId, TenantId};

/// How long a tenant's paces are reused, by the server's clock.
pub const PACE_TTL: TimeDelta = TimeDelta::seconds(10);

pub type Paces = Arc<HashMap<ServiceId, ServicePace>>;

#[derive(Default)]
pub struct PaceCache {
    by_tenant: Mutex<HashMap<TenantId, (DateTime<Utc>, Paces)>>,
}

impl PaceCache {
    /// The tenant's paces as of at most [`PACE_TTL`] before `now`, read when older.
    pub async fn for_tenant(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        now: DateTime<Utc>,
    ) -> Result<Paces, Error> {
        if let Some(paces) = self.fresh(tenant, now) {
            return Ok(paces);
        }
        let paces = Arc::new(db::queue::service_paces(conn, tenant, now).await?);
        self.lock().insert(tenant, (now, paces.clone()));
        Ok(paces)
    }

    fn fresh(&self, tenant: TenantId, now: DateTime<Utc>) -> Option<Paces> {
        let cache = self.lock();
        let (read_at, paces) = cache.get(&tenant)?;
        // Requests of one batch come in a little out of order, so a pace read "after" `now`
        // by less than the TTL is fresh too; a clock that jumped further back is not
        // trusted.
        let age = now - *read_at;
        (age.abs() < PACE_TTL).then(|| paces.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (DateTime<Utc>, Paces)>> {
        self.by_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
