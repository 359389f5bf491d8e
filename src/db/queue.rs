use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::domain::ticket::{Priority, WaitingCounts};

use super::Error;
use crate::domain::estimate::{
    DESK_WINDOW_MINS, HISTORY_TICKETS, HISTORY_WINDOW_DAYS, ServicePace,
};
use crate::domain::ids::{ServiceId, TenantId};

/// A service with its waiting count and recent pace.
#[derive(Debug, Clone)]
pub struct ServiceLoad {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
    pub active: bool,
    pub waiting: u32,
    pub pace: ServicePace,
}

/// Every service of the tenant with what wait estimates need (see `domain::estimate`).
pub async fn service_loads(
    conn: &mut PgConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Vec<ServiceLoad>, Error> {
    let paces = service_paces(conn, tenant, now).await?;
    let counts = waiting_counts(conn, tenant).await?;
    Ok(with_paces(counts, &paces))
}

/// A service's waiting counts, as stored.
#[derive(Debug, Clone)]
pub struct ServiceCount {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
    pub active: bool,
    pub waiting: WaitingCounts,
}

/// Joins counts with paces; a service without a pace gets the default.
pub fn with_paces(
    counts: Vec<ServiceCount>,
    paces: &HashMap<ServiceId, ServicePace>,
) -> Vec<ServiceLoad> {
    counts
        .into_iter()
        .map(|c| ServiceLoad {
            pace: paces.get(&c.id).copied().unwrap_or_default(),
            id: c.id,
            code: c.code,
            name: c.name,
            active: c.active,
            waiting: c.waiting.total(),
        })
        .collect()
}

/// The pace of every service of the tenant: a read over recent history, so it is kept
/// out of the tenant's serialised section (see `ticketing::paces`).
pub async fn service_paces(
    conn: &mut PgConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<HashMap<ServiceId, ServicePace>, Error> {
    let history_since = now - Duration::days(HISTORY_WINDOW_DAYS);
    let desks_since = now - Duration::minutes(DESK_WINDOW_MINS);
    let rows = sqlx::query!(
        r#"select s.id as "id: ServiceId",
                  (select avg(extract(epoch from h.finished_at - h.called_at))::float8
                     from (select t.finished_at, t.called_at from tickets t
                            where t.service_id = s.id and t.status = 'done'
                              and t.finished_at > $2
                            order by t.finished_at desc limit $3) h) as mean_handle_secs,
                  (select count(distinct t.counter_id) from tickets t
                    where t.service_id = s.id and t.called_at > $4) as "recent_desks!"
           from services s where s.tenant_id = $1"#,
        tenant.get(),
        history_since,
        HISTORY_TICKETS,
        desks_since
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let pace = ServicePace {
                mean_handle_secs: r.mean_handle_secs,
                recent_desks: u32::try_from(r.recent_desks).map_err(Error::unexpected)?,
            };
            Ok((r.id, pace))
        })
        .collect()
}

/// Every service of the tenant with its waiting counts, in code order.
pub async fn waiting_counts(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<ServiceCount>, Error> {
    Ok(waiting_counts_of(conn, &[tenant])
        .await?
        .into_iter()
        .map(|(_, count)| count)
        .collect())
}

/// Every service of the tenants with its waiting counts, by tenant, in code order.
pub async fn waiting_counts_of(
    conn: &mut PgConnection,
    tenants: &[TenantId],
) -> Result<Vec<(TenantId, ServiceCount)>, Error> {
    let tenants: Vec<uuid::Uuid> = tenants.iter().map(|t| t.get()).collect();
    let rows = sqlx::query!(
        r#"select tenant_id as "tenant_id: TenantId", id as "id: ServiceId", code, name,
                  active, waiting_normal, waiting_priority
             from services where tenant_id = any($1) order by tenant_id, code"#,
        &tenants
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let count = service_count(
                r.id,
                r.code,
                r.name,
                r.active,
                r.waiting_normal,
                r.waiting_priority,
            )?;
            Ok((r.tenant_id, count))
        })
        .collect()
}

/// Ticket changes, as the waiting counts see them.
pub struct QueueChanges<'a> {
    /// Per service: how its (normal, priority) waiting counts moved.
    pub moved: &'a [(ServiceId, i32, i32)],
    /// Tickets now waiting, whose places in their queues are needed for `ahead`.
    pub waiting: &'a [WaitingPlace],
}

/// A waiting ticket's place: its queue (service and priority class) and its key in it.
pub struct WaitingPlace {
    pub ticket: uuid::Uuid,
    pub service: ServiceId,
    pub priority: Priority,
    pub created_at: DateTime<Utc>,
}

/// Applies changes to the waiting counts and reads every service's counts of the tenants
/// after them (by tenant, in code order), with the number of tickets queued behind each of
/// `waiting` in its class (in that order), in one round trip: this runs while the tenants'
/// seq rows are locked.
pub async fn count_changes(
    conn: &mut PgConnection,
    tenants: &[TenantId],
    changes: QueueChanges<'_>,
) -> Result<(Vec<(TenantId, ServiceCount)>, Vec<u32>), Error> {
    let tenants: Vec<uuid::Uuid> = tenants.iter().map(|t| t.get()).collect();
    let services: Vec<uuid::Uuid> = changes.moved.iter().map(|a| a.0.get()).collect();
    let normal: Vec<i32> = changes.moved.iter().map(|a| a.1).collect();
    let priority: Vec<i32> = changes.moved.iter().map(|a| a.2).collect();
    // The places are passed in, not looked up: a join on `tickets` here was planned as a
    // sequential scan while the table was new, and kept.
    let waiting_ids: Vec<uuid::Uuid> = changes.waiting.iter().map(|w| w.ticket).collect();
    let waiting_services: Vec<uuid::Uuid> =
        changes.waiting.iter().map(|w| w.service.get()).collect();
    let waiting_priorities: Vec<&str> = changes
        .waiting
        .iter()
        .map(|w| w.priority.as_str())
        .collect();
    let waiting_since: Vec<DateTime<Utc>> = changes.waiting.iter().map(|w| w.created_at).collect();
    let rows = sqlx::query!(
        r#"with adjusted as (
               update services s
                  set waiting_normal = s.waiting_normal + d.normal,
                      waiting_priority = s.waiting_priority + d.priority
                 from unnest($2::uuid[], $3::int4[], $4::int4[]) as d(id, normal, priority)
                where s.id = d.id and s.tenant_id = any($1) and (d.normal <> 0 or d.priority <> 0)
               returning s.id, s.waiting_normal, s.waiting_priority
           ),
           behind as (
               select array_agg((select count(*) from tickets t
                                  where t.service_id = n.service_id and t.status = 'waiting'
                                    and (call_key(t.priority, t.created_at), t.id)
                                        > (call_key(n.priority, n.created_at), n.id)
                                    and call_key(t.priority, t.created_at)
                                        < call_class_end(n.priority))
                                order by n.ord) as counts
                 from unnest($5::uuid[], $6::uuid[], $7::text[], $8::timestamptz[])
                      with ordinality as n(id, service_id, priority, created_at, ord)
           )
           select s.tenant_id as "tenant_id: TenantId", s.id as "id: ServiceId", s.code,
                  s.name, s.active,
                  coalesce(a.waiting_normal, s.waiting_normal) as "waiting_normal!",
                  coalesce(a.waiting_priority, s.waiting_priority) as "waiting_priority!",
                  (select counts from behind) as "behind: Vec<i64>"
             from services s left join adjusted a on a.id = s.id
            where s.tenant_id = any($1)
            order by s.tenant_id, s.code"#,
        &tenants,
        &services,
        &normal,
        &priority,
        &waiting_ids,
        &waiting_services,
        &waiting_priorities as &[&str],
        &waiting_since
    )
    .fetch_all(conn)
    .await?;
    let behind = rows
        .first()
        .and_then(|r| r.behind.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|n| u32::try_from(n).map_err(Error::unexpected))
        .collect::<Result<Vec<_>, _>>()?;
    if behind.len() != changes.waiting.len() {
        return Err(Error::unexpected(anyhow::anyhow!(
            "{} waiting tickets, {} places",
            changes.waiting.len(),
            behind.len()
        )));
    }
    let counts = rows
        .into_iter()
        .map(|r| {
            let count = service_count(
                r.id,
                r.code,
                r.name,
                r.active,
                r.waiting_normal,
                r.waiting_priority,
            )?;
            Ok((r.tenant_id, count))
        })
        .collect::<Result<_, Error>>()?;
    Ok((counts, behind))
}

fn service_count(
    id: ServiceId,
    code: String,
    name: String,
    active: bool,
    normal: i32,
    priority: i32,
) -> Result<ServiceCount, Error> {
    Ok(ServiceCount {
        id,
        code,
        name,
        active,
        waiting: WaitingCounts {
            normal: u32::try_from(normal).map_err(Error::unexpected)?,
            priority: u32::try_from(priority).map_err(Error::unexpected)?,
        },
    })
}
