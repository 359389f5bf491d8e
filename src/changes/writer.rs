//! The writer: the ticket changes of every tenant, committed together in batches (see
//! `ticketing::batch`).
//!
//! Each process has one writer, on a thread of its own with a pool of its own
//! (`DATABASE_POOL_SIZE` connections, opened on that thread): that thread does nothing but
//! wait for PostgreSQL, so a batch's round trips are not queued behind the HTTP work of the
//! workers. A request queues its command and waits for its result. When no batch is under
//! way, the writer starts the next one: every queued request it may take (up to
//! [`MAX_BATCH`]), whatever its tenant, committed in one transaction with its
//! `Idempotency-Key` and stored answer (the rules of `changes::idempotency`). A batch of
//! many tenants costs about what a batch of one tenant costs: each step is one statement
//! for all of them, and there is one commit. Under load the batches grow by themselves;
//! alone, a request is a batch of one.
//!
//! - A batch that ends takes the next one itself, so while batches run back to back a
//!   handler queueing a request does not wake the writer thread (measured: a wake-up per
//!   request cost about 9 % of the issue rate on one tenant, docs/benchmarks.md). The
//!   handler asks the thread to start a batch only when none may be under way.
//! - One batch at a time is the fastest (measured in docs/benchmarks.md: two at a time split
//!   the requests into smaller batches, and their commits queue for PostgreSQL's NOTIFY lock
//!   anyway). But a batch that waits on a lock for long (another process's transaction, an
//!   operator's `SELECT … FOR UPDATE`) must not hold up every other tenant: once a batch has
//!   run for [`SLOW_BATCH`], the writer starts another beside it, up to [`LANES`].
//! - A tenant has at most one batch under way in a process: its requests queue behind it.
//!   So at most one transaction per process waits on a tenant's seq row, and each tenant's
//!   changes are committed in the order its batches were formed.
//! - A command naming a ticket that an earlier command of the batch names waits for the
//!   next batch, so each event of a batch is computed from its ticket's own change.
//! - When a statement fails the batch with an error other than an outage, each of its
//!   requests is tried again alone, its command in a savepoint, so one bad request cannot
//!   fail the others.
//! - A request whose caller has gone, or whose deadline has passed, before its batch starts
//!   is left out of it.
//! - A connection is kept from one batch to the next while the writer has work, and given
//!   back to the pool when it has none. Under load the batches then run back to back
//!   without the pool's ping at each hand-over (measured in docs/benchmarks.md).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
use crate::db::tenants::Tenant;
use crate::db::{self, CancelSafe};
use crate::domain::ids::TenantId;
use crate::error::{ApiError, report_database_unavailable};
use crate::metrics::Metrics;
use crate::ticketing::batch::{self, ClosedDay, CommandAt, CommandOutcome, Isolation};
use crate::ticketing::commands::Change;
use crate::ticketing::paces::PaceCache;
use crate::ticketing::{self, Error};
use crate::ws::registry::HubRegistry;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// Most batches under way at once: one, and one more beside each that is slow.
pub const LANES: usize = 4;
/// How long a batch runs before the writer starts another beside it.
pub const SLOW_BATCH: Duration = Duration::from_millis(100);

/// What the writer thread sends back for one request (its event not yet published).
pub(super) enum BatchOutcome {
    Changed(Box<Change>),
    DayClosed(ClosedDay),
    /// A call-next that found nobody waiting.
    NothingToCall,
    /// The answer stored for the key, to send again.
    Replayed(SavedResponse),
}

pub(super) type ChangeResult = Result<BatchOutcome, ApiError>;

/// A request waiting for its batch.
struct QueuedRequest {
    tenant: Tenant,
    request: ChangeRequest,
    reply: oneshot::Sender<ChangeResult>,
}

/// The requests waiting for a batch and the batches under way: shared by the handlers,
/// which queue requests, and the writer thread, which forms and runs the batches. A batch
/// that ends takes the next one itself, so while batches run back to back the handlers
/// never wake the writer thread.
struct Queue {
    /// Requests not in a batch yet, in arrival order.
    queued: VecDeque<QueuedRequest>,
    /// The tenants of the batches under way.
    under_way: HashSet<TenantId>,
    batches: usize,
    /// The batches under way that are slow.
    slow: usize,
    /// Most batches under way at once.
    lanes: usize,
    /// The writer thread has been asked to start batches and has not yet.
    start_asked: bool,
    /// Connections of finished batches, for the next ones. Taken and given back on the
    /// writer thread only.
    spare: Vec<KeptConnection>,
}

impl Queue {
    /// One batch, and one more beside each slow one.
    fn may_start(&self) -> bool {
        self.batches < (1 + self.slow).min(self.lanes)
    }

    /// Whether to ask the writer thread to start batches (once until it has).
    fn ask_to_start(&mut self) -> bool {
        let ask = self.may_start() && !self.start_asked;
        self.start_asked |= ask;
        ask
    }

    /// The next batch, if one may start now; its tenants are under way from then on.
    fn take_batch(&mut self, metrics: &Metrics) -> Option<Vec<QueuedRequest>> {
        if !self.may_start() {
            return None;
        }
        let batch = next_batch(&mut self.queued, &self.under_way, Instant::now());
        metrics.change_queue.set(self.queued.len() as i64);
        if batch.is_empty() {
            return None;
        }
        self.under_way.extend(batch.iter().map(|q| q.tenant.id));
        self.batches += 1;
        Some(batch)
    }

    fn batch_done(&mut self, batch: &[TenantId], was_slow: bool) {
        self.batches -= 1;
        self.slow -= usize::from(was_slow);
        for tenant in batch {
            self.under_way.remove(tenant);
        }
    }
}

type SharedQueue = Arc<Mutex<Queue>>;

fn lock(queue: &SharedQueue) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread of this process.
pub struct ChangeWriter {
    thread: Arbiter,
    /// The writer thread's pool: its connections are opened, and so driven, on that thread.
    pool: PgPool,
    queue: SharedQueue,
    /// Asks the writer thread to start batches.
    starts: mpsc::UnboundedSender<()>,
    metrics: Arc<Metrics>,
    /// Where committed changes are published.
    hubs: HubRegistry,
}

impl ChangeWriter {
    /// Starts the thread. `pool` gives the database and the pool size.
    pub fn start(
        pool: &PgPool,
        paces: Arc<PaceCache>,
        metrics: Arc<Metrics>,
        hubs: HubRegistry,
    ) -> Self {
        let size = pool.options().get_max_connections();
        let writer_pool = db::writer_pool(pool, size);
        let queue = Arc::new(Mutex::new(Queue {
            queued: VecDeque::new(),
            under_way: HashSet::new(),
            batches: 0,
            slow: 0,
            // A batch never waits for a connection: each holds at most one, and connections
            // between batches are kept for the next ones, not returned to the pool.
            lanes: LANES.min(size as usize),
            start_asked: false,
            spare: Vec::new(),
        }));
        let (starts, asked) = mpsc::unbounded_channel();
        let writer = Writer {
            committer: Committer {
                pool: writer_pool.clone(),
                paces,
                metrics: metrics.clone(),
            },
            queue: queue.clone(),
            starts: starts.clone(),
        };
        let thread = Arbiter::new();
        thread.spawn(writer.serve(asked));
        Self {
            thread,
            pool: writer_pool,
            queue,
            starts,
            metrics,
            hubs,
        }
    }

    /// Applies the request in the next batch that may take it; once it has committed, hands
    /// the change's event to the hubs.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        request: ChangeRequest,
    ) -> Result<ChangeOutcome, ApiError> {
        let (reply, result) = oneshot::channel();
        let queued = QueuedRequest {
            tenant: tenant.clone(),
            request,
            reply,
        };
        let ask = {
            let mut queue = lock(&self.queue);
            queue.queued.push_back(queued);
            self.metrics.change_queue.set(queue.queued.len() as i64);
            queue.ask_to_start()
        };
        let stopped = || ApiError::internal(anyhow::anyhow!("the change writer stopped"));
        if ask {
            self.starts.send(()).map_err(|_| stopped())?;
        }
        Ok(match result.await.map_err(|_| stopped())?? {
            BatchOutcome::Changed(change) => {
                let Change { ticket, event } = *change;
                publish_committed(&self.hubs, tenant.id, event);
                ChangeOutcome::Changed(Box::new(ticket))
            }
            BatchOutcome::DayClosed(closed) => {
                let answer = closed.answer();
                for change in closed.changes {
                    publish_committed(&self.hubs, tenant.id, change.event);
                }
                ChangeOutcome::DayClosed(answer)
            }
            BatchOutcome::NothingToCall => ChangeOutcome::NothingToCall,
            BatchOutcome::Replayed(stored) => ChangeOutcome::Replayed(stored),
        })
    }
}

impl ChangeWriter {
    /// Runs `work` on the writer thread with the writer's pool: background work that
    /// submits changes (the day closer) and reads a little around them. A connection is
    /// driven by the runtime that opened it, so the main pool's connections must not be
    /// opened by a task of another runtime than the HTTP workers' (measured: a connection
    /// opened by a task on the main thread slowed every request that later used it, while
    /// the test on that thread was busy).
    pub fn spawn_beside<F, W>(self: &Arc<Self>, work: W)
    where
        W: FnOnce(PgPool, Arc<ChangeWriter>) -> F,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let future = work(self.pool.clone(), self.clone());
        self.thread.spawn(future);
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

/// The writer thread's side: starts batches when asked, and runs each batch and those
/// that follow it.
#[derive(Clone)]
struct Writer {
    committer: Committer,
    queue: SharedQueue,
    starts: mpsc::UnboundedSender<()>,
}

impl Writer {
    async fn serve(self, mut asked: mpsc::UnboundedReceiver<()>) {
        while asked.recv().await.is_some() {
            while asked.try_recv().is_ok() {}
            let mut queue = lock(&self.queue);
            queue.start_asked = false;
            while let Some(batch) = queue.take_batch(&self.committer.metrics) {
                let connection = queue.spare.pop();
                actix_web::rt::spawn(self.clone().run_from(batch, connection));
            }
        }
    }

    /// Runs the batch, then the next one while there is one to take.
    async fn run_from(self, mut batch: Vec<QueuedRequest>, mut connection: Option<KeptConnection>) {
        loop {
            let mut tenants: Vec<TenantId> = batch.iter().map(|q| q.tenant.id).collect();
            tenants.sort_unstable();
            tenants.dedup();
            let mut run = std::pin::pin!(self.committer.run_batch(batch, connection));
            let (slow, kept) = match timeout(SLOW_BATCH, &mut run).await {
                Ok(kept) => (false, kept),
                Err(_slow) => {
                    self.batch_is_slow();
                    (true, run.await)
                }
            };
            connection = kept;
            let mut queue = lock(&self.queue);
            queue.batch_done(&tenants, slow);
            if let Some(next) = queue.take_batch(&self.committer.metrics) {
                batch = next;
                continue;
            }
            let idle = queue.batches == 0 && queue.queued.is_empty();
            let spare: Vec<KeptConnection> = if idle {
                queue.spare.drain(..).chain(connection).collect()
            } else {
                queue.spare.extend(connection);
                Vec::new()
            };
            drop(queue);
            // Nothing to do: give the connections back (outside the lock: sqlx pings them).
            for connection in spare {
                connection.release();
            }
            return;
        }
    }

    /// Lets another batch start beside a slow one.
    fn batch_is_slow(&self) {
        let ask = {
            let mut queue = lock(&self.queue);
            queue.slow += 1;
            queue.ask_to_start()
        };
        if ask {
            // The writer thread stops only with the process; nobody waits then.
            let _stopped = self.starts.send(());
        }
    }
}

/// What a batch needs: the writer's pool, the paces, the metrics.
#[derive(Clone)]
struct Committer {
    /// Connections opened and used on the writer thread only.
    pool: PgPool,
    paces: Arc<PaceCache>,
    metrics: Arc<Metrics>,
}

/// Why a batch committed nothing.
enum BatchFailure {
    /// The database is unavailable, or kept the batch past its deadline: each request
    /// answers 503 and may be sent again.
    Unavailable,
    /// A statement failed (or the code met what it cannot handle): the transaction is
    /// aborted, and the requests are worth trying again one by one.
    Failed(Error),
}

impl From<Error> for BatchFailure {
    fn from(error: Error) -> Self {
        match &error {
            Error::Db(db_error) if db_error.is_connection_failure() => {
                report_database_unavailable(&error);
                BatchFailure::Unavailable
            }
            _ => BatchFailure::Failed(error),
        }
    }
}

impl From<sqlx::Error> for BatchFailure {
    fn from(error: sqlx::Error) -> Self {
        Error::from(error).into()
    }
}

impl BatchFailure {
    /// The answer of a request that failed alone.
    fn into_answer(self) -> ApiError {
        match self {
            BatchFailure::Unavailable => ApiError::DatabaseUnavailable,
            // A refusal that came as a failed statement (a counter another process has just
            // called to) answers as itself.
            BatchFailure::Failed(error) if !error.fails_the_batch() => ApiError::from(error),
            BatchFailure::Failed(error) => ApiError::internal(
                anyhow::Error::new(error).context("committing a ticket change failed"),
            ),
        }
    }
}

impl Committer {
    /// Commits the batch and replies to each of its requests; a batch that failed is tried
    /// again one request at a time, each command in a savepoint. Runs on the `kept`
    /// connection if there is one, and gives back the connection if the batch went through.
    async fn run_batch(
        &self,
        batch: Vec<QueuedRequest>,
        mut kept: Option<KeptConnection>,
    ) -> Option<KeptConnection> {
        let kept = &mut kept;
        let (requests, replies): (Vec<TenantRequest>, Vec<oneshot::Sender<ChangeResult>>) = batch
            .into_iter()
            .map(|q| {
                let request = TenantRequest {
                    tenant: q.tenant,
                    request: q.request,
                };
                (request, q.reply)
            })
            .unzip();
        let results = match self.commit_batch(&requests, Isolation::Shared, kept).await {
            Ok(results) => results,
            Err(BatchFailure::Failed(error)) => {
                log::warn!(
                    "a batch of {} changes failed ({error}); trying each alone",
                    requests.len()
                );
                let mut results = Vec::with_capacity(requests.len());
                for request in &requests {
                    let alone = self
                        .commit_batch(std::slice::from_ref(request), Isolation::PerCommand, kept)
                        .await;
                    results.push(match alone {
                        Ok(mut result) => result.pop().unwrap_or_else(|| Err(missing_result())),
                        Err(failure) => Err(failure.into_answer()),
                    });
                }
                results
            }
            Err(BatchFailure::Unavailable) => requests
                .iter()
                .map(|_| Err(ApiError::DatabaseUnavailable))
                .collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _gone = reply.send(result);
        }
        kept.take()
    }

    /// Commits the requests in one transaction, on the `kept` connection if there is one;
    /// the connection is left in `kept` afterwards if the batch went through.
    async fn commit_batch(
        &self,
        requests: &[TenantRequest],
        isolation: Isolation,
        kept: &mut Option<KeptConnection>,
    ) -> Result<Vec<ChangeResult>, BatchFailure> {
        // The batch must be over before the first of its requests' handlers gives up.
        let deadline = requests
            .iter()
            .map(|r| r.request.deadline)
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
                            self.observe(requests);
                        }
                        Err(_) => conn.release(),
                    }
                    return results.map_err(BatchFailure::from);
                }
                Ok(Err(error)) => Some(error),
                Err(_elapsed) => None,
            };
            // Closed, not given back to the pool: a batch that ran out of time is rolled
            // back by PostgreSQL when it sees the connection go.
            drop(conn.into_inner().detach());
            match failed_begin {
                Some(dead) if tries > 0 && db::is_connection_failure(&dead) => {
                    log::info!("a pooled database connection was dead ({dead}); using another");
                }
                Some(error) => return Err(error.into()),
                None => return Err(out_of_time()),
            }
        }
    }

    fn observe(&self, requests: &[TenantRequest]) {
        let tenants: HashSet<TenantId> = requests.iter().map(|r| r.tenant.id).collect();
        self.metrics
            .change_batch_size
            .observe(requests.len() as f64);
        self.metrics
            .change_batch_tenants
            .observe(tenants.len() as f64);
    }

    /// Runs the batch in `tx`: claims the keys, applies the commands, stores the answers
    /// of keyed requests, and commits.
    async fn run_batch_in(
        &self,
        mut tx: Transaction<'_, Postgres>,
        requests: &[TenantRequest],
        isolation: Isolation,
    ) -> Result<Vec<ChangeResult>, Error> {
        let mut results: Vec<Option<ChangeResult>> = requests.iter().map(|_| None).collect();
        claim_keys(&mut tx, requests, &mut results).await?;

        let to_apply: Vec<usize> = (0..requests.len())
            .filter(|&i| results[i].is_none())
            .collect();
        let commands: Vec<CommandAt> = to_apply
            .iter()
            .map(|&i| CommandAt {
                tenant: &requests[i].tenant,
                command: &requests[i].request.command,
                now: requests[i].request.now,
            })
            .collect();
        let outcomes = batch::apply(&mut tx, &commands, &self.paces, isolation).await?;
        let mut to_store = Vec::new();
        for (i, outcome) in to_apply.into_iter().zip(outcomes) {
            // Handlers are answered in HTTP terms; the batch has decided on its own errors.
            let outcome = outcome.map_err(ApiError::from);
            let TenantRequest { tenant, request } = &requests[i];
            if let Some(key) = &request.key {
                let answer = answer_to_store(request, key, outcome.as_ref()).ok_or_else(|| {
                    ticketing::Error::unexpected(anyhow::anyhow!("an answer that cannot be saved"))
                })?;
                to_store.push((tenant.id, key.key.as_str(), answer));
            }
            results[i] = Some(outcome.map(|outcome| match outcome {
                CommandOutcome::Changed(change) => BatchOutcome::Changed(change),
                CommandOutcome::NothingToCall => BatchOutcome::NothingToCall,
                CommandOutcome::DayClosed(closed) => BatchOutcome::DayClosed(closed),
            }));
        }
        db::idempotency::save_responses(&mut tx, &to_store).await?;
        tx.commit().await?;
        results
            .into_iter()
            .map(|result| {
                result.ok_or_else(|| Error::unexpected(anyhow::anyhow!("a request got no answer")))
            })
            .collect()
    }
}

/// A request of a batch, with its tenant.
pub(super) struct TenantRequest {
    pub tenant: Tenant,
    pub request: ChangeRequest,
}

/// The next batch: the queued requests in order, but none of a tenant with a batch under
/// way, none naming a ticket named before in the batch (those stay first in line), none
/// whose caller has gone, and none whose deadline has passed (those are answered 503: the
/// database kept them waiting).
fn next_batch(
    queued: &mut VecDeque<QueuedRequest>,
    under_way: &HashSet<TenantId>,
    now: Instant,
) -> Vec<QueuedRequest> {
    let mut batch = Vec::new();
    let mut named = HashSet::new();
    // Tenants with a request in the batch, and those whose request may change any of
    // their tickets (a close of the day): such a request is alone of its tenant.
    let mut tenants = HashSet::new();
    let mut whole_tenant = HashSet::new();
    let mut put_off = VecDeque::new();
    while let Some(request) = queued.pop_front() {
        if request.reply.is_closed() {
            continue;
        }
        if request.request.deadline <= now {
            let _gone = request.reply.send(Err(ApiError::DatabaseUnavailable));
            continue;
        }
        let tenant = request.tenant.id;
        let command = &request.request.command;
        if batch.len() == MAX_BATCH
            || under_way.contains(&tenant)
            || whole_tenant.contains(&tenant)
            || (command.changes_the_whole_tenant() && tenants.contains(&tenant))
        {
            put_off.push_back(request);
            continue;
        }
        match command.ticket() {
            Some(ticket) if !named.insert(ticket) => put_off.push_back(request),
            _ => {
                tenants.insert(tenant);
                if command.changes_the_whole_tenant() {
                    whole_tenant.insert(tenant);
                }
                batch.push(request);
            }
        }
    }
    *queued = put_off;
    batch
}

/// A batch the database kept past its requests' deadline: nothing of it was committed
/// (unless the commit itself was under way).
fn out_of_time() -> BatchFailure {
    report_database_unavailable(&"a batch of ticket changes ran out of time");
    BatchFailure::Unavailable
}

fn missing_result() -> ApiError {
    ApiError::internal(anyhow::anyhow!("a request got no answer"))
}
