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
/// out), both read by tenant and day through an index; one sorted pass per grouping set
/// (service, operator, all) and a hash aggregate for the hours. `date_part` rather than
/// `extract`, which computes in numeric since PostgreSQL 14: slower on a year of tickets.
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
                      date_part('hour', coalesce(t.queued_at, t.created_at) at time zone $4)::int4
                          as hour,
                      e.outcome,
                      case when e.outcome is not null then
                          date_part('epoch', coalesce(t.first_called_at, t.called_at)
                                             - coalesce(t.queued_at, t.created_at))
                      end as wait,
                      case when e.outcome = 'done' then
                          date_part('epoch', t.finished_at - t.started_at)
                      end as service
                 from tickets t
                cross join lateral (
                      select case when t.status in ('done', 'no_show', 'cancelled', 'expired')
                                  then t.status end as outcome
                 ) e
                where t.tenant_id = $1 and t.service_day between $2 and $3
               union all
               select l.service_id, l.operator_id, l.leg = 1,
                      date_part('hour', l.queued_at at time zone $4)::int4, 'transferred',
                      date_part('epoch', l.first_called_at - l.queued_at),
                      date_part('epoch', l.ended_at - l.started_at)
                 from ticket_legs l
                where l.tenant_id = $1 and l.service_day between $2 and $3
           ),
           grouped as (
               select grouping(service_id, operator_id) as grp, service_id, operator_id,
                      null::int4 as hour,
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
                 from legs
                group by grouping sets ((service_id), (operator_id), ())
               union all
               -- The hours need no percentile, so no sort: a hash aggregate of their own.
               select 4, null, null, hour, count(*), 0, 0, 0, 0, 0, 0, 0, avg(wait), null,
                      null, null
                 from legs
                group by hour
           )
           select g.grp as "grp!", g.service_id, g.operator_id, g.hour,
                  g.legs as "legs!", g.issued as "issued!", g.served as "served!",
                  g.no_show as "no_show!", g.cancelled as "cancelled!",
                  g.expired as "expired!", g.transferred as "transferred!",
                  g.wait_mean, g.wait_pct, g.service_mean, g.service_pct,
                  s.code as "service_code?", s.name as "service_name?",
                  u.username as "username?"
             from grouped g
             left join services s on g.grp = 1 and s.id = g.service_id
             left join users u on g.grp = 2 and u.id = g.operator_id
            where g.grp <> 2 or (g.operator_id is not null and g.ended > 0)"#,
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
        // `grouping()` sets a bit for each column left out (service 2, operator 1); the
        // hours are 4.
        match row.grp {
            1 => counted.services.push(ServiceStats {
                id: row.service_id.ok_or_else(|| missing("its service"))?,
                code: row.service_code.ok_or_else(|| missing("a service code"))?,
                name: row.service_name.ok_or_else(|| missing("a service name"))?,
                tally,
            }),
            2 => counted.operators.push(OperatorStats {
                id: row.operator_id.ok_or_else(|| missing("its operator"))?,
                username: row.username.ok_or_else(|| missing("a username"))?,
                ended,
            }),
            4 => counted.hours.push(HourStats {
                hour: row
                    .hour
                    .and_then(|h| u32::try_from(h).ok())
                    .ok_or_else(|| missing("its hour"))?,
                arrivals: row.legs,
                mean_wait_secs: tally.ended.wait_secs.mean,
            }),
            3 => counted.totals = tally,
            grp => return Err(missing(&format!("a known grouping ({grp})"))),
        }
    }
    Ok(counted)
}
