//! All SQL lives here. Query functions take `&mut PgConnection`, so the caller decides
//! whether they run alone or inside its transaction.

pub mod audit;
pub mod counters;
pub mod day_closes;
mod error;
pub mod events;
pub mod idempotency;
pub mod kiosk_keys;
pub mod queue;
pub mod services;
pub mod stats;
pub mod tenants;
pub mod tickets;
pub mod users;

pub use error::{Conflict, Entity, Error, OnConstraint, is_connection_failure};

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::{Config, redact_url};

/// Embedded migrations, applied by `serve` and `migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a request waits for a pooled connection before failing with 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates the database if it does not exist, connects a pool and applies migrations.
pub async fn connect_and_migrate(config: &Config) -> anyhow::Result<PgPool> {
    let url = &config.database_url;
    let shown = redact_url(url);
    let unreachable = |e: sqlx::Error| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {shown} ({e}); start PostgreSQL or set DATABASE_URL"
        )
    };
    let exists = Postgres::database_exists(url).await.map_err(unreachable)?;
    if !exists {
        match Postgres::create_database(url).await {
            Ok(()) => log::info!("created database {shown}"),
            // Another process may have created it in the meantime.
            Err(e) if Postgres::database_exists(url).await.unwrap_or(false) => {
                log::debug!("database appeared while creating it: {e}")
            }
            Err(e) => return Err(unreachable(e)),
        }
    }
    let options: PgConnectOptions = url
        .parse()
        .with_context(|| format!("DATABASE_URL {shown} is not a valid PostgreSQL URL"))?;
    let pool = pool_options(config.database_pool_size)
        .connect_with(options)
        .await
        .map_err(unreachable)?;
    MIGRATOR
        .run(&pool)
        .await
        .with_context(|| format!("applying migrations to {shown}"))?;
    Ok(pool)
}

/// The options of this process's pools: every connection records its backend pid.
fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
                    .fetch_one(conn)
                    .await?;
                let mut own = own_backends();
                // Old connections' pids are never removed; keep the set small regardless.
                if own.len() >= 10_000 {
                    own.clear();
                }
                own.insert(pid);
                Ok(())
            })
        })
}

/// The pool of the thread that writes ticket changes (`changes::writer`): the same
/// database, with connections opened by the tasks that first use them, so on that thread,
/// whose event loop then watches them.
///
/// Its statements all find their rows through indexes, so its sessions never scan a table
/// sequentially (`enable_seqscan = off`): in a new database, before autovacuum has
/// gathered statistics, the planner took the tickets table for empty and planned a count
/// of the tickets queued behind a new one as a sequential scan, and kept that plan for
/// the connection's life: every batch then read every ticket.
///
/// Its statements are planned once per connection (`plan_cache_mode =
/// force_generic_plan`). The batch statements are large, and PostgreSQL planned them anew
/// at every execution (3 ms for a call-next, measured with `EXPLAIN ANALYZE`), which made
/// PostgreSQL's CPU the limit when many tenants write in small batches. Every plan they can
/// get uses indexes, since sequential scans are off.
///
/// Its connections are not pinged before they are handed out: that was one round trip of
/// nine per batch. The batch's own BEGIN tests the connection instead, and a batch whose
/// BEGIN finds it dead moves to another (`changes::writer`).
pub fn writer_pool(pool: &PgPool, size: u32) -> PgPool {
    let options = pool.connect_options().as_ref().clone().options([
        ("enable_seqscan", "off"),
        ("plan_cache_mode", "force_generic_plan"),
    ]);
    pool_options(size)
        .test_before_acquire(false)
        .connect_lazy_with(options)
}

/// The pool of the hubs' log reader (`ws::feed`), on the hub thread: as large as the main
/// pool, its connections opened lazily by the reader, so on that thread. A connection is
/// driven by the runtime of the task that opened it; one the reader opened in the main pool
/// would be handed to HTTP workers later, and their queries on it would wait for the hub
/// thread, which is busiest exactly when the workers are (fan-out).
pub fn log_reader_pool(pool: &PgPool) -> PgPool {
    pool_options(pool.options().get_max_connections())
        .connect_lazy_with(pool.connect_options().as_ref().clone())
}

/// The pool of the event listener (`ws::feed`): its one connection, which it keeps. A
/// listener made from the main pool would hold one of that pool's connections for good,
/// and with `DATABASE_POOL_SIZE=1` leave none for requests.
pub fn listener_pool(pool: &PgPool) -> PgPool {
    pool_options(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(pool.connect_options().as_ref().clone())
}

/// The PostgreSQL backends (server processes) of the connections this process opened. A
/// notification carries the backend that sent it, so the event listener can tell this
/// process's commits, whose events its requests hand over directly, from the others',
/// which must be read from the log at once.
fn own_backends() -> std::sync::MutexGuard<'static, std::collections::HashSet<i32>> {
    static OWN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<i32>>> =
        std::sync::LazyLock::new(Default::default);
    OWN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether backend `pid` serves one of this process's connections (or did: a pid reused
/// by another process's later connection only costs that process's events a short wait).
pub fn is_own_backend(pid: i32) -> bool {
    own_backends().contains(&pid)
}

/// Begins a read-only repeatable-read transaction: everything read in it is one consistent
/// snapshot (a seq and the tickets as of that seq).
pub async fn begin_snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Holds a database connection (or listener) across awaits in a background task. If the future
/// holding it is cancelled because its thread's runtime is shutting down, dropping it would
/// make sqlx spawn its clean-up onto a dying runtime and panic (sqlx issue 1389); it is
/// leaked instead, which only happens at process exit. `release` drops it normally.
pub struct CancelSafe<T>(std::mem::ManuallyDrop<T>);

impl<T> CancelSafe<T> {
    pub fn new(inner: T) -> Self {
        Self(std::mem::ManuallyDrop::new(inner))
    }

    pub fn release(self) {
        drop(self.into_inner());
    }

    pub fn into_inner(self) -> T {
        std::mem::ManuallyDrop::into_inner(self.0)
    }
}

impl<T> std::ops::Deref for CancelSafe<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for CancelSafe<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Lets id newtypes be read from `uuid` columns (`select id as "id: TicketId"`).
macro_rules! uuid_column {
    ($($ty:ty),*) => {$(
        impl sqlx::Type<Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <uuid::Uuid as sqlx::Type<Postgres>>::type_info()
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $ty {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<uuid::Uuid as sqlx::Decode<'r, Postgres>>::decode(value)?.into())
            }
        }
    )*};
}

use crate::domain::ids::{CounterId, ServiceId, TenantId, TicketId, UserId};
uuid_column!(TenantId, ServiceId, CounterId, UserId, TicketId);
