//! Background upkeep of the database: event-log retention, expired idempotency keys,
//! the record of automatic day closes older than the retention (and two days), and
//! audit-log retention.
//!
//! Every process runs it; deletes by age are idempotent, so several processes pruning at
//! once only share the work.

use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::time::sleep;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::clock::Clock;
use crate::db::{self, CancelSafe};
use crate::metrics::Metrics;

/// Rows deleted per statement: short locks and WAL bursts while the server is busy.
const PRUNE_BATCH: i64 = 5_000;

/// How long what is pruned is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The event log (`EVENT_RETENTION_DAYS`).
    pub events: Duration,
    /// The audit log (`AUDIT_RETENTION_DAYS`).
    pub audit: Duration,
}

/// Prunes every `interval` (first one `interval` after start-up, so start-up stays quick),
/// for as long as the process runs. Failures (a database outage) are logged and retried
/// at the next round.
pub async fn prune_forever(
    pool: PgPool,
    clock: Arc<dyn Clock>,
    retention: Retention,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    loop {
        sleep(interval).await;
        match prune_audit_once(&pool, clock.as_ref(), retention.audit).await {
            Ok(pruned) if pruned > 0 => {
                log::info!(
                    "pruned {pruned} audit entries older than {:?}",
                    retention.audit
                );
            }
            Ok(_) => {}
            Err(e) => log::warn!("pruning the audit log: {e}; trying again later"),
        }
        let retention = retention.events;
        match prune_once(&pool, clock.as_ref(), retention).await {
            Ok(pruned) if pruned > 0 => {
                metrics.events_pruned.inc_by(pruned);
                log::info!("pruned {pruned} events older than {retention:?}");
            }
            Ok(_) => {}
            Err(e) => log::warn!("pruning the event log: {e}; trying again later"),
        }
    }
}

/// The instant `retention` before now (the dawn of time if that is out of range).
fn horizon(clock: &dyn Clock, retention: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(retention)
        .ok()
        .and_then(|retention| clock.now().checked_sub_signed(retention))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Deletes the audit entries older than `retention`; returns how many.
pub async fn prune_audit_once(
    pool: &PgPool,
    clock: &dyn Clock,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    let horizon = horizon(clock, retention);
    let mut conn = CancelSafe::new(pool.acquire().await?);
    let result = async {
        let mut pruned = 0;
        loop {
            let deleted = db::audit::prune(&mut conn, horizon, PRUNE_BATCH).await?;
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
        }
    }
    .await;
    conn.release();
    result
}

/// Deletes the events older than `retention` (by the clock of the server that wrote them)
/// and the idempotency keys past their replay window; returns the events deleted.
pub async fn prune_once(
    pool: &PgPool,
    clock: &dyn Clock,
    retention: Duration,
) -> Result<u64, sqlx::Error> {
    let horizon = horizon(clock, retention);
    let mut conn = CancelSafe::new(pool.acquire().await?);
    let result = async {
        let mut events = 0;
        loop {
            let deleted = db::events::prune_events(&mut conn, horizon, PRUNE_BATCH).await?;
            events += deleted;
            if deleted < PRUNE_BATCH as u64 {
                break;
            }
        }
        while db::idempotency::prune_expired_keys(&mut conn, PRUNE_BATCH).await?
            == PRUNE_BATCH as u64
        {}
        db::day_closes::prune(&mut conn, horizon.min(clock.now() - TimeDelta::days(2))).await?;
        Ok(events)
    }
    .await;
    conn.release();
    result
}

/// How often freed memory is handed back to the system.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(30);

/// glibc keeps memory freed by the program for reuse, and with many threads and bursts
/// (a large `GET …/events`, a wave of reconnections) much of it is never reused: a soak
/// run ended 25 MiB above its baseline with nothing live, and `malloc_trim` gave it back.
/// So the process trims its heaps periodically; a trim of idle heaps takes microseconds.
pub async fn trim_allocator_forever() {
    loop {
        sleep(TRIM_INTERVAL).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free pages to the system; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
