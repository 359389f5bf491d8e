//! The statistics query (`GET …/stats`): legs counted and timed in SQL.

use chrono::NaiveDate;
use chrono_tz::Tz;
use sqlx::PgConnection;

use super::Error;
use crate::domain::ids::TenantId;
use crate::domain::stats::{Ended, HourStats, OperatorStats, ServiceStats, Tally, Times};

/// What the legs of a range of days came to, per service, per operator, per local hour,
/// and in all.
#[derive(Debug, Default)]
pub struct Counted {
    pub totals: Tally,
    pub services: Vec<ServiceStats>,
    pub operators: Vec<OperatorStats>,
    pub hours: Vec<HourStats>,
}

/// Counts the legs of the tenant's tickets issued on the days `from..=to` (`service_day`),
/// with the hours of the day in `tz`. One statement: the legs are the `tickets` rows (each
/// ticket's last or current leg) and the `ticket_legs` rows (legs that ended in a transfer
/// out), both read by tenant and day through an index; one pass groups them four ways.
///
/// A leg that has not ended (its ticket waits, is called or served) counts in `issued` and
/// `arrivals` only. Rows from before the legs were kept fall back as the migration
/// `20261207140000_ticket_legs` says (`first_called_at` → `called_at`, `queued_at` →
/// `created_at`).
pub async fn count_legs(
    conn: &mut PgConnection,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
    tz: Tz,
) -> Result<Counted, Error> {
    let rows = sqlx::query!(
        r#"with legs as materialized (
               select t.service_id, t.operator_id, t.transfers = 0 as issued_here,
                      coalesce(t.queued_at, t.created_at) as queued_at, e.outcome,
                      case when e.outcome is not null then
                          extract(epoch from coalesce(t.first_called_at, t.called_at)
                                             - coalesce(t.queued_at, t.created_at))::float8
                      end as wait,
                      case when e.outcome = 'done' then
                          extract(epoch from t.finished_at - t.started_at)::float8
                      end as service
                 from tickets t
                cross join lateral (
                      select case when t.status in ('done', 'no_show', 'cancelled', 'expired')
                                  then t.status end as outcome
                 ) e
                where t.tenant_id = $1 and t.service_day between $2 and $3
               union all
               select l.service_id, l.operator_id, l.leg = 1, l.queued_at, 'transferred',
                      extract(epoch from l.first_called_at - l.queued_at)::float8,
                      extract(epoch from l.ended_at - l.started_at)::float8
                 from ticket_legs l
                where l.tenant_id = $1 and l.service_day between $2 and $3
           ),
           grouped as (
               select grouping(service_id, operator_id, hour) as grp,
                      service_id, operator_id, hour,
                      count(*) as legs,
                      count(*) filter (where issued_here) as issued,
                      count(*) filter (where outcome = 'done') as served,
                      count(*) filter (where outcome = 'no_show') as no_show,
                      count(*) filter (where outcome = 'cancelled') as cancelled,
                      count(*) filter (where outcome = 'expired') as expired,
                      count(*) filter (where outcome = 'transferred') as transferred,
                      count(outcome) as ended,
                      avg(wait) as wait_mean,
                      percentile_cont(array[0.5, 0.9]) within group (order by wait)
                          as wait_pct,
                      avg(service) as service_mean,
                      percentile_cont(array[0.5, 0.9]) within group (order by service)
                          as service_pct
                 from (select *, extract(hour from queued_at at time zone $4)::int4 as hour
                         from legs) l
                group by grouping sets ((service_id), (operator_id), (hour), ())
           )
           select g.grp as "grp!", g.service_id, g.operator_id, g.hour,
                  g.legs as "legs!", g.issued as "issued!", g.served as "served!",
                  g.no_show as "no_show!", g.cancelled as "cancelled!",
                  g.expired as "expired!", g.transferred as "transferred!",
                  g.wait_mean, g.wait_pct, g.service_mean, g.service_pct,
                  s.code as "service_code?", s.name as "service_name?",
                  u.username as "username?"
             from grouped g
             left join services s on g.grp = 3 and s.id = g.service_id
             left join users u on g.grp = 5 and u.id = g.operator_id
            where g.grp <> 5 or (g.operator_id is not null and g.ended > 0)"#,
        tenant.get(),
        from,
        to,
        tz.name()
    )
    .fetch_all(conn)
    .await?;

    let mut counted = Counted::default();
    for row in rows {
        let times = |mean: Option<f64>, pct: Option<Vec<f64>>| {
            let at = |i: usize| pct.as_ref().and_then(|p| p.get(i).copied());
            Times::new(mean, at(0), at(1))
        };
        let ended = Ended {
            served: row.served,
            no_show: row.no_show,
            cancelled: row.cancelled,
            expired: row.expired,
            transferred: row.transferred,
            wait_secs: times(row.wait_mean, row.wait_pct.clone()),
            service_secs: times(row.service_mean, row.service_pct),
        };
        let tally = Tally {
            issued: row.issued,
            ended,
        };
        let missing = |what: &str| Error::unexpected(anyhow::anyhow!("a stats row lacks {what}"));
        // `grouping()` sets a bit for each column left out: service 4, operator 2, hour 1.
        match row.grp {
            3 => counted.services.push(ServiceStats {
                id: row.service_id.ok_or_else(|| missing("its service"))?,
                code: row.service_code.ok_or_else(|| missing("a service code"))?,
                name: row.service_name.ok_or_else(|| missing("a service name"))?,
                tally,
            }),
            5 => counted.operators.push(OperatorStats {
                id: row.operator_id.ok_or_else(|| missing("its operator"))?,
                username: row.username.ok_or_else(|| missing("a username"))?,
                ended,
            }),
            6 => counted.hours.push(HourStats {
                hour: row
                    .hour
                    .and_then(|h| u32::try_from(h).ok())
                    .ok_or_else(|| missing("its hour"))?,
                arrivals: row.legs,
                mean_wait_secs: tally.ended.wait_secs.mean,
            }),
            7 => counted.totals = tally,
            grp => return Err(missing(&format!("a known grouping ({grp})"))),
        }
    }
    Ok(counted)
}
