//! Issuing many tickets, of one tenant or several, in one transaction.
//!
//! Kiosks are a tenant's busiest writers. Issued one by one, a ticket cost five statements
//! before its event. Here a batch of tickets costs the same statements as one: their
//! services, their numbers and the tickets are each read or written once for all, and
//! [`record_changes`](super::commands::record_changes) appends their events together.
//!
//! The tickets enter the queue, and so take their numbers (and then their seqs), in the
//! order of their issue time (then id), as one by one issuing would have ordered them.
//!
//! An issue with a `waiting_limit` (an anonymous one) is refused with `queue_full` when its
//! service already has that many waiting tickets. The counts are the services' stored
//! waiting counts, read with the services (no query of their own), plus the batch's issues
//! queued before it. A process has at most one batch of a tenant under way at a time
//! (`changes::writer`), so within a process the limit holds exactly however many requests
//! race. Batches of several processes can read the same count at once: together they may
//! pass the limit by what each admitted.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Error;
use crate::db;
use crate::db::Entity;
use crate::db::queue::ServiceCount;
use crate::db::tenants::Tenant;
use crate::db::tickets::{IssuedTicket, NumberClaim, TicketRecord};
use crate::domain::batch::{assign_numbers, number_claims};
use crate::domain::ids::{ServiceCode, ServiceId, TenantId, TicketId};
use crate::domain::numbering::{service_day, ticket_code};
use crate::domain::queue_limit::admit;
use crate::domain::ticket::{EventAction, Status};
use crate::ticketing::commands::{IssueTicket, Pending};

/// One ticket to issue for a tenant, at the time its request came in.
pub struct NewIssue<'a> {
    pub tenant: &'a Tenant,
    pub ticket: IssueTicket,
    pub now: DateTime<Utc>,
}

/// A ticket of the batch, once its service is known to take tickets.
struct Accepted<'a> {
    /// Its place in the batch as given.
    index: usize,
    issue: &'a NewIssue<'a>,
    service: &'a ServiceCount,
    code: ServiceCode,
    id: TicketId,
}

/// Writes the tickets of `issues` in the caller's transaction; their events are still to
/// be recorded, in the order of the returned list. The outer error fails the whole batch
/// (nothing of it may be committed); the inner ones are answers for single tickets
/// (unknown or inactive service, or a full queue), by index in `issues`.
pub async fn issue_batch(
    conn: &mut PgConnection,
    issues: &[NewIssue<'_>],
) -> Result<(Vec<(usize, Error)>, Vec<(usize, Pending)>), Error> {
    // Every service of the tenants (a handful each), with its waiting counts.
    let mut tenants: Vec<TenantId> = issues.iter().map(|issue| issue.tenant.id).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let services = db::queue::waiting_counts_of(conn, &tenants).await?;
    let service_of = |issue: &NewIssue<'_>| {
        services
            .iter()
            .find(|(tenant, s)| *tenant == issue.tenant.id && s.id == issue.ticket.service)
            .map(|(_, service)| service)
    };

    let mut refused = Vec::new();
    let mut accepted = Vec::with_capacity(issues.len());
    for (index, issue) in issues.iter().enumerate() {
        let day = issue.tenant.business_day();
        if issue.ticket.only_while_open && !day.is_open(issue.now) {
            let opens_at = day.opens_at(issue.now);
            refused.push((index, Error::Closed { opens_at }));
            continue;
        }
        match service_of(issue) {
            None => refused.push((index, Error::NotFound(Entity::Service))),
            Some(service) if !service.active => refused.push((index, Error::ServiceInactive)),
            Some(service) => accepted.push(Accepted {
                index,
                issue,
                service,
                code: ServiceCode::parse(&service.code).map_err(Error::unexpected)?,
                id: TicketId::new(),
            }),
        }
    }
    // In queue order: where the limit falls, the earlier issues join.
    accepted.sort_by_key(|a| (a.issue.now, a.id.get()));
    let joins = admit(
        |service| {
            services
                .iter()
                .find(|(_, s)| s.id == service)
                .map_or(0, |(_, s)| s.waiting.total())
        },
        &accepted
            .iter()
            .map(|a| (a.service.id, a.issue.ticket.waiting_limit))
            .collect::<Vec<_>>(),
    );
    let mut joining = Vec::with_capacity(accepted.len());
    for (issue, joins) in accepted.into_iter().zip(joins) {
        match joins {
            Ok(()) => joining.push(issue),
            Err(full) => refused.push((issue.index, full.into())),
        }
    }
    if joining.is_empty() {
        return Ok((refused, Vec::new()));
    }
    Ok((refused, write_tickets(conn, &mut joining).await?))
}

/// Numbers and inserts the accepted tickets, in queue order (each service belongs to one
/// tenant, so that is each tenant's queue order).
async fn write_tickets(
    conn: &mut PgConnection,
    accepted: &mut [Accepted<'_>],
) -> Result<Vec<(usize, Pending)>, Error> {
    accepted.sort_by_key(|a| (a.issue.now, a.id.get()));
    let days: Vec<(ServiceId, chrono::NaiveDate)> = accepted
        .iter()
        .map(|a| {
            (
                a.service.id,
                service_day(a.issue.now, a.issue.tenant.timezone),
            )
        })
        .collect();
    let claims = number_claims(&days);
    let claimed = db::tickets::claim_numbers(
        conn,
        &claims
            .iter()
            .map(|&((service, day), count)| NumberClaim {
                service,
                day,
                count,
            })
            .collect::<Vec<_>>(),
    )
    .await?;
    let numbers = assign_numbers(&days, &claims, &claimed)
        .ok_or_else(|| Error::unexpected(anyhow::anyhow!("numbers out of range")))?;
    let codes: Vec<String> = accepted
        .iter()
        .zip(&numbers)
        .map(|(a, number)| ticket_code(&a.code, *number))
        .collect();
    let tickets: Vec<IssuedTicket> = accepted
        .iter()
        .zip(&days)
        .zip(&codes)
        .map(|((a, (_, day)), code)| IssuedTicket {
            tenant: a.issue.tenant.id,
            id: a.id,
            service: a.service.id,
            code,
            service_day: *day,
            priority: a.issue.ticket.priority,
            customer_name: a.issue.ticket.customer_name.as_deref(),
            created_at: a.issue.now,
        })
        .collect();
    db::tickets::insert_tickets(conn, &tickets).await?;
    Ok(accepted
        .iter()
        .zip(codes)
        .map(|(a, code)| {
            let pending = Pending {
                tenant: a.issue.tenant.id,
                record: new_record(a, code),
                action: EventAction::Issued,
                previous: None,
                now: a.issue.now,
            };
            (a.index, pending)
        })
        .collect())
}

/// Everything about a new ticket is known: no need to read it back.
fn new_record(accepted: &Accepted<'_>, code: String) -> TicketRecord {
    TicketRecord {
        id: accepted.id,
        code,
        status: Status::Waiting,
        priority: accepted.issue.ticket.priority,
        call_count: 0,
        customer_name: accepted.issue.ticket.customer_name.clone(),
        created_at: accepted.issue.now,
        called_at: None,
        started_at: None,
        finished_at: None,
        service_id: accepted.service.id,
        service_code: accepted.service.code.clone(),
        service_name: accepted.service.name.clone(),
        counter_id: None,
        counter_name: None,
        operator_id: None,
        operator_username: None,
    }
}
