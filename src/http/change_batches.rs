//! Ticket changes of one tenant, gathered into batches (see `ticketing::batch`).
//!
//! Each process runs one task per tenant that is changing tickets, all on one thread of
//! their own with a pool of their own (`DATABASE_POOL_SIZE` connections, opened on that
//! thread): that thread does nothing but wait for PostgreSQL, so a batch's round trips are
//! not queued behind the HTTP work of the workers. A request queues its
//! command and waits for the answer; the task takes every request that queued while its
//! previous batch ran (up to [`MAX_BATCH`]) and commits them in one transaction, with their
//! `Idempotency-Key`s and saved answers (the rules of `http::idempotency`). Under load the
//! batches grow by themselves; alone, a request is a batch of one. Since one task writes a
//! tenant's changes in each process, at most one transaction per process waits on the
//! tenant's seq row. A tenant's task ends after [`IDLE`] without requests.
//!
//! - A command naming a ticket that an earlier command of the batch names waits for the
//!   next batch, so each event of a batch is computed from its ticket's own change.
//! - When the database fails the batch with an error other than an outage, each of its
//!   requests is tried again alone, its command in a savepoint, so one bad request cannot
//!   fail the others.
//! - A request whose caller has gone (its deadline passed) before its batch starts is left
//!   out of it.
//! - A task keeps its connection from one batch to the next while requests are queued and
//!   the pool has a connection to spare for other tasks; it gives it back when its queue
//!   is empty. Under load a tenant's batches then run back to back on one connection,
//!   without the pool's ping at each hand-over (measured in docs/benchmarks.md).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Arbiter;
use actix_web::http::StatusCode;
use actix_web::rt::time::timeout;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::deadline::HANDLER_DEADLINE;
use super::idempotency::{self, Outcome, answer_to_save};
use crate::db::idempotency::{RequestFingerprint, SavedResponse};
use crate::db::tenants::Tenant;
use crate::db::{self, CancelSafe};
use crate::domain::ids::TenantId;
use crate::error::{ApiError, is_connection_failure, report_database_unavailable};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::ticketing::batch::{self, Command, CommandAt, CommandOutcome, Isolation};
use crate::ticketing::commands::Change;
use crate::ticketing::paces::PaceCache;
use crate::views::Audience;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// A tenant's task ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30);

/// How long before its handler's deadline a request's batch gives up, so that the
/// handler always learns the outcome: a request answered 503 must not commit afterwards.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// One request that changes a ticket.
pub struct ChangeRequest {
    pub command: Command,
    pub now: DateTime<Utc>,
    /// When its batch must have committed or given up.
    pub deadline: Instant,
    /// The projection the caller gets (and a saved answer keeps).
    pub audience: Audience,
    pub key: Option<KeyedRequest>,
}

/// The request's `Idempotency-Key`, and what a saved answer must match.
pub struct KeyedRequest {
    pub key: String,
    pub fingerprint: RequestFingerprint,
}

pub enum ChangeAnswer {
    Changed(Box<Change>),
    /// A call-next that found nobody waiting.
    NothingToCall,
    /// The answer saved for the key, sent again.
    Replayed(SavedResponse),
}

type Answer = Result<ChangeAnswer, ApiError>;

struct Queued {
    request: ChangeRequest,
    reply: oneshot::Sender<Answer>,
}

/// The per-tenant queues of this process.
pub struct ChangeBatches {
    /// Connections opened and used on `thread` only.
    pool: PgPool,
    thread: Arbiter,
    paces: Arc<PaceCache>,
    metrics: Arc<Metrics>,
    queues: Mutex<std::collections::HashMap<TenantId, mpsc::UnboundedSender<Queued>>>,
}

impl ChangeBatches {
    /// Starts the thread. `pool` gives the database and the pool size.
    pub fn start(pool: &PgPool, paces: Arc<PaceCache>, metrics: Arc<Metrics>) -> Self {
        Self {
            pool: db::writer_pool(pool, pool.options().get_max_connections()),
            thread: Arbiter::new(),
            paces,
            metrics,
            queues: Mutex::default(),
        }
    }

    /// Applies the request in the tenant's next batch.
    pub async fn submit(&self, tenant: &Tenant, request: ChangeRequest) -> Answer {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued { request, reply };
        // A queue whose task has just ended refuses the request: start a new task.
        while let Err(mpsc::error::SendError(refused)) = self.queue(tenant).send(queued) {
            queued = refused;
        }
        answer
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("the tenant's change task stopped")))?
    }

    fn queue(&self, tenant: &Tenant) -> mpsc::UnboundedSender<Queued> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&tenant.id).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let worker = Worker {
            pool: self.pool.clone(),
            paces: self.paces.clone(),
            metrics: self.metrics.clone(),
            tenant: tenant.clone(),
        };
        self.thread.spawn(worker.serve(receiver));
        queues.insert(tenant.id, sender.clone());
        sender
    }
}

impl Drop for ChangeBatches {
    fn drop(&mut self) {
        self.thread.stop();
    }
}

/// A connection of the writer's pool. Held in a task of its own, it must survive the
/// runtime's shutdown.
type Held = CancelSafe<PoolConnection<Postgres>>;

/// The task that commits one tenant's batches.
struct Worker {
    pool: PgPool,
    paces: Arc<PaceCache>,
    metrics: Arc<Metrics>,
    tenant: Tenant,
}

impl Worker {
    async fn serve(self, mut queue: mpsc::UnboundedReceiver<Queued>) {
        // Requests put off to the next batch, in arrival order.
        let mut waiting: VecDeque<Queued> = VecDeque::new();
        // The last batch's connection, kept for the next batch when that one is already
        // queued: giving a connection back to the pool costs a round trip (sqlx pings it).
        let mut held: Option<Held> = None;
        loop {
            while let Ok(next) = queue.try_recv() {
                waiting.push_back(next);
            }
            if waiting.is_empty() {
                if let Some(conn) = held.take() {
                    conn.release();
                }
                match timeout(IDLE, queue.recv()).await {
                    Ok(Some(first)) => waiting.push_back(first),
                    Ok(None) => return,
                    Err(_idle) => {
                        // New requests now start a new task; the ones queued are served.
                        queue.close();
                    }
                }
                continue;
            }
            let batch = next_batch(&mut waiting, Instant::now());
            if !batch.is_empty() {
                self.run(batch, &mut held).await;
            }
            // Another tenant's task may be waiting for a connection: let it have this one.
            if !self.pool_has_spare()
                && let Some(conn) = held.take()
            {
                conn.release();
            }
        }
    }

    /// Whether the pool could hand out a connection now without waiting for one.
    fn pool_has_spare(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }

    async fn run(&self, batch: Vec<Queued>, held: &mut Option<Held>) {
        let (requests, replies): (Vec<ChangeRequest>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().map(|q| (q.request, q.reply)).unzip();
        let answers = match self.commit(&requests, Isolation::Shared, held).await {
            Ok(answers) => answers,
            Err(error) if requests.len() > 1 && !matches!(error, ApiError::DatabaseUnavailable) => {
                log::warn!(
                    "a batch of {} changes of tenant {} failed ({error}); trying each alone",
                    requests.len(),
                    self.tenant.slug
                );
                let mut answers = Vec::with_capacity(requests.len());
                for request in &requests {
                    let mut alone = self
                        .commit(std::slice::from_ref(request), Isolation::PerCommand, held)
                        .await;
                    answers.push(match &mut alone {
                        Ok(answer) => answer.pop().unwrap_or_else(|| Err(no_answer())),
                        Err(error) => Err(same_error(error)),
                    });
                }
                answers
            }
            Err(error) => requests.iter().map(|_| Err(same_error(&error))).collect(),
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _gone = reply.send(answer);
        }
    }

    /// Commits the requests in one transaction, on the `held` connection if there is one;
    /// the connection is left in `held` afterwards if the batch went through.
    async fn commit(
        &self,
        requests: &[ChangeRequest],
        isolation: Isolation,
        held: &mut Option<Held>,
    ) -> Result<Vec<Answer>, ApiError> {
        // The batch must be over before the first of its requests' handlers gives up.
        let deadline = requests
            .iter()
            .map(|r| r.deadline)
            .min()
            .unwrap_or_else(Instant::now);
        let left = || deadline.saturating_duration_since(Instant::now());
        // Pooled connections are not pinged before use (`db::writer_pool`): the batch's
        // BEGIN is the test. A batch whose BEGIN fails with a connection error has run
        // nothing, so it moves to the next connection. After a PostgreSQL restart every
        // idle connection may be dead, and the last try opens a new one.
        let mut tries = self.pool.options().get_max_connections() + 1;
        loop {
            tries -= 1;
            let mut conn = match held.take() {
                Some(conn) => conn,
                None => match timeout(left(), self.pool.acquire()).await {
                    Ok(conn) => CancelSafe::new(conn?),
                    Err(_elapsed) => return Err(out_of_time()),
                },
            };
            let attempt = timeout(left(), async {
                let tx = conn.begin().await?;
                Ok::<_, sqlx::Error>(self.answer(tx, requests, isolation).await)
            });
            let failed_begin = match attempt.await {
                Ok(Ok(answers)) => {
                    // A failed batch's connection goes back to the pool, which tests it.
                    match answers {
                        Ok(_) => {
                            *held = Some(conn);
                            self.metrics
                                .change_batch_size
                                .observe(requests.len() as f64);
                        }
                        Err(_) => conn.release(),
                    }
                    return answers;
                }
                Ok(Err(error)) => Some(error),
                Err(_elapsed) => None,
            };
            // Closed, not given back to the pool: a batch that ran out of time is rolled
            // back by PostgreSQL when it sees the connection go.
            drop(conn.into_inner().detach());
            match failed_begin {
                Some(dead) if tries > 0 && is_connection_failure(&dead) => {
                    log::info!("a pooled database connection was dead ({dead}); using another");
                }
                Some(error) => return Err(error.into()),
                None => return Err(out_of_time()),
            }
        }
    }

    /// Runs the batch in `tx` and commits it.
    async fn answer(
        &self,
        mut tx: Transaction<'_, Postgres>,
        requests: &[ChangeRequest],
        isolation: Isolation,
    ) -> Result<Vec<Answer>, ApiError> {
        let tenant = &self.tenant;
        let mut answers: Vec<Option<Answer>> = requests.iter().map(|_| None).collect();
        take_keys(&mut tx, tenant, requests, &mut answers).await?;

        let to_apply: Vec<usize> = (0..requests.len())
            .filter(|&i| answers[i].is_none())
            .collect();
        let commands: Vec<CommandAt> = to_apply
            .iter()
            .map(|&i| CommandAt {
                command: &requests[i].command,
                now: requests[i].now,
            })
            .collect();
        let applied = batch::apply(&mut tx, tenant, &commands, &self.paces, isolation).await?;
        let mut to_save = Vec::new();
        for (i, result) in to_apply.into_iter().zip(applied) {
            let request = &requests[i];
            if let Some(key) = &request.key {
                let outcome = result.as_ref().map(|applied| outcome(request, applied));
                let saved = answer_to_save(key.fingerprint, outcome.as_ref().map_err(|e| *e))
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("an answer that cannot be saved"))
                    })?;
                to_save.push((key.key.as_str(), saved));
            }
            answers[i] = Some(result.map(|applied| match applied {
                Some(change) => ChangeAnswer::Changed(Box::new(change)),
                None => ChangeAnswer::NothingToCall,
            }));
        }
        db::idempotency::save_responses(&mut tx, tenant.id, &to_save).await?;
        tx.commit().await?;
        answers
            .into_iter()
            .map(|answer| answer.ok_or_else(no_answer))
            .collect()
    }
}

/// The status a change answers with: 201 for a new ticket, 200 for the others.
pub fn change_status(command: &Command) -> StatusCode {
    match command {
        Command::Issue(_) => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}

/// The HTTP answer to a command, as it is saved for its key.
fn outcome(request: &ChangeRequest, applied: &CommandOutcome) -> Outcome {
    match applied {
        Some(change) => Outcome::json(
            change_status(&request.command),
            change.ticket.project(request.audience),
        ),
        None => Outcome::no_content(),
    }
}

/// The next batch: the waiting requests in order, but none naming a ticket named before in
/// the batch (those stay first in line), none whose caller has gone, and none whose
/// deadline has passed (those are answered 503: the database kept them waiting).
fn next_batch(waiting: &mut VecDeque<Queued>, now: Instant) -> Vec<Queued> {
    let mut batch = Vec::new();
    let mut named = HashSet::new();
    let mut put_off = VecDeque::new();
    while let Some(queued) = waiting.pop_front() {
        if batch.len() == MAX_BATCH {
            put_off.push_back(queued);
            continue;
        }
        if queued.reply.is_closed() {
            continue;
        }
        if queued.request.deadline <= now {
            let _gone = queued.reply.send(Err(ApiError::DatabaseUnavailable));
            continue;
        }
        match queued.request.command.ticket() {
            Some(ticket) if !named.insert(ticket) => put_off.push_back(queued),
            _ => batch.push(queued),
        }
    }
    *waiting = put_off;
    batch
}

/// Takes the keys of the requests that have one, answering those whose key is busy (also
/// when the batch uses it twice) or already answered.
async fn take_keys(
    conn: &mut PgConnection,
    tenant: &Tenant,
    requests: &[ChangeRequest],
    answers: &mut [Option<Answer>],
) -> Result<(), ApiError> {
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
    if keyed.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = keyed.iter().map(|(_, k)| k.key.as_str()).collect();
    let taken = db::idempotency::try_lock_keys(conn, tenant.id, &keys).await?;
    let mut saved = db::idempotency::find_saved_many(conn, tenant.id, &keys).await?;
    for ((i, key), taken) in keyed.iter().zip(taken) {
        let found = saved.iter().position(|(k, _)| *k == key.key);
        answers[*i] = match (taken, found) {
            (false, _) => Some(Err(ApiError::RequestInProgress)),
            (true, None) => None,
            (true, Some(at)) => {
                let (_, saved) = saved.swap_remove(at);
                Some(if saved.request == key.fingerprint {
                    Ok(ChangeAnswer::Replayed(saved))
                } else {
                    Err(ApiError::IdempotencyKeyReused)
                })
            }
        };
    }
    Ok(())
}

/// A batch the database kept past its requests' deadline: nothing of it was committed
/// (unless the commit itself was under way).
fn out_of_time() -> ApiError {
    report_database_unavailable(&"a batch of ticket changes ran out of time");
    ApiError::DatabaseUnavailable
}

fn no_answer() -> ApiError {
    ApiError::internal(anyhow::anyhow!("a request got no answer"))
}

/// The batch's failure, for each of its requests.
fn same_error(error: &ApiError) -> ApiError {
    match error {
        ApiError::DatabaseUnavailable => ApiError::DatabaseUnavailable,
        // With its cause chain: an internal error's own message says nothing.
        ApiError::Internal(cause) => ApiError::internal(anyhow::anyhow!(
            "committing ticket changes failed: {cause:#}"
        )),
        other => ApiError::internal(anyhow::anyhow!("committing ticket changes failed: {other}")),
    }
}

/// Runs a ticket command for the tenant `slug` in its next batch and answers the request:
/// the ticket in the caller's projection (its event handed to the hub), 204 for a
/// call-next that found nobody, or the answer saved for the request's `Idempotency-Key`.
pub async fn change(
    state: &AppState,
    req: &HttpRequest,
    slug: &str,
    body: &[u8],
    audience: Audience,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::idempotency_key(req)?.map(|key| KeyedRequest {
        key,
        fingerprint: idempotency::fingerprint(req, body, audience),
    });
    let tenant = match state.tenants.known(slug) {
        Some(tenant) => tenant,
        None => {
            state
                .tenants
                .get(&mut *state.db.acquire().await?, slug)
                .await?
        }
    };
    let status = change_status(&command);
    let request = ChangeRequest {
        command,
        now: state.clock.now(),
        deadline: Instant::now() + HANDLER_DEADLINE - DEADLINE_MARGIN,
        audience,
        key,
    };
    match state.changes.submit(&tenant, request).await? {
        ChangeAnswer::Changed(change) => {
            let mut outcome = Outcome::change(status, *change, audience);
            outcome.publish(state, &tenant);
            Ok(outcome.into_response(false))
        }
        ChangeAnswer::NothingToCall => Ok(HttpResponse::NoContent().finish()),
        ChangeAnswer::Replayed(saved) => idempotency::replay(saved),
    }
}
