use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::domain::estimate::{
    DESK_WINDOW_MINS, HISTORY_TICKETS, HISTORY_WINDOW_DAYS, ServicePace,
};
use crate::domain::ids::{ServiceId, TenantId};
use crate::error::ApiError;

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
) -> Result<Vec<ServiceLoad>, ApiError> {
    let history_since = now - Duration::days(HISTORY_WINDOW_DAYS);
    let desks_since = now - Duration::minutes(DESK_WINDOW_MINS);
    let rows = sqlx::query!(
        r#"select s.id as "id: ServiceId", s.code, s.name, s.active,
                  (select count(*) from tickets t
                    where t.service_id = s.id and t.status = 'waiting') as "waiting!",
                  (select avg(extract(epoch from h.finished_at - h.called_at))::float8
                     from (select t.finished_at, t.called_at from tickets t
                            where t.service_id = s.id and t.status = 'done'
                              and t.finished_at > $2
                            order by t.finished_at desc limit $3) h) as mean_handle_secs,
                  (select count(distinct t.counter_id) from tickets t
                    where t.service_id = s.id and t.called_at > $4) as "recent_desks!"
           from services s where s.tenant_id = $1 order by s.code"#,
        tenant.get(),
        history_since,
        HISTORY_TICKETS,
        desks_since
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ServiceLoad {
                id: r.id,
                code: r.code,
                name: r.name,
                active: r.active,
                waiting: u32::try_from(r.waiting).map_err(ApiError::internal)?,
                pace: ServicePace {
                    mean_handle_secs: r.mean_handle_secs,
                    recent_desks: u32::try_from(r.recent_desks).map_err(ApiError::internal)?,
                },
            })
        })
        .collect()
}
