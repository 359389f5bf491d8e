//! The writer: ticket changes of one tenant, gathered into batches (see `ticketing::batch`).
//!
//! Each process runs one task per tenant that is changing tickets, all on one thread of
//! their own with a pool of their own (`DATABASE_POOL_SIZE` connections, opened on that
//! thread): that thread does nothing but wait for PostgreSQL, so a batch's round trips are
//! not queued behind the HTTP work of the workers. A request queues its
//! command and waits for its result; the task takes every request that queued while its
//! previous batch ran (up to [`MAX_BATCH`]) and commits them in one transaction, with their
//! `Idempotency-Key`s and stored answers (the rules of `changes::idempotency`). Under load
//! the batches grow by themselves; alone, a request is a batch of one. Since one task
//! writes a tenant's changes in each process, at most one transaction per process waits on
//! the tenant's seq row. A tenant's task ends after [`IDLE`] without requests.
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::Arbiter;
use actix_web::rt::time::timeout;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::idempotency::{answer_to_store, claim_keys};
use super::publish::publish_committed;
use super::{ChangeOutcome, ChangeRequest};
use crate::db::idempotency::SavedResponse;
use crate::db::is_connection_failure;
use crate::db::tenants::Tenant;
use crate::db::{self, CancelSafe};
use crate::domain::ids::TenantId;
use crate::error::{ApiError, report_database_unavailable};
use crate::metrics::Metrics;
use crate::ticketing::batch::{self, CommandAt, Isolation};
use crate::ticketing::commands::Change;
use crate::ticketing::paces::PaceCache;
use crate::ws::registry::HubRegistry;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// A tenant's task ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30);

/// What the writer thread sends back for one request (its event not yet published).
pub(super) enum BatchOutcome {
    Changed(Box<Change>),
    /// A call-next that found nobody waiting.
    NothingToCall,
    /// The answer stored for the key, to send again.
    Replayed(SavedResponse),
}

pub(super) type ChangeResult = Result<BatchOutcome, ApiError>;

struct QueuedRequest {
    request: ChangeRequest,
    reply: oneshot::Sender<ChangeResult>,
}

/// The writer thread and the per-tenant queues of this process.
pub struct ChangeWriter {
    /// Connections opened and used on `thread` only.
    pool: PgPool,
    thread: Arbiter,
    paces: Arc<PaceCache>,
    metrics: Arc<Metrics>,
    /// Where committed changes are published.
    hubs: HubRegistry,
    queues: Mutex<HashMap<TenantId, mpsc::UnboundedSender<QueuedRequest>>>,
}

impl ChangeWriter {
    /// Starts the thread. `pool` gives the database and the pool size.
    pub fn start(
        pool: &PgPool,
        paces: Arc<PaceCache>,
        metrics: Arc<Metrics>,
        hubs: HubRegistry,
    ) -> Self {
        Self {
            pool: db::writer_pool(pool, pool.options().get_max_connections()),
            thread: Arbiter::new(),
            paces,
            metrics,
            hubs,
            queues: Mutex::default(),
        }
    }

    /// Applies the request in the tenant's next batch; once it has committed, hands the
    /// change's event to the hubs.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        request: ChangeRequest,
    ) -> Result<ChangeOutcome, ApiError> {
        let (reply, result) = oneshot::channel();
        let mut queued = QueuedRequest { request, reply };
        // A queue whose task has just ended refuses the request: start a new task.
        while let Err(mpsc::error::SendError(refused)) = self.queue(tenant).send(queued) {
            queued = refused;
        }
        let outcome = result.await.map_err(|_| {
            ApiError::internal(anyhow::anyhow!("the tenant's change task stopped"))
        })??;
        Ok(match outcome {
            BatchOutcome::Changed(change) => {
                let Change { ticket, event } = *change;
                publish_committed(&self.hubs, tenant.id, event);
                ChangeOutcome::Changed(Box::new(ticket))
            }
            BatchOutcome::NothingToCall => ChangeOutcome::NothingToCall,
            BatchOutcome::Replayed(stored) => ChangeOutcome::Replayed(stored),
        })
    }

    fn queue(&self, tenant: &Tenant) -> mpsc::UnboundedSender<QueuedRequest> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = queues.get(&tenant.id).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let writer = TenantWriter {
            pool: self.pool.clone(),
            paces: self.paces.clone(),
            metrics: self.metrics.clone(),
            tenant: tenant.clone(),
        };
        self.thread.spawn(writer.serve(receiver));
        queues.insert(tenant.id, sender.clone());
        sender
    }
}

impl Drop for ChangeWriter {
    fn drop(&mut self) {
        self.thread.stop();
    }
}

/// A connection of the writer's pool, kept from one batch to the next. Held in a task of
/// its own, it must survive the runtime's shutdown.
type KeptConnection = CancelSafe<PoolConnection<Postgres>>;

/// The task that commits one tenant's batches.
struct TenantWriter {
    pool: PgPool,
    paces: Arc<PaceCache>,
    metrics: Arc<Metrics>,
    tenant: Tenant,
}

impl TenantWriter {
    async fn serve(self, mut queue: mpsc::UnboundedReceiver<QueuedRequest>) {
        // Requests put off to the next batch, in arrival order.
        let mut waiting: VecDeque<QueuedRequest> = VecDeque::new();
        // The last batch's connection, kept for the next batch when that one is already
        // queued: giving a connection back to the pool costs a round trip (sqlx pings it).
        let mut kept: Option<KeptConnection> = None;
        loop {
            while let Ok(next) = queue.try_recv() {
                waiting.push_back(next);
            }
            if waiting.is_empty() {
                if let Some(conn) = kept.take() {
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
                self.run_batch(batch, &mut kept).await;
            }
            // Another tenant's task may be waiting for a connection: let it have this one.
            if !self.pool_has_spare()
                && let Some(conn) = kept.take()
            {
                conn.release();
            }
        }
    }

    /// Whether the pool could hand out a connection now without waiting for one.
    fn pool_has_spare(&self) -> bool {
        self.pool.num_idle() > 0 || self.pool.size() < self.pool.options().get_max_connections()
    }

    /// Commits the batch and replies to each of its requests; a failed batch of several is
    /// retried one request at a time.
    async fn run_batch(&self, batch: Vec<QueuedRequest>, kept: &mut Option<KeptConnection>) {
        let (requests, replies): (Vec<ChangeRequest>, Vec<oneshot::Sender<ChangeResult>>) =
            batch.into_iter().map(|q| (q.request, q.reply)).unzip();
        let results = match self.commit_batch(&requests, Isolation::Shared, kept).await {
            Ok(results) => results,
            Err(error) if requests.len() > 1 && !matches!(error, ApiError::DatabaseUnavailable) => {
                log::warn!(
                    "a batch of {} changes of tenant {} failed ({error}); trying each alone",
                    requests.len(),
                    self.tenant.slug
                );
                let mut results = Vec::with_capacity(requests.len());
                for request in &requests {
                    let mut alone = self
                        .commit_batch(std::slice::from_ref(request), Isolation::PerCommand, kept)
                        .await;
                    results.push(match &mut alone {
                        Ok(result) => result.pop().unwrap_or_else(|| Err(missing_result())),
                        Err(error) => Err(batch_error_for_each(error)),
                    });
                }
                results
            }
            Err(error) => requests
                .iter()
                .map(|_| Err(batch_error_for_each(&error)))
                .collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _gone = reply.send(result);
        }
    }

    /// Commits the requests in one transaction, on the `kept` connection if there is one;
    /// the connection is left in `kept` afterwards if the batch went through.
    async fn commit_batch(
        &self,
        requests: &[ChangeRequest],
        isolation: Isolation,
        kept: &mut Option<KeptConnection>,
    ) -> Result<Vec<ChangeResult>, ApiError> {
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
            let mut conn = match kept.take() {
                Some(conn) => conn,
                None => match timeout(left(), self.pool.acquire()).await {
                    Ok(conn) => CancelSafe::new(conn?),
                    Err(_elapsed) => return Err(out_of_time()),
                },
            };
            let attempt = timeout(left(), async {
                let tx = conn.begin().await?;
                Ok::<_, sqlx::Error>(self.run_batch_in(tx, requests, isolation).await)
            });
            let failed_begin = match attempt.await {
                Ok(Ok(results)) => {
                    // A failed batch's connection goes back to the pool, which tests it.
                    match results {
                        Ok(_) => {
                            *kept = Some(conn);
                            self.metrics
                                .change_batch_size
                                .observe(requests.len() as f64);
                        }
                        Err(_) => conn.release(),
                    }
                    return results;
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

    /// Runs the batch in `tx`: claims the keys, applies the commands, stores the answers
    /// of keyed requests, and commits.
    async fn run_batch_in(
        &self,
        mut tx: Transaction<'_, Postgres>,
        requests: &[ChangeRequest],
        isolation: Isolation,
    ) -> Result<Vec<ChangeResult>, ApiError> {
        let tenant = &self.tenant;
        let mut results: Vec<Option<ChangeResult>> = requests.iter().map(|_| None).collect();
        claim_keys(&mut tx, tenant, requests, &mut results).await?;

        let to_apply: Vec<usize> = (0..requests.len())
            .filter(|&i| results[i].is_none())
            .collect();
        let commands: Vec<CommandAt> = to_apply
            .iter()
            .map(|&i| CommandAt {
                command: &requests[i].command,
                now: requests[i].now,
            })
            .collect();
        let outcomes = batch::apply(&mut tx, tenant, &commands, &self.paces, isolation).await?;
        let mut to_store = Vec::new();
        for (i, outcome) in to_apply.into_iter().zip(outcomes) {
            // Handlers are answered in HTTP terms; the batch has decided on its own errors.
            let outcome = outcome.map_err(ApiError::from);
            let request = &requests[i];
            if let Some(key) = &request.key {
                to_store.push((
                    key.key.as_str(),
                    answer_to_store(request, key, outcome.as_ref())?,
                ));
            }
            results[i] = Some(outcome.map(|outcome| match outcome {
                Some(change) => BatchOutcome::Changed(Box::new(change)),
                None => BatchOutcome::NothingToCall,
            }));
        }
        db::idempotency::save_responses(&mut tx, tenant.id, &to_store).await?;
        tx.commit().await?;
        results
            .into_iter()
            .map(|result| result.ok_or_else(missing_result))
            .collect()
    }
}

/// The next batch: the waiting requests in order, but none naming a ticket named before in
/// the batch (those stay first in line), none whose caller has gone, and none whose
/// deadline has passed (those are answered 503: the database kept them waiting).
fn next_batch(waiting: &mut VecDeque<QueuedRequest>, now: Instant) -> Vec<QueuedRequest> {
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

/// A batch the database kept past its requests' deadline: nothing of it was committed
/// (unless the commit itself was under way).
fn out_of_time() -> ApiError {
    report_database_unavailable(&"a batch of ticket changes ran out of time");
    ApiError::DatabaseUnavailable
}

fn missing_result() -> ApiError {
    ApiError::internal(anyhow::anyhow!("a request got no answer"))
}

/// The batch's failure, for each of its requests.
fn batch_error_for_each(error: &ApiError) -> ApiError {
    match error {
        ApiError::DatabaseUnavailable => ApiError::DatabaseUnavailable,
        // With its cause chain: an internal error's own message says nothing.
        ApiError::Internal(cause) => ApiError::internal(anyhow::anyhow!(
            "committing ticket changes failed: {cause:#}"
        )),
        other => ApiError::internal(anyhow::anyhow!("committing ticket changes failed: {other}")),
    }
}
