use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::error::stored;
use super::{Conflict, Error, OnConstraint};
use crate::domain::call_order::{CallRules, Turn};
use crate::domain::ids::{CounterId, ServiceId, TenantId, TicketId, UserId};
use crate::domain::ticket::{Priority, Status};

/// A ticket with the names of what it refers to: everything either projection needs.
#[derive(Debug, Clone)]
pub struct TicketRecord {
    pub id: TicketId,
    pub code: String,
    pub status: Status,
    pub priority: Priority,
    pub call_count: i32,
    pub customer_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub called_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub service_id: ServiceId,
    pub service_code: String,
    pub service_name: String,
    pub counter_id: Option<CounterId>,
    pub counter_name: Option<String>,
    pub operator_id: Option<UserId>,
    pub operator_username: Option<String>,
}

/// A [`TicketRecord`] as its queries return it, status and priority still text.
#[derive(Debug)]
struct TicketRow {
    id: TicketId,
    code: String,
    status: String,
    priority: String,
    call_count: i32,
    customer_name: Option<String>,
    created_at: DateTime<Utc>,
    called_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    service_id: ServiceId,
    service_code: String,
    service_name: String,
    counter_id: Option<CounterId>,
    counter_name: Option<String>,
    operator_id: Option<UserId>,
    operator_username: Option<String>,
}

/// Status and priority are read here, once: past `db/` they are typed.
impl TryFrom<TicketRow> for TicketRecord {
    type Error = Error;

    fn try_from(row: TicketRow) -> Result<Self, Error> {
        Ok(TicketRecord {
            id: row.id,
            code: row.code,
            status: stored(&row.status)?,
            priority: stored(&row.priority)?,
            call_count: row.call_count,
            customer_name: row.customer_name,
            created_at: row.created_at,
            called_at: row.called_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            service_id: row.service_id,
            service_code: row.service_code,
            service_name: row.service_name,
            counter_id: row.counter_id,
            counter_name: row.counter_name,
            operator_id: row.operator_id,
            operator_username: row.operator_username,
        })
    }
}

#[cfg(test)]
impl TicketRecord {
    /// A waiting normal ticket `A001` of service `A`, for tests to adjust.
    pub fn sample() -> Self {
        TicketRecord {
            id: TicketId::new(),
            code: "A001".into(),
            status: Status::Waiting,
            priority: Priority::Normal,
            call_count: 0,
            customer_name: None,
            created_at: Utc::now(),
            called_at: None,
            started_at: None,
            finished_at: None,
            service_id: ServiceId::new(),
            service_code: "A".into(),
            service_name: "General".into(),
            counter_id: None,
            counter_name: None,
            operator_id: None,
            operator_username: None,
        }
    }
}

/// The fields of a locked ticket that transitions look at.
#[derive(Debug, Clone)]
pub struct LockedTicket {
    pub id: TicketId,
    pub status: Status,
    pub service_id: ServiceId,
    pub call_count: u32,
}

/// How many numbers a batch takes from one service's day.
pub struct NumberClaim {
    pub service: ServiceId,
    pub day: NaiveDate,
    pub count: u32,
}

/// Hands out `count` consecutive numbers per claim in one upsert, returning the last
/// number of each claim's range (in claim order). Claims are locked in the order given:
/// sort them, so two batches never wait on each other's rows crosswise.
pub async fn claim_numbers(
    conn: &mut PgConnection,
    claims: &[NumberClaim],
) -> Result<Vec<u32>, Error> {
    let services: Vec<uuid::Uuid> = claims.iter().map(|c| c.service.get()).collect();
    let days: Vec<NaiveDate> = claims.iter().map(|c| c.day).collect();
    let counts = claims
        .iter()
        .map(|c| i32::try_from(c.count).map_err(Error::unexpected))
        .collect::<Result<Vec<i32>, _>>()?;
    let rows = sqlx::query!(
        r#"insert into daily_numbers (service_id, service_day, last_number)
           select * from unnest($1::uuid[], $2::date[], $3::int4[])
           on conflict (service_id, service_day)
           do update set last_number = daily_numbers.last_number + excluded.last_number
           returning service_id as "service_id: ServiceId", service_day, last_number"#,
        &services,
        &days,
        &counts
    )
    .fetch_all(conn)
    .await?;
    claims
        .iter()
        .map(|claim| {
            let row = rows
                .iter()
                .find(|r| r.service_id == claim.service && r.service_day == claim.day)
                .ok_or_else(|| Error::unexpected(anyhow::anyhow!("a number claim got no row")))?;
            u32::try_from(row.last_number).map_err(Error::unexpected)
        })
        .collect()
}

/// A ticket about to be issued, with its id and number already chosen.
pub struct IssuedTicket<'a> {
    pub tenant: TenantId,
    pub id: TicketId,
    pub service: ServiceId,
    pub code: &'a str,
    pub service_day: NaiveDate,
    pub priority: Priority,
    pub customer_name: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

/// Inserts waiting tickets (of any tenants) in one statement.
pub async fn insert_tickets(
    conn: &mut PgConnection,
    tickets: &[IssuedTicket<'_>],
) -> Result<(), Error> {
    let tenants: Vec<uuid::Uuid> = tickets.iter().map(|t| t.tenant.get()).collect();
    let ids: Vec<uuid::Uuid> = tickets.iter().map(|t| t.id.get()).collect();
    let services: Vec<uuid::Uuid> = tickets.iter().map(|t| t.service.get()).collect();
    let codes: Vec<&str> = tickets.iter().map(|t| t.code).collect();
    let days: Vec<NaiveDate> = tickets.iter().map(|t| t.service_day).collect();
    let priorities: Vec<&str> = tickets.iter().map(|t| t.priority.as_str()).collect();
    let names: Vec<Option<&str>> = tickets.iter().map(|t| t.customer_name).collect();
    let created: Vec<DateTime<Utc>> = tickets.iter().map(|t| t.created_at).collect();
    sqlx::query!(
        "insert into tickets (id, tenant_id, service_id, code, service_day, status, priority,
                              customer_name, created_at)
         select t.id, t.tenant_id, t.service_id, t.code, t.service_day, 'waiting', t.priority,
                t.customer_name, t.created_at
           from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::date[], $6::text[],
                       $7::text[], $8::timestamptz[])
                as t(tenant_id, id, service_id, code, service_day, priority, customer_name,
                     created_at)",
        &tenants,
        &ids,
        &services,
        &codes as &[&str],
        &days,
        &priorities as &[&str],
        &names as &[Option<&str>],
        &created
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn locked(
    id: TicketId,
    status: &str,
    service_id: ServiceId,
    call_count: i32,
) -> Result<LockedTicket, Error> {
    Ok(LockedTicket {
        id,
        status: stored(status)?,
        service_id,
        call_count: u32::try_from(call_count).map_err(Error::unexpected)?,
    })
}

/// Locks one ticket of the tenant for the rest of the transaction.
pub async fn lock_ticket(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: TicketId,
) -> Result<Option<LockedTicket>, Error> {
    let row = sqlx::query!(
        r#"select id as "id: TicketId", status, service_id as "service_id: ServiceId",
                  call_count
           from tickets where tenant_id = $1 and id = $2 for update"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| locked(r.id, &r.status, r.service_id, r.call_count))
        .transpose()
}

/// The changed ticket of a row whose ticket columns are all nullable (the change may not
/// have happened): `Ok(None)` when it did not.
macro_rules! changed_record {
    ($row:expr) => {
        (|| {
            Some(TicketRow {
                id: $row.id?,
                code: $row.code?,
                status: $row.status?,
                priority: $row.priority?,
                call_count: $row.call_count?,
                customer_name: $row.customer_name,
                created_at: $row.created_at?,
                called_at: $row.called_at,
                started_at: $row.started_at,
                finished_at: $row.finished_at,
                service_id: $row.service_id?,
                service_code: $row.service_code?,
                service_name: $row.service_name?,
                counter_id: $row.counter_id,
                counter_name: $row.counter_name,
                operator_id: $row.operator_id,
                operator_username: $row.operator_username,
            })
        })()
        .map(TicketRecord::try_from)
        .transpose()
    };
}

/// What call-next found at the counter.
pub enum NextCall {
    /// No such counter in the tenant.
    NoCounter,
    /// An admin deactivated the counter.
    CounterInactive,
    /// The counter holds a called or serving ticket.
    CounterBusy,
    /// One of the services asked for is not the tenant's.
    UnknownService,
    /// Nobody waits (in the services asked for).
    NobodyWaiting,
    Called(Box<TicketRecord>),
}

/// Call-next in one round trip: locks the counter (so calls to one counter are serialised)
/// and, unless it is inactive, holds a called or serving ticket or a service asked for is
/// unknown, calls
/// the ticket to call next among the waiting tickets of the given services (all when
/// `None`) issued since `rules.issued_since`: the first in the call order (`call_key` and
/// id), or on the counter's fair turn (`fair_turn` of its streak and `rules`' ratio) the
/// oldest normal ticket if one waits. The counter's streak moves with the ticket called
/// (`streak_after`). The checks come in that order. Rows locked by a concurrent call are
/// skipped, so two operators never take the same ticket.
///
/// The candidates are read off the waiting index in the call order, no sort: the first
/// ticket, and on a fair turn the first normal one too; `turn_key` picks between those
/// two. This is [`call_next_many`] for one counter, with services, and
/// [`preview_next`] without the locks and the changes.
///
/// Within a process a tenant's changes are made one after another, so the busy check is
/// exact. When another process called to this counter while this statement waited for the
/// counter's lock, the check was read before that commit: the unique index on active
/// tickets per counter then refuses the call (`counter_busy`), which
/// `changes::writer` answers alone. The streak is read under the counter's lock, after
/// that wait, so it is the latest.
pub async fn call_next_waiting(
    conn: &mut PgConnection,
    tenant: TenantId,
    counter: CounterId,
    services: Option<&[uuid::Uuid]>,
    operator: UserId,
    now: DateTime<Utc>,
    rules: CallRules,
) -> Result<NextCall, Error> {
    let row = sqlx::query!(
        r#"with desk as (
               select c.id, fair_turn(c.priority_streak, $6) as fair, c.active,
                      exists (select 1 from busy_counters b where b.counter_id = c.id) as busy,
                      exists (select 1 from unnest($2::uuid[]) wanted(id)
                               where not exists (select 1 from services s
                                                  where s.tenant_id = $1
                                                    and s.id = wanted.id)) as unknown
                 from counters c
                where c.tenant_id = $1 and c.id = $3
                  for update of c
           ),
           first as (
               select w.* from desk cross join lateral (
                      select t.id, t.priority, t.created_at from tickets t
                       where desk.active and not desk.busy and not desk.unknown
                         and t.tenant_id = $1 and t.status = 'waiting'
                         and t.created_at >= $7
                         and ($2::uuid[] is null or t.service_id = any($2))
                       order by call_key(t.priority, t.created_at), t.id
                       limit 1
                         for update of t skip locked
                 ) w
           ),
           first_normal as (
               select w.* from desk cross join lateral (
                      select t.id, t.priority, t.created_at from tickets t
                       where desk.fair and desk.active and not desk.busy and not desk.unknown
                         and t.tenant_id = $1 and t.status = 'waiting'
                         and call_key(t.priority, t.created_at) >= call_class_end('priority')
                         and t.created_at >= $7
                         and ($2::uuid[] is null or t.service_id = any($2))
                       order by call_key(t.priority, t.created_at), t.id
                       limit 1
                         for update of t skip locked
                 ) w
           ),
           next as (
               select c.id from (select * from first union select * from first_normal) c, desk
                order by turn_key(c.priority, c.created_at, desk.fair), c.id
                limit 1
           ),
           t as (
               update tickets set status = 'called', counter_id = $3, operator_id = $4,
                      called_at = $5, first_called_at = $5, call_count = call_count + 1
                 from next
                where tickets.id = next.id
               returning tickets.*
           ),
           streak as (
               update counters set priority_streak = streak_after(counters.priority_streak, t.priority)
                 from t
                where counters.id = t.counter_id
                  and counters.priority_streak <> streak_after(counters.priority_streak, t.priority)
           )
           select desk.active as "active!", desk.busy as "busy!", desk.unknown as "unknown!",
                  t.id as "id?: TicketId", t.code as "code?", t.status as "status?",
                  t.priority as "priority?", t.call_count as "call_count?",
                  t.customer_name, t.created_at as "created_at?", t.called_at,
                  t.started_at, t.finished_at,
                  s.id as "service_id?: ServiceId", s.code as "service_code?",
                  s.name as "service_name?",
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from desk
             left join t on true
             left join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id"#,
        tenant.get(),
        services,
        counter.get(),
        operator.get(),
        now,
        ratio_column(rules.priority_ratio),
        rules.issued_since
    )
    .fetch_optional(conn)
    .await
    .on_constraint("tickets_counter_active_key", Conflict::CounterBusy.into())?;
    let Some(row) = row else {
        return Ok(NextCall::NoCounter);
    };
    if !row.active {
        return Ok(NextCall::CounterInactive);
    }
    if row.busy {
        return Ok(NextCall::CounterBusy);
    }
    if row.unknown {
        return Ok(NextCall::UnknownService);
    }
    let called = changed_record!(row)?;
    Ok(match called {
        Some(record) => NextCall::Called(Box::new(record)),
        None => NextCall::NobodyWaiting,
    })
}

/// A fair ratio as the database stores it (settings keep it within 32 bits).
fn ratio_column(ratio: Option<u32>) -> Option<i32> {
    ratio.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// What call-next would take at a counter now: the ticket, and what decided it.
pub enum NextPreview {
    /// No such counter in the tenant.
    NoCounter,
    /// An admin deactivated the counter: call-next would refuse.
    CounterInactive,
    /// One of the services asked for is not the tenant's.
    UnknownService,
    Found {
        /// `None` when nobody waits (in the services asked for).
        ticket: Option<TicketId>,
        /// Whether a priority ticket waits among them.
        priority_waits: bool,
        /// The counter's priority tickets called in a row.
        priority_streak: u32,
    },
}

/// The ticket [`call_next_waiting`] would call to the counter now, by the same rules and
/// SQL functions, read without locking or changing anything. A busy counter is answered
/// too: what it would take once free; an inactive one is not (`CounterInactive`), as
/// call-next would refuse it whatever waits.
pub async fn preview_next(
    conn: &mut PgConnection,
    tenant: TenantId,
    counter: CounterId,
    services: Option<&[uuid::Uuid]>,
    rules: CallRules,
) -> Result<NextPreview, Error> {
    let row = sqlx::query!(
        r#"with desk as (
               select c.priority_streak, fair_turn(c.priority_streak, $4) as fair, c.active,
                      exists (select 1 from unnest($2::uuid[]) wanted(id)
                               where not exists (select 1 from services s
                                                  where s.tenant_id = $1
                                                    and s.id = wanted.id)) as unknown
                 from counters c
                where c.tenant_id = $1 and c.id = $3
           ),
           first as (
               select w.* from desk cross join lateral (
                      select t.id, t.priority, t.created_at from tickets t
                       where not desk.unknown
                         and t.tenant_id = $1 and t.status = 'waiting'
                         and t.created_at >= $5
                         and ($2::uuid[] is null or t.service_id = any($2))
                       order by call_key(t.priority, t.created_at), t.id
                       limit 1
                 ) w
           ),
           first_normal as (
               select w.* from desk cross join lateral (
                      select t.id, t.priority, t.created_at from tickets t
                       where desk.fair and not desk.unknown
                         and t.tenant_id = $1 and t.status = 'waiting'
                         and call_key(t.priority, t.created_at) >= call_class_end('priority')
                         and t.created_at >= $5
                         and ($2::uuid[] is null or t.service_id = any($2))
                       order by call_key(t.priority, t.created_at), t.id
                       limit 1
                 ) w
           ),
           next as (
               select c.id from (select * from first union select * from first_normal) c, desk
                order by turn_key(c.priority, c.created_at, desk.fair), c.id
                limit 1
           )
           select desk.priority_streak as "priority_streak!", desk.active as "active!",
                  desk.unknown as "unknown!",
                  next.id as "id?: TicketId",
                  exists (select 1 from first where first.priority = 'priority')
                      as "priority_waits!"
             from desk
             left join next on true"#,
        tenant.get(),
        services,
        counter.get(),
        ratio_column(rules.priority_ratio),
        rules.issued_since
    )
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(NextPreview::NoCounter);
    };
    if !row.active {
        return Ok(NextPreview::CounterInactive);
    }
    if row.unknown {
        return Ok(NextPreview::UnknownService);
    }
    Ok(NextPreview::Found {
        ticket: row.id,
        priority_waits: row.priority_waits,
        priority_streak: u32::try_from(row.priority_streak).map_err(Error::unexpected)?,
    })
}

/// A statement over many items answers one row per item.
fn one_row_each(items: usize, rows: usize) -> Result<(), Error> {
    if items == rows {
        Ok(())
    } else {
        Err(Error::unexpected(anyhow::anyhow!(
            "{items} items came back as {rows} rows"
        )))
    }
}

/// One call-next from all services, for [`call_next_many`].
pub struct CallNextAt {
    pub tenant: TenantId,
    pub counter: CounterId,
    pub operator: UserId,
    pub now: DateTime<Utc>,
    pub rules: CallRules,
}

/// Call-next from all services at several distinct counters, of any tenants, in one round
/// trip: each counter is locked (in id order) and checked as in [`call_next_waiting`], and
/// the active free ones of each tenant take that tenant's next waiting tickets by the same rules.
/// Returns what each found, and its counter's turn, in the order given.
///
/// The counters on a fair turn take theirs first, in the order given, each the first of
/// what is left by `turn_key` on a fair turn (the oldest normal ticket, or a priority one
/// when no normal one is left); then the others, in the order given, each the first of
/// what is left in the call order. That is what they would take one after another in that
/// order, which is an order the requests in flight together could have come in (the caller
/// logs their changes in that order too, so the log reads as that order). The
/// candidates are read off the waiting index in the call order, no sort: as many of the
/// first tickets as there are calls, and as many of the first normal ones as there are
/// fair turns, which is all those calls can take. The bound on the issue time is the
/// latest of the tenant's calls (they differ only across the close of a day).
pub async fn call_next_many(
    conn: &mut PgConnection,
    calls: &[CallNextAt],
) -> Result<Vec<(NextCall, Turn)>, Error> {
    let tenants: Vec<uuid::Uuid> = calls.iter().map(|c| c.tenant.get()).collect();
    let counters: Vec<uuid::Uuid> = calls.iter().map(|c| c.counter.get()).collect();
    let operators: Vec<uuid::Uuid> = calls.iter().map(|c| c.operator.get()).collect();
    let now: Vec<DateTime<Utc>> = calls.iter().map(|c| c.now).collect();
    let ratios: Vec<Option<i32>> = calls
        .iter()
        .map(|c| ratio_column(c.rules.priority_ratio))
        .collect();
    let since: Vec<DateTime<Utc>> = calls.iter().map(|c| c.rules.issued_since).collect();
    let rows = sqlx::query!(
        r#"with req as (
               select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[],
                                    $5::int4[], $6::timestamptz[])
                        with ordinality
                        as r(tenant_id, counter_id, operator_id, at, ratio, since, ord)
           ),
           desk as (
               select c.id, c.priority_streak, c.active,
                      exists (select 1 from busy_counters b where b.counter_id = c.id) as busy
                 from counters c join req r on r.counter_id = c.id and r.tenant_id = c.tenant_id
                order by c.id
                  for update of c
           ),
           free as (
               select r.tenant_id, r.counter_id, r.operator_id, r.at, r.since, f.fair,
                      row_number() over (partition by r.tenant_id, f.fair order by r.ord) as n
                 from req r join desk on desk.id = r.counter_id
                 cross join lateral (select fair_turn(desk.priority_streak, r.ratio) as fair) f
                where desk.active and not desk.busy
           ),
           wanted as (
               select tenant_id, max(since) as since, count(*) as calls,
                      count(*) filter (where fair) as fair_calls
                 from free group by tenant_id
           ),
           first as (
               select w.* from wanted cross join lateral (
                      select t.id, t.tenant_id, t.priority, t.created_at from tickets t
                       where t.tenant_id = wanted.tenant_id and t.status = 'waiting'
                         and t.created_at >= wanted.since
                       order by call_key(t.priority, t.created_at), t.id
                       limit wanted.calls
                         for update of t skip locked
                 ) w
           ),
           first_normal as (
               select w.* from wanted cross join lateral (
                      select t.id, t.tenant_id, t.priority, t.created_at from tickets t
                       where t.tenant_id = wanted.tenant_id and t.status = 'waiting'
                         and call_key(t.priority, t.created_at) >= call_class_end('priority')
                         and t.created_at >= wanted.since
                       order by call_key(t.priority, t.created_at), t.id
                       limit wanted.fair_calls
                         for update of t skip locked
                 ) w
           ),
           candidate as (
               select * from first union select * from first_normal
           ),
           fair_next as (
               select id, tenant_id,
                      row_number() over (partition by tenant_id
                                         order by turn_key(priority, created_at, true), id) as n
                 from candidate
           ),
           usual_next as (
               select c.id, c.tenant_id,
                      row_number() over (partition by c.tenant_id
                                         order by turn_key(c.priority, c.created_at, false),
                                                  c.id) as n
                 from candidate c
                 join fair_next f on f.id = c.id
                 join wanted on wanted.tenant_id = c.tenant_id
                where f.n > wanted.fair_calls
           ),
           next as (
               select free.counter_id, free.operator_id, free.at, f.id
                 from free join fair_next f on f.tenant_id = free.tenant_id and f.n = free.n
                where free.fair
               union all
               select free.counter_id, free.operator_id, free.at, u.id
                 from free join usual_next u on u.tenant_id = free.tenant_id and u.n = free.n
                where not free.fair
           ),
           t as (
               update tickets set status = 'called', counter_id = next.counter_id,
                      operator_id = next.operator_id, called_at = next.at,
                      first_called_at = next.at, call_count = call_count + 1
                 from next
                where tickets.id = next.id
               returning tickets.*
           ),
           streak as (
               update counters set priority_streak = streak_after(counters.priority_streak, t.priority)
                 from t
                where counters.id = t.counter_id
                  and counters.priority_streak <> streak_after(counters.priority_streak, t.priority)
           )
           select r.ord as "ord!", desk.id is not null as "found!",
                  coalesce(desk.active, true) as "active!",
                  coalesce(desk.busy, false) as "busy!", coalesce(free.fair, false) as "fair!",
                  t.id as "id?: TicketId", t.code as "code?", t.status as "status?",
                  t.priority as "priority?", t.call_count as "call_count?",
                  t.customer_name, t.created_at as "created_at?", t.called_at,
                  t.started_at, t.finished_at,
                  s.id as "service_id?: ServiceId", s.code as "service_code?",
                  s.name as "service_name?",
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from req r
             left join desk on desk.id = r.counter_id
             left join free on free.counter_id = r.counter_id
             left join t on t.counter_id = r.counter_id
             left join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id
            order by r.ord"#,
        &tenants,
        &counters,
        &operators,
        &now,
        &ratios as &[Option<i32>],
        &since
    )
    .fetch_all(conn)
    .await
    .on_constraint("tickets_counter_active_key", Conflict::CounterBusy.into())?;
    one_row_each(calls.len(), rows.len())?;
    rows.into_iter()
        .map(|row| {
            let turn = if row.fair { Turn::Fair } else { Turn::Usual };
            if !row.found {
                return Ok((NextCall::NoCounter, turn));
            }
            if !row.active {
                return Ok((NextCall::CounterInactive, turn));
            }
            if row.busy {
                return Ok((NextCall::CounterBusy, turn));
            }
            let next = match changed_record!(row)? {
                Some(record) => NextCall::Called(Box::new(record)),
                None => NextCall::NobodyWaiting,
            };
            Ok((next, turn))
        })
        .collect()
}

/// Calls the ticket to a counter (locked by the caller) and returns it as changed; the
/// counter's streak moves with it (`streak_after`). The partial unique index on active
/// tickets per counter is the last line of defence for the busy-counter rule.
pub async fn mark_called(
    conn: &mut PgConnection,
    id: TicketId,
    counter: CounterId,
    operator: UserId,
    now: DateTime<Utc>,
) -> Result<TicketRecord, Error> {
    sqlx::query_as!(
        TicketRow,
        r#"with t as (
               update tickets set status = 'called', counter_id = $2, operator_id = $3,
                      called_at = $4, first_called_at = $4, call_count = call_count + 1
                where id = $1
               returning *
           ),
           streak as (
               update counters set priority_streak = streak_after(counters.priority_streak, t.priority)
                 from t
                where counters.id = t.counter_id
                  and counters.priority_streak <> streak_after(counters.priority_streak, t.priority)
           )
           select t.id as "id: TicketId", t.code, t.status, t.priority, t.call_count,
                  t.customer_name, t.created_at, t.called_at, t.started_at, t.finished_at,
                  s.id as "service_id: ServiceId", s.code as service_code,
                  s.name as service_name,
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from t
             join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id"#,
        id.get(),
        counter.get(),
        operator.get(),
        now
    )
    .fetch_one(conn)
    .await
    .on_constraint("tickets_counter_active_key", Conflict::CounterBusy.into())?
    .try_into()
}

/// Calls the ticket again and returns it as changed.
pub async fn mark_recalled(
    conn: &mut PgConnection,
    id: TicketId,
    now: DateTime<Utc>,
) -> Result<TicketRecord, Error> {
    sqlx::query_as!(
        TicketRow,
        r#"with t as (
               update tickets set called_at = $2, call_count = call_count + 1 where id = $1
               returning *
           )
           select t.id as "id: TicketId", t.code, t.status, t.priority, t.call_count,
                  t.customer_name, t.created_at, t.called_at, t.started_at, t.finished_at,
                  s.id as "service_id: ServiceId", s.code as service_code,
                  s.name as service_name,
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from t
             join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id"#,
        id.get(),
        now
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

/// What a guarded status change ([`StatusChange`]) found.
pub enum StatusChangeOutcome {
    /// No such ticket in the tenant.
    Missing,
    /// The ticket's status was none of those allowed: it was left as it is.
    Refused(Status),
    Changed {
        previous: Status,
        record: Box<TicketRecord>,
    },
}

/// A guarded status change: if the ticket's status is one of `from`, it moves to `to`
/// (`serving` or a final status, stamping the matching time with `now`).
pub struct StatusChange {
    pub tenant: TenantId,
    pub id: TicketId,
    pub from: Vec<Status>,
    pub to: Status,
    pub now: DateTime<Utc>,
}

/// Locks the tickets (of any tenants, in id order) and applies each guarded change, all in
/// one round trip, and returns what each found, in the order given. The tickets must be
/// distinct.
pub async fn set_statuses_from(
    conn: &mut PgConnection,
    changes: &[StatusChange],
) -> Result<Vec<StatusChangeOutcome>, Error> {
    let tenants: Vec<uuid::Uuid> = changes.iter().map(|c| c.tenant.get()).collect();
    let ids: Vec<uuid::Uuid> = changes.iter().map(|c| c.id.get()).collect();
    let to: Vec<&str> = changes.iter().map(|c| c.to.as_str()).collect();
    // One text per change: its allowed statuses, comma-separated (arrays of arrays must be
    // rectangular in PostgreSQL).
    let from: Vec<String> = changes
        .iter()
        .map(|c| {
            c.from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    let now: Vec<DateTime<Utc>> = changes.iter().map(|c| c.now).collect();
    let rows = sqlx::query!(
        r#"with v as (
               select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                                    $5::timestamptz[])
                        with ordinality as v(tenant_id, id, to_status, from_list, at, ord)
           ),
           old as (
               select tickets.id, tickets.status
                 from tickets join v on v.id = tickets.id and v.tenant_id = tickets.tenant_id
                order by tickets.id
                  for update of tickets
           ),
           t as (
               update tickets set status = v.to_status,
                      started_at = case when v.to_status = 'serving' then v.at
                                        else tickets.started_at end,
                      finished_at = case when v.to_status in ('done', 'no_show', 'cancelled')
                                         then v.at else tickets.finished_at end
                 from old, v
                where tickets.id = old.id and v.id = old.id
                  and old.status = any(string_to_array(v.from_list, ','))
               returning tickets.*
           )
           select v.ord as "ord!", old.status as "previous?",
                  t.id as "id?: TicketId", t.code as "code?", t.status as "status?",
                  t.priority as "priority?", t.call_count as "call_count?",
                  t.customer_name, t.created_at as "created_at?", t.called_at,
                  t.started_at, t.finished_at,
                  s.id as "service_id?: ServiceId", s.code as "service_code?",
                  s.name as "service_name?",
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from v
             left join old on old.id = v.id
             left join t on t.id = v.id
             left join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id
            order by v.ord"#,
        &tenants,
        &ids,
        &to as &[&str],
        &from,
        &now
    )
    .fetch_all(conn)
    .await?;
    one_row_each(changes.len(), rows.len())?;
    rows.into_iter()
        .map(|row| {
            let Some(previous) = row.previous else {
                return Ok(StatusChangeOutcome::Missing);
            };
            let previous: Status = stored(&previous)?;
            let changed = changed_record!(row)?;
            Ok(match changed {
                Some(record) => StatusChangeOutcome::Changed {
                    previous,
                    record: Box::new(record),
                },
                None => StatusChangeOutcome::Refused(previous),
            })
        })
        .collect()
}

/// Why a ticket goes back to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// To another service: the leg in the service it leaves is kept in `ticket_legs`.
    Transfer(ServiceId),
    /// Back to its own service, undoing its no-show or cancel: its last leg is replaced.
    Reactivate,
}

/// Puts the ticket back in a queue (transfer, reactivate): it keeps its code and issue
/// time, so it regains its place, and forgets its calls. A new leg starts at `now`
/// (`queued_at`; a call is always its leg's first, so calls set `first_called_at`); a
/// transfer first writes the leg it ends to `ticket_legs`, in the same statement (the
/// ticket is locked by the caller, so `old` is the row the update changes). Returns it as
/// changed.
pub async fn requeue(
    conn: &mut PgConnection,
    id: TicketId,
    why: Requeue,
    now: DateTime<Utc>,
) -> Result<TicketRecord, Error> {
    let target = match why {
        Requeue::Transfer(service) => Some(service.get()),
        Requeue::Reactivate => None,
    };
    sqlx::query_as!(
        TicketRow,
        r#"with old as (
               select * from tickets where id = $1
           ),
           leg as (
               insert into ticket_legs (ticket_id, leg, tenant_id, service_id, service_day,
                                        counter_id, operator_id, queued_at, first_called_at,
                                        started_at, ended_at)
               select id, transfers + 1, tenant_id, service_id, service_day, counter_id,
                      operator_id, coalesce(queued_at, created_at),
                      coalesce(first_called_at, called_at), started_at, $3
                 from old
                where $2::uuid is not null
           ),
           t as (
               update tickets set status = 'waiting', service_id = coalesce($2, service_id),
                      counter_id = null, operator_id = null, call_count = 0, called_at = null,
                      first_called_at = null, started_at = null, finished_at = null,
                      queued_at = $3,
                      transfers = transfers + case when $2::uuid is null then 0 else 1 end
                where id = $1
               returning *
           )
           select t.id as "id: TicketId", t.code, t.status, t.priority, t.call_count,
                  t.customer_name, t.created_at, t.called_at, t.started_at, t.finished_at,
                  s.id as "service_id: ServiceId", s.code as service_code,
                  s.name as service_name,
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from t
             join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id"#,
        id.get(),
        target,
        now
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

/// A ticket changed by closing the day: its status before, and the ticket after.
pub struct ClosedTicket {
    pub previous: Status,
    pub record: TicketRecord,
}

/// Closes a tenant's day: every ticket issued before `before` whose status is a source of
/// `moves` gets that move's target, ended at `ended_at`. Returns them in issue order, locked.
pub async fn close_tickets(
    conn: &mut PgConnection,
    tenant: TenantId,
    before: DateTime<Utc>,
    moves: &[(Status, Status)],
    ended_at: DateTime<Utc>,
) -> Result<Vec<ClosedTicket>, Error> {
    let from: Vec<&str> = moves.iter().map(|(from, _)| from.as_str()).collect();
    let to: Vec<&str> = moves.iter().map(|(_, to)| to.as_str()).collect();
    let rows = sqlx::query!(
        r#"with m as (
               select * from unnest($3::text[], $4::text[]) as m(from_status, to_status)
           ),
           old as (
               select t.id, t.status from tickets t join m on m.from_status = t.status
                where t.tenant_id = $1 and t.created_at < $2
                order by t.id
                  for update of t
           ),
           t as (
               update tickets set status = m.to_status, finished_at = $5
                 from old join m on m.from_status = old.status
                where tickets.id = old.id
               returning tickets.*
           )
           select old.status as "previous!",
                  t.id as "id?: TicketId", t.code as "code?", t.status as "status?",
                  t.priority as "priority?", t.call_count as "call_count?",
                  t.customer_name, t.created_at as "created_at?", t.called_at,
                  t.started_at, t.finished_at,
                  s.id as "service_id?: ServiceId", s.code as "service_code?",
                  s.name as "service_name?",
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
             from t
             join old on old.id = t.id
             left join services s on s.id = t.service_id
             left join counters c on c.id = t.counter_id
             left join users u on u.id = t.operator_id
            order by t.created_at, t.id"#,
        tenant.get(),
        before,
        &from as &[&str],
        &to as &[&str],
        ended_at
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let previous: Status = stored(&row.previous)?;
            let record = changed_record!(row)?.ok_or_else(|| {
                Error::unexpected(anyhow::anyhow!("a closed ticket came back without its row"))
            })?;
            Ok(ClosedTicket { previous, record })
        })
        .collect()
}

pub async fn find_record(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: TicketId,
) -> Result<Option<TicketRecord>, Error> {
    sqlx::query_as!(
        TicketRow,
        r#"select t.id as "id: TicketId", t.code, t.status, t.priority, t.call_count,
                  t.customer_name, t.created_at, t.called_at, t.started_at, t.finished_at,
                  s.id as "service_id: ServiceId", s.code as service_code,
                  s.name as service_name,
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
           from tickets t
           join services s on s.id = t.service_id
           left join counters c on c.id = t.counter_id
           left join users u on u.id = t.operator_id
           where t.tenant_id = $1 and t.id = $2"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?
    .map(TicketRecord::try_from)
    .transpose()
}

/// Tickets of the tenant in the given statuses (and service), oldest first; with a
/// `limit`, only that many of the most recently issued.
pub async fn list_records(
    conn: &mut PgConnection,
    tenant: TenantId,
    statuses: &[Status],
    service: Option<ServiceId>,
    limit: Option<i64>,
) -> Result<Vec<TicketRecord>, Error> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let mut rows = sqlx::query_as!(
        TicketRow,
        r#"select t.id as "id: TicketId", t.code, t.status, t.priority, t.call_count,
                  t.customer_name, t.created_at, t.called_at, t.started_at, t.finished_at,
                  s.id as "service_id: ServiceId", s.code as service_code,
                  s.name as service_name,
                  c.id as "counter_id?: CounterId", c.name as "counter_name?",
                  u.id as "operator_id?: UserId", u.username as "operator_username?"
           from tickets t
           join services s on s.id = t.service_id
           left join counters c on c.id = t.counter_id
           left join users u on u.id = t.operator_id
           where t.tenant_id = $1 and t.status = any($2)
             and ($3::uuid is null or t.service_id = $3)
           order by t.created_at desc, t.id desc
           limit $4"#,
        tenant.get(),
        &statuses as &[&str],
        service.map(ServiceId::get),
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.reverse();
    rows.into_iter().map(TicketRecord::try_from).collect()
}

/// How many waiting tickets of the service call-next would call before this one.
pub async fn count_ahead(conn: &mut PgConnection, ticket: &TicketRecord) -> Result<u32, Error> {
    let ahead = sqlx::query_scalar!(
        r#"select count(*) as "ahead!" from tickets
           where service_id = $1 and status = 'waiting'
             and (call_key(priority, created_at), id) < (call_key($2, $3), $4)"#,
        ticket.service_id.get(),
        ticket.priority.as_str(),
        ticket.created_at,
        ticket.id.get()
    )
    .fetch_one(conn)
    .await?;
    u32::try_from(ahead).map_err(Error::unexpected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample ticket as its row comes from the database, with these stored values.
    fn row(status: &str, priority: &str) -> TicketRow {
        let r = TicketRecord::sample();
        TicketRow {
            status: status.into(),
            priority: priority.into(),
            id: r.id,
            code: r.code,
            call_count: r.call_count,
            customer_name: r.customer_name,
            created_at: r.created_at,
            called_at: r.called_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            service_id: r.service_id,
            service_code: r.service_code,
            service_name: r.service_name,
            counter_id: r.counter_id,
            counter_name: r.counter_name,
            operator_id: r.operator_id,
            operator_username: r.operator_username,
        }
    }

    #[test]
    fn stored_statuses_and_priorities_are_read_into_their_types() {
        let record = TicketRecord::try_from(row("no_show", "priority")).unwrap();
        assert_eq!(record.status, Status::NoShow);
        assert_eq!(record.priority, Priority::Priority);
    }

    #[test]
    fn an_unknown_stored_status_or_priority_is_an_unexpected_error() {
        for (status, priority) in [("lost", "normal"), ("waiting", "urgent"), ("", "")] {
            let read = TicketRecord::try_from(row(status, priority));
            assert!(
                matches!(read, Err(Error::Unexpected(_))),
                "{status:?}/{priority:?} gave {read:?}"
            );
        }
        let locked = locked(TicketId::new(), "Waiting", ServiceId::new(), 0);
        assert!(matches!(locked, Err(Error::Unexpected(_))), "{locked:?}");
    }
}
