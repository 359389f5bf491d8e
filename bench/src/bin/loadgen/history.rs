//! stats: a long history of a busy site written straight into the database, then
//! `GET …/stats` timed over a day, a month and the whole history. Tickets are generated
//! with SQL (`psql`), since issuing a year of them through the API would take hours; the
//! services, counters and operators they refer to are made through the API as usual.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use uuid::Uuid;

use nextup_bench::pg;
use nextup_bench::stats::Summary;

use crate::report::{Table, field};
use crate::setup::{self, Deployment, Needs};
use crate::{Common, Outcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Days of history, ending yesterday (UTC).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Tickets issued per day.
    #[arg(long, default_value_t = 500)]
    pub per_day: u32,
    #[arg(long, default_value_t = 4)]
    pub services: usize,
    /// Operators (each with a counter of their own).
    #[arg(long, default_value_t = 6)]
    pub operators: usize,
    /// Share of tickets transferred once, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub transfer_percent: f64,
    /// Timed requests per range (after one untimed warm-up).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// The figure the whole history's median must stay under, in ms.
    #[arg(long, default_value_t = 1000.0)]
    pub max_ms: f64,
}

pub async fn run(
    _common: &Common,
    args: &Args,
    deployment: &Deployment,
) -> anyhow::Result<Outcome> {
    if args.days == 0 || args.per_day == 0 || args.services < 2 || args.operators == 0 {
        bail!("--days, --per-day and --operators must be positive, and --services at least 2");
    }
    if args.per_day > 999 {
        bail!("--per-day is at most 999 (three-digit ticket codes)");
    }
    let database_url = deployment
        .database_url()
        .context("stats writes its history straight into the database: give --database-url")?
        .to_owned();
    let slug = deployment.slugs[0].clone();
    let tenant = setup::ready_tenant(
        deployment,
        &slug,
        Needs {
            services: args.services,
            counters: args.operators,
            operator: false,
        },
    )
    .await?;
    let mut operators = Vec::new();
    for i in 0..args.operators {
        let name = format!("stats-operator-{}", i + 1);
        let user = tenant
            .admin
            .create_user(&name, &format!("{name}-password"), "operator")
            .await
            .with_context(|| format!("cannot create {name} (use a fresh tenant)"))?;
        operators.push(user.id);
    }

    // The history ends yesterday, by the database's clock (the tenant is in UTC).
    let dates = pg::run_sql(
        &database_url,
        &format!(
            "set time zone 'UTC'; select current_date - {}, current_date - 30, current_date - 1",
            args.days
        ),
        Duration::from_secs(60),
    )
    .await?;
    let dates: Vec<String> = dates.trim().split('|').map(str::to_owned).collect();
    let [first, month, last] = dates.as_slice() else {
        bail!("cannot read the dates of the history from psql: {dates:?}");
    };
    eprintln!(
        "loadgen: writing {} tickets ({} days × {}) into {slug}",
        u64::from(args.days) * u64::from(args.per_day),
        args.days,
        args.per_day
    );
    let started = Instant::now();
    pg::run_sql(
        &database_url,
        &history_sql(
            &slug,
            first,
            last,
            args,
            &tenant.services,
            &tenant.counters,
            &operators,
        ),
        Duration::from_secs(1800),
    )
    .await?;
    let generated = started.elapsed();
    deployment.analyze().await?;
    let counts = pg::run_sql(
        &database_url,
        "select (select count(*) from tickets) || ' ' || (select count(*) from ticket_legs)",
        Duration::from_secs(60),
    )
    .await?;
    eprintln!(
        "loadgen: written in {:.1} s (tickets, legs: {})",
        generated.as_secs_f64(),
        counts.trim()
    );

    let ranges = [
        ("1 day", last, last),
        ("30 days", month, last),
        ("whole history", first, last),
    ];
    let mut table = Table::new(&["range", "format", "bytes", "min", "p50", "max"]);
    let mut results = Vec::new();
    let mut whole_p50 = f64::INFINITY;
    for (name, from, to) in ranges {
        for format in ["json", "csv"] {
            let path = format!("/api/v1/tenants/{slug}/stats?from={from}&to={to}&format={format}");
            let body = tenant.admin.get_text(&path).await?;
            let mut times = Vec::with_capacity(args.runs);
            for _ in 0..args.runs {
                let started = Instant::now();
                tenant.admin.get_text(&path).await?;
                times.push(started.elapsed());
            }
            let summary = Summary::of_millis(&times);
            if name == "whole history" && format == "json" {
                whole_p50 = summary.map_or(f64::INFINITY, |s| s.p50);
            }
            table.row(vec![
                name.to_owned(),
                format.to_owned(),
                body.len().to_string(),
                field(summary.as_ref(), |s| s.min),
                field(summary.as_ref(), |s| s.p50),
                field(summary.as_ref(), |s| s.max),
            ]);
            results.push(json!({
                "range": name, "from": from, "to": to, "format": format,
                "bytes": body.len(), "latency_ms": summary,
            }));
        }
    }
    let mut text = format!(
        "stats: {} days × {} tickets ({} services, {} operators, {} % transferred), \
         written in {:.1} s; tickets, legs: {}\n",
        args.days,
        args.per_day,
        args.services,
        args.operators,
        args.transfer_percent,
        generated.as_secs_f64(),
        counts.trim()
    );
    text.push_str(&format!(
        "GET …/stats, {} timed requests per line (ms, request to last byte):\n",
        args.runs
    ));
    text.push_str(&table.render());
    text.push_str(&format!(
        "whole history, JSON: p50 {whole_p50:.1} ms (target < {:.0} ms)\n",
        args.max_ms
    ));
    let json = json!({
        "config": {
            "days": args.days, "per_day": args.per_day, "services": args.services,
            "operators": args.operators, "transfer_percent": args.transfer_percent,
            "runs": args.runs,
        },
        "generated_secs": generated.as_secs_f64(),
        "results": results,
    });
    Ok(Outcome {
        text,
        json,
        passed: whole_p50 < args.max_ms,
    })
}

fn uuid_array(ids: &[Uuid]) -> String {
    let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    format!("'{{{}}}'::uuid[]", list.join(","))
}

/// One statement per table. Each ticket is issued between 08:00 and 18:00 UTC and ends
/// done (80 %), no-show (8 %), cancelled while waiting (5 %) or expired at 20:00 (7 %);
/// waits are up to 20 minutes and service times 1 to 11 minutes, at random. A transferred
/// ticket was first served for a while in the next service.
fn history_sql(
    slug: &str,
    first: &str,
    last: &str,
    args: &Args,
    services: &[Uuid],
    counters: &[Uuid],
    operators: &[Uuid],
) -> String {
    format!(
        r#"
begin;
create temporary table gen on commit drop as
select gen_random_uuid() as id, d::date as day, n,
       1 + (n + (d::date - date '2000-01-01')) % {services_len} as si,
       1 + floor(random() * {operators_len})::int as oi,
       random() as r_end, random() < {transfer} as moved,
       (random() * 1200)::int as w1, 60 + (random() * 600)::int as s1,
       (random() * 1200)::int as w2, 60 + (random() * 600)::int as s2,
       d + interval '8 hours' + n * interval '10 hours' / {per_day} as issued
  from generate_series(timestamp '{first}', timestamp '{last}', interval '1 day') d,
       generate_series(1, {per_day}) n;

insert into tickets (id, tenant_id, service_id, code, service_day, status, priority,
                     call_count, counter_id, operator_id, created_at, called_at,
                     first_called_at, started_at, finished_at, queued_at, transfers)
select g.id, t.id, ({services})[g.si], s.code || lpad(g.n::text, 3, '0'), g.day, e.status,
       'normal', case when e.called then 1 else 0 end,
       case when e.called then ({counters})[g.oi] end,
       case when e.called then ({operators})[g.oi] end,
       g.issued at time zone 'UTC',
       case when e.called then q.at + g.w2 * interval '1 second' end,
       case when e.called then q.at + g.w2 * interval '1 second' end,
       case when e.status = 'done' then q.at + (g.w2 + 30) * interval '1 second' end,
       case e.status
            when 'done' then q.at + (g.w2 + 30 + g.s2) * interval '1 second'
            when 'no_show' then q.at + (g.w2 + 60) * interval '1 second'
            when 'cancelled' then q.at + interval '5 minutes'
            else (g.day + interval '20 hours') at time zone 'UTC' end,
       case when g.moved then q.at end,
       case when g.moved then 1 else 0 end
  from gen g
  join tenants t on t.slug = '{slug}'
  join services s on s.id = ({services})[g.si]
 cross join lateral (
       select case when g.r_end < 0.80 then 'done' when g.r_end < 0.88 then 'no_show'
                   when g.r_end < 0.93 then 'cancelled' else 'expired' end as status,
              g.r_end < 0.88 as called
 ) e
 cross join lateral (
       select (g.issued + case when g.moved then (g.w1 + 30 + g.s1) * interval '1 second'
                               else interval '0' end) at time zone 'UTC' as at
 ) q;

insert into ticket_legs (ticket_id, leg, tenant_id, service_id, service_day, counter_id,
                         operator_id, queued_at, first_called_at, started_at, ended_at)
select g.id, 1, t.id, ({services})[1 + g.si % {services_len}], g.day,
       ({counters})[g.oi], ({operators})[g.oi],
       g.issued at time zone 'UTC',
       (g.issued + g.w1 * interval '1 second') at time zone 'UTC',
       (g.issued + (g.w1 + 30) * interval '1 second') at time zone 'UTC',
       (g.issued + (g.w1 + 30 + g.s1) * interval '1 second') at time zone 'UTC'
  from gen g, tenants t
 where t.slug = '{slug}' and g.moved;
commit;
"#,
        services = uuid_array(services),
        services_len = services.len(),
        counters = uuid_array(counters),
        operators = uuid_array(operators),
        operators_len = operators.len(),
        transfer = args.transfer_percent / 100.0,
        per_day = args.per_day,
    )
}
