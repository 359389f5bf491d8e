//! Issuing many tickets of one tenant in one transaction.
//!
//! Every change of a tenant meets at its seq row, and kiosks are its busiest writers. Issued
//! one by one, a ticket cost eight statements, three of them under the row lock. Here a
//! batch of tickets costs the same statements as one: their services, their numbers, the
//! tickets, the seqs, the waiting counts and the events are each read or written once for
//! all. `http::issue_batches` gathers the requests that arrive while a batch is running.
//!
//! The tickets enter the queue, and so take their seqs and numbers, in the order of their
//! issue time (then id), as one by one issuing would have ordered them; each event describes
//! the queue exactly at its own seq.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::db;
use crate::db::queue::IssuedCounts;
use crate::db::services::Service;
use crate::db::tenants::Tenant;
use crate::db::tickets::{IssuedTicket, NumberClaim, TicketRecord};
use crate::domain::batch::{assign_numbers, later_in_same_class, number_claims};
use crate::domain::ids::{ServiceCode, ServiceId, TicketId};
use crate::domain::numbering::{service_day, ticket_code};
use crate::domain::ticket::{EventAction, Priority, Status};
use crate::error::{ApiError, Resource};
use crate::ticketing::commands::{Change, ChangeAt, IssueTicket, change_at};
use crate::ticketing::paces::PaceCache;

/// One ticket to issue, at the time its request came in.
pub struct NewIssue {
    pub ticket: IssueTicket,
    pub now: DateTime<Utc>,
}

/// A ticket of the batch, once its service is known to take tickets.
struct Accepted<'a> {
    /// Its place in the batch as given.
    index: usize,
    issue: &'a NewIssue,
    service: &'a Service,
    code: ServiceCode,
    id: TicketId,
}

/// Issues `issues` in the caller's transaction. The outer error fails the whole batch
/// (nothing of it may be committed); the inner ones are answers for single tickets
/// (unknown or inactive service), in the order given.
pub async fn issue_batch(
    conn: &mut PgConnection,
    tenant: &Tenant,
    issues: &[NewIssue],
    paces: &PaceCache,
) -> Result<Vec<Result<Change, ApiError>>, ApiError> {
    let mut wanted: Vec<uuid::Uuid> = issues.iter().map(|i| i.ticket.service.get()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let services = db::services::find_services(conn, tenant.id, &wanted).await?;

    let mut answers: Vec<Option<Result<Change, ApiError>>> = issues.iter().map(|_| None).collect();
    let mut accepted = Vec::with_capacity(issues.len());
    for (index, issue) in issues.iter().enumerate() {
        match services.iter().find(|s| s.id == issue.ticket.service) {
            None => answers[index] = Some(Err(ApiError::NotFound(Resource::Service))),
            Some(service) if !service.active => {
                answers[index] = Some(Err(ApiError::ServiceInactive))
            }
            Some(service) => accepted.push(Accepted {
                index,
                issue,
                service,
                code: ServiceCode::parse(&service.code).map_err(ApiError::internal)?,
                id: TicketId::new(),
            }),
        }
    }
    if !accepted.is_empty() {
        for (index, change) in issue_accepted(conn, tenant, &mut accepted, paces).await? {
            answers[index] = Some(Ok(change));
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| ApiError::internal(anyhow::anyhow!("a ticket got no answer")))
        })
        .collect()
}

async fn issue_accepted(
    conn: &mut PgConnection,
    tenant: &Tenant,
    accepted: &mut [Accepted<'_>],
    paces: &PaceCache,
) -> Result<Vec<(usize, Change)>, ApiError> {
    accepted.sort_by_key(|a| (a.issue.now, a.id.get()));
    let latest = accepted
        .iter()
        .map(|a| a.issue.now)
        .max()
        .unwrap_or_else(Utc::now);

    let days: Vec<(ServiceId, chrono::NaiveDate)> = accepted
        .iter()
        .map(|a| (a.service.id, service_day(a.issue.now, tenant.timezone)))
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
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("numbers out of range")))?;
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
            id: a.id,
            service: a.service.id,
            code,
            service_day: *day,
            priority: a.issue.ticket.priority,
            customer_name: a.issue.ticket.customer_name.as_deref(),
            created_at: a.issue.now,
        })
        .collect();
    db::tickets::insert_tickets(conn, tenant.id, &tickets).await?;
    let paces = paces.for_tenant(conn, tenant.id, latest).await?;

    // The serialised part: from the seqs to the caller's commit.
    let count = accepted.len();
    let last_seq = db::events::take_seqs(conn, tenant.id, count as i64).await?;
    let classes: Vec<(ServiceId, Priority)> = accepted
        .iter()
        .map(|a| (a.service.id, a.issue.ticket.priority))
        .collect();
    let ids: Vec<uuid::Uuid> = accepted.iter().map(|a| a.id.get()).collect();
    let (mut counts, behind) = db::queue::count_issued(
        conn,
        tenant.id,
        IssuedCounts {
            added: &added_per_service(&classes),
            tickets: &ids,
        },
    )
    .await?;
    let later = later_in_same_class(&classes);

    // Walk back from the last seq, taking each ticket out of the counts after its event.
    let mut changes = Vec::with_capacity(count);
    for (k, (a, code)) in accepted.iter().zip(codes).enumerate().rev() {
        let record = new_record(a, code);
        let change = change_at(
            record,
            ChangeAt {
                seq: last_seq - (count - 1 - k) as i64,
                action: EventAction::Issued,
                previous: None,
                counts: counts.clone(),
                behind: behind[k].saturating_sub(later[k]),
                paces: &paces,
                now: a.issue.now,
            },
        )?;
        changes.push((a.index, change));
        if let Some(service) = counts.iter_mut().find(|c| c.id == a.service.id) {
            service.waiting = service.waiting.without_one(a.issue.ticket.priority);
        }
    }
    changes.reverse();
    let events: Vec<&db::events::EventRow> = changes.iter().map(|(_, c)| &c.event).collect();
    db::events::insert_events(conn, tenant.id, &events, &ids).await?;
    Ok(changes)
}

/// Per service, how many (normal, priority) tickets the batch adds to its queue.
fn added_per_service(classes: &[(ServiceId, Priority)]) -> Vec<(ServiceId, i32, i32)> {
    let mut added: Vec<(ServiceId, i32, i32)> = Vec::new();
    for (service, priority) in classes {
        let at = match added.iter().position(|(s, _, _)| s == service) {
            Some(at) => at,
            None => {
                added.push((*service, 0, 0));
                added.len() - 1
            }
        };
        match priority {
            Priority::Normal => added[at].1 += 1,
            Priority::Priority => added[at].2 += 1,
        }
    }
    added
}

/// Everything about a new ticket is known: no need to read it back.
fn new_record(accepted: &Accepted<'_>, code: String) -> TicketRecord {
    TicketRecord {
        id: accepted.id,
        code,
        status: Status::Waiting.as_str().to_owned(),
        priority: accepted.issue.ticket.priority.as_str().to_owned(),
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
