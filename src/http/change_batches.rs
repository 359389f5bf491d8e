//! Issue requests of one tenant, gathered into batches (see `ticketing::issuing`).
//!
//! Each process runs one task per tenant that is issuing tickets. A request queues its ticket
//! and waits for the answer; the task takes every request that queued while its previous
//! batch ran (up to [`MAX_BATCH`]) and commits them in one transaction, with their
//! `Idempotency-Key`s and saved answers (the rules of `http::idempotency`). Under load, the
//! batches grow by themselves; alone, a request is a batch of one. A tenant's task ends after
//! [`IDLE`] without requests.
//!
//! A batch is all or nothing: when the database fails, every request of it gets the same
//! error and none of them was committed. A request whose caller has gone (its deadline
//! passed) before its batch starts is left out of it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::rt::time::timeout;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Acquire, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::deadline::HANDLER_DEADLINE;
use super::idempotency::{Outcome, answer_to_save};
use crate::db::idempotency::SavedResponse;
use crate::db::tenants::Tenant;
use crate::db::{self, CancelSafe};
use crate::domain::ids::TenantId;
use crate::error::{ApiError, report_database_unavailable};
use crate::ticketing::commands::{Change, IssueTicket};
use crate::ticketing::issuing::{NewIssue, issue_batch};
use crate::ticketing::paces::PaceCache;
use crate::views::Audience;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// A tenant's task ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30);

/// One issue request.
pub struct IssueRequest {
    pub ticket: IssueTicket,
    pub now: DateTime<Utc>,
    pub audience: Audience,
    pub key: Option<KeyedRequest>,
}

/// The request's `Idempotency-Key`, and what a saved answer must match.
pub struct KeyedRequest {
    pub key: String,
    pub fingerprint: Value,
}

pub enum IssueAnswer {
    Issued(Box<Change>),
    /// The answer saved for the key, sent again.
    Replayed(SavedResponse),
}

type Reply = oneshot::Sender<Result<IssueAnswer, ApiError>>;

struct Queued {
    request: IssueRequest,
    reply: Reply,
}

/// The per-tenant queues of this process.
pub struct IssueBatches {
    pool: PgPool,
    paces: Arc<PaceCache>,
    queues: Mutex<HashMap<TenantId, mpsc::UnboundedSender<Queued>>>,
}

impl IssueBatches {
    pub fn new(pool: PgPool, paces: Arc<PaceCache>) -> Self {
        Self {
            pool,
            paces,
            queues: Mutex::default(),
        }
    }

    /// Issues the ticket in the tenant's next batch.
    pub async fn issue(
        &self,
        tenant: &Tenant,
        request: IssueRequest,
    ) -> Result<IssueAnswer, ApiError> {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued { request, reply };
        // A queue whose task has just ended refuses the request: start a new task.
        while let Err(mpsc::error::SendError(refused)) = self.queue(tenant).send(queued) {
            queued = refused;
        }
        answer.await.map_err(|_| {
            ApiError::internal(anyhow::anyhow!("the issuing task stopped before answering"))
        })?
    }

    fn queue(&self, tenant: &Tenant) -> mpsc::UnboundedSender<Queued> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&tenant.id).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        actix_web::rt::spawn(serve_queue(
            self.pool.clone(),
            self.paces.clone(),
            tenant.clone(),
            receiver,
        ));
        queues.insert(tenant.id, sender.clone());
        sender
    }
}

async fn serve_queue(
    pool: PgPool,
    paces: Arc<PaceCache>,
    tenant: Tenant,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    loop {
        let first = match timeout(IDLE, queue.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_idle) => {
                // New requests now start a new task; the ones already queued are served.
                queue.close();
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        batch.retain(|queued| !queued.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<IssueRequest>, Vec<Reply>) =
            batch.into_iter().map(|q| (q.request, q.reply)).unzip();
        let answers = match commit_batch(&pool, &paces, &tenant, &requests).await {
            Ok(answers) => answers,
            Err(error) => requests.iter().map(|_| Err(same_error(&error))).collect(),
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _gone = reply.send(answer);
        }
    }
}

/// The batch's failure, for each of its requests.
fn same_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::DatabaseUnavailable => ApiError::DatabaseUnavailable,
        other => ApiError::internal(anyhow::anyhow!(
            "issuing a batch of tickets failed: {other}"
        )),
    }
}

async fn commit_batch(
    pool: &PgPool,
    paces: &PaceCache,
    tenant: &Tenant,
    requests: &[IssueRequest],
) -> Result<Vec<Result<IssueAnswer, ApiError>>, ApiError> {
    // Held in a task of its own, the connection must survive the runtime's shutdown.
    let mut conn = CancelSafe::new(pool.acquire().await?);
    match timeout(
        HANDLER_DEADLINE,
        answer_batch(&mut conn, paces, tenant, requests),
    )
    .await
    {
        Ok(answers) => {
            conn.release();
            answers
        }
        Err(_elapsed) => {
            // A link that went silent: this connection is not given back to the pool.
            drop(conn.into_inner().detach());
            report_database_unavailable(&"a batch of tickets timed out");
            Err(ApiError::DatabaseUnavailable)
        }
    }
}

async fn answer_batch(
    conn: &mut PgConnection,
    paces: &PaceCache,
    tenant: &Tenant,
    requests: &[IssueRequest],
) -> Result<Vec<Result<IssueAnswer, ApiError>>, ApiError> {
    let mut tx = conn.begin().await?;
    let mut answers: Vec<Option<Result<IssueAnswer, ApiError>>> =
        requests.iter().map(|_| None).collect();

    // Keys first: a key used twice in the batch is as busy as one held by another request.
    let mut keys_seen = HashSet::new();
    let mut keyed = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        if let Some(key) = &request.key {
            if keys_seen.insert(key.key.as_str()) {
                keyed.push((i, key));
            } else {
                answers[i] = Some(Err(ApiError::RequestInProgress));
            }
        }
    }
    if !keyed.is_empty() {
        let keys: Vec<&str> = keyed.iter().map(|(_, k)| k.key.as_str()).collect();
        let taken = db::idempotency::try_lock_keys(&mut tx, tenant.id, &keys).await?;
        let mut saved = db::idempotency::find_saved_many(&mut tx, tenant.id, &keys).await?;
        for ((i, key), taken) in keyed.iter().zip(taken) {
            let found = saved.iter().position(|(k, _)| *k == key.key);
            answers[*i] = match (taken, found) {
                (false, _) => Some(Err(ApiError::RequestInProgress)),
                (true, None) => None,
                (true, Some(at)) => {
                    let (_, saved) = saved.swap_remove(at);
                    Some(if saved.request == key.fingerprint {
                        Ok(IssueAnswer::Replayed(saved))
                    } else {
                        Err(ApiError::IdempotencyKeyReused)
                    })
                }
            };
        }
    }

    let to_issue: Vec<usize> = (0..requests.len())
        .filter(|&i| answers[i].is_none())
        .collect();
    let issues: Vec<NewIssue> = to_issue
        .iter()
        .map(|&i| NewIssue {
            ticket: requests[i].ticket.clone(),
            now: requests[i].now,
        })
        .collect();
    let issued = issue_batch(&mut tx, tenant, &issues, paces).await?;
    let mut to_save = Vec::new();
    for (i, result) in to_issue.into_iter().zip(issued) {
        let request = &requests[i];
        if let Some(key) = &request.key {
            let outcome = result.as_ref().map(|change| {
                Outcome::json(StatusCode::CREATED, change.ticket.project(request.audience))
            });
            let saved = answer_to_save(key.fingerprint.clone(), outcome.as_ref().map_err(|e| *e))
                .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("an issue answer that cannot be saved"))
            })?;
            to_save.push((key.key.as_str(), saved));
        }
        answers[i] = Some(result.map(|change| IssueAnswer::Issued(Box::new(change))));
    }
    db::idempotency::save_responses(&mut tx, tenant.id, &to_save).await?;
    tx.commit().await?;
    answers
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| ApiError::internal(anyhow::anyhow!("a request got no answer")))
        })
        .collect()
}
