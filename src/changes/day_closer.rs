//! Closing each tenant's day by itself (contract §8): when its opening hours end, at local
//! midnight in any case, and at start-up for any day that ended while no process ran.
//!
//! Every process runs the closer. Each tick (every second) it computes, for each tenant, the
//! latest close due at or before now
//! ([`BusinessDay::last_close`](crate::domain::business_day::BusinessDay::last_close)),
//! from the tenants it read (again every few seconds, at once after this process changed
//! settings, and again before it closes anything, so that a change of hours made by another
//! process a moment before is never missed). A due close this process has not seen done is
//! looked up with one query for all tenants; a day with tickets to close is closed through
//! the writer like any change: it claims a row in `day_closes` in its transaction, so with several
//! processes one closes the day and the others find it done. It ends the tickets issued
//! before the due instant, whenever it runs, so a ticket issued a moment after midnight
//! stays in the new day. The first tick is at start-up, which catches up on the days that
//! ended while nothing ran.
//!
//! A ticket written with an issue time before a close that is already done (a process
//! whose clock is behind the others') is not closed by it; it is skipped by call-next, and
//! closed by the next close of the day.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::rt::time::sleep;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use sqlx::PgPool;

use super::{ChangeOutcome, ChangeRequest, ChangeWriter};
use crate::clock::Clock;
use crate::db::tenants::{KnownTenants, Tenant};
use crate::db::{self, CancelSafe};
use crate::domain::audit::{Action, Target, TargetKind};
use crate::domain::ids::TenantId;
use crate::domain::ticket::{Status, close_day_change};
use crate::error::ApiError;
use crate::ticketing::batch::Command;
use crate::ticketing::commands::DayClose;
use crate::views::Audience;

/// How often the closer looks for a close that is due: a day closes within this of its
/// due instant (and call-next skips the closed day's tickets in between).
pub const CLOSE_TICK: Duration = Duration::from_secs(1);

/// How long the closer trusts the tenants (time zones, opening hours) it read, unless this
/// process changed a tenant's settings or a close looks due (then it reads them again).
pub const TENANTS_REFRESH: Duration = Duration::from_secs(5);

/// How long a close may wait in the writer's queue and run.
const CLOSE_DEADLINE: Duration = Duration::from_secs(30);

/// Closes the tenants' days as they end, for as long as the process runs. A failure (a
/// database outage) is logged and the close tried again at the next tick.
pub async fn close_days_forever(
    pool: PgPool,
    clock: Arc<dyn Clock>,
    writer: Arc<ChangeWriter>,
    known: Arc<KnownTenants>,
) {
    let mut closer = DayCloser {
        pool,
        writer,
        known,
        tenants: Vec::new(),
        read: None,
        closed: HashMap::new(),
    };
    loop {
        if let Err(error) = closer.close_due_days(clock.now()).await {
            log::warn!("closing the days that ended: {error}; trying again shortly");
        }
        sleep(CLOSE_TICK).await;
    }
}

struct DayCloser {
    pool: PgPool,
    writer: Arc<ChangeWriter>,
    known: Arc<KnownTenants>,
    tenants: Vec<Tenant>,
    /// When the tenants were read, and this process's settings changes at that moment.
    read: Option<(Instant, u64)>,
    /// Per tenant, the latest close this process has seen done (or found nothing to do).
    closed: HashMap<TenantId, DateTime<Utc>>,
}

impl DayCloser {
    /// One tick: finds the tenants whose latest due close this process has not seen done,
    /// and submits the close of those with tickets to close, all at once (they share
    /// batches). A day with nothing to close needs no change and no record.
    async fn close_due_days(&mut self, now: DateTime<Utc>) -> Result<(), ApiError> {
        let due = self.find_due(now).await?;
        let closes = due.iter().map(|(due, tenant)| {
            let request = ChangeRequest {
                command: Command::CloseDay(DayClose::Due(*due)),
                now,
                deadline: Instant::now() + CLOSE_DEADLINE,
                audience: Audience::Operator,
                key: None,
            };
            self.writer.submit(tenant, request)
        });
        let mut failure = None;
        for ((due, tenant), outcome) in due.iter().zip(join_all(closes).await) {
            match outcome {
                Ok(ChangeOutcome::DayClosed(answer)) => {
                    if answer.expired + answer.finished > 0 {
                        log::info!(
                            "closed the day of {} ended {due}: {} expired, {} finished",
                            tenant.slug,
                            answer.expired,
                            answer.finished
                        );
                        self.record_close(tenant, now).await;
                    }
                    self.closed.insert(tenant.id, *due);
                }
                Ok(_) => {
                    failure = Some(ApiError::internal(anyhow::anyhow!(
                        "a close of the day answered as another change"
                    )));
                }
                Err(error) => failure = Some(error),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Records a close this process made in the audit log, with no user (contract §9).
    /// After the close committed, outside the writer's transaction (as a close by hand,
    /// see `http::day`); a failure is logged and not retried, the close being done.
    async fn record_close(&self, tenant: &Tenant, now: DateTime<Utc>) {
        let target = Target {
            kind: TargetKind::Tenant,
            id: tenant.id.get(),
            name: tenant.name.clone(),
        };
        let recorded = async {
            let mut conn = CancelSafe::new(self.pool.acquire().await?);
            let recorded = db::audit::record(
                &mut conn,
                tenant.id,
                now,
                None,
                Action::DayClosed,
                Some(&target),
            )
            .await;
            conn.release();
            recorded
        }
        .await;
        if let Err(error) = recorded {
            log::warn!(
                "recording the close of {}'s day in the audit log: {error}",
                tenant.slug
            );
        }
    }

    /// The closes to submit now, each with its tenant. Most ticks need no connection.
    async fn find_due(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, Tenant)>, ApiError> {
        let changes = self.known.settings_changes();
        let stale = match self.read {
            Some((at, seen)) => at.elapsed() >= TENANTS_REFRESH || seen != changes,
            None => true,
        };
        if stale {
            self.read_tenants(changes).await?;
        }
        let mut due = self.due_closes(now);
        if !due.is_empty() && !stale {
            // A close looks due by tenants read up to TENANTS_REFRESH ago: read them again,
            // so that hours another process changed a moment ago are not missed.
            self.read_tenants(changes).await?;
            due = self.due_closes(now);
        }
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let closing: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|status| close_day_change(*status).is_some())
            .map(Status::as_str)
            .collect();
        let asked: Vec<(TenantId, DateTime<Utc>)> =
            due.iter().map(|(due, tenant)| (tenant.id, *due)).collect();
        let mut conn = CancelSafe::new(self.pool.acquire().await?);
        let to_close = db::day_closes::with_tickets_to_close(&mut conn, &asked, &closing).await;
        conn.release();
        let to_close = to_close?;
        let mut submit = Vec::new();
        for (due, tenant) in due {
            if to_close.contains(&tenant.id) {
                submit.push((due, tenant));
            } else {
                self.closed.insert(tenant.id, due);
            }
        }
        Ok(submit)
    }

    async fn read_tenants(&mut self, settings_changes: u64) -> Result<(), ApiError> {
        let mut conn = CancelSafe::new(self.pool.acquire().await?);
        let tenants = db::tenants::list_tenants(&mut conn).await;
        conn.release();
        self.tenants = tenants?;
        self.read = Some((Instant::now(), settings_changes));
        Ok(())
    }

    /// Each tenant whose latest due close this process has not seen done, with that close.
    fn due_closes(&self, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, Tenant)> {
        self.tenants
            .iter()
            .map(|tenant| (tenant.business_day().last_close(now), tenant))
            .filter(|(due, tenant)| self.closed.get(&tenant.id) != Some(due))
            .map(|(due, tenant)| (due, tenant.clone()))
            .collect()
    }
}
