//! Events from the database to the hubs: the way changes made by *other* server processes
//! (and any event a hub missed) arrive.
//!
//! Every insert into the event log fires `NOTIFY nextup_events, '<tenant>:<seq>'` (a trigger;
//! PostgreSQL delivers it at commit, in commit order). The listener hands `(tenant, seq)`
//! to the tenant's hub as a doorbell; a hub missing events asks the [`LogReader`] to read
//! them from the log, which gives each back as the change that was committed.
//! Notifications sent while the listener is disconnected are lost, so after every
//! (re)connection all hubs catch up from the log.
//!
//! The same listener hears revoked tokens (`NOTIFY nextup_tokens,
//! '<tenant>:<user>:<generation>'`, see `auth::revocation`): the registry records each and
//! has the tenant's hub close that user's sessions. After a reconnection the revocations
//! made since the listener last heard the database are read from `users`.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::rt::time::{sleep, timeout};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::latest::LatestSeqs;
use super::messages::Fetched;
use super::registry::RegistryInner;
use crate::db::events::EventRow;
use crate::db::{self, CancelSafe};
use crate::domain::ids::{TenantId, UserId};
use crate::views::CommittedChange;

pub const CHANNEL: &str = "nextup_events";
pub const TOKENS_CHANNEL: &str = "nextup_tokens";
/// Revocations read after a reconnection go back this much further than the moment the
/// listener last heard the database, for the time the notification takes to travel.
const REVOCATIONS_MARGIN: Duration = Duration::from_secs(5);
/// A quiet listener connection is checked this often (a half-open TCP link never errors).
const LIVENESS_INTERVAL: Duration = Duration::from_secs(10);
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(5);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// A log read abandoned after this (a link that drops packets never errors); the hub
/// tries again.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Events read from the log per request; a longer gap takes several reads.
const READ_LIMIT: i64 = 1000;

/// Reads events from the log for hubs, so that hubs never wait on the database.
pub struct LogReader {
    pool: PgPool,
}

impl LogReader {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Actor for LogReader {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadLog {
    pub tenant: TenantId,
    pub after: i64,
    pub up_to: i64,
    /// Where the events go: the hub that asked (the feed need not know what a hub is).
    pub reply_to: Recipient<Fetched>,
}

impl Handler<ReadLog> for LogReader {
    type Result = ();

    fn handle(&mut self, msg: ReadLog, ctx: &mut Context<Self>) {
        let pool = self.pool.clone();
        let read = async move {
            let mut conn = CancelSafe::new(pool.acquire().await.map_err(|e| e.to_string())?);
            let events = timeout(
                READ_TIMEOUT,
                db::events::list_events(&mut conn, msg.tenant, msg.after, msg.up_to, READ_LIMIT),
            )
            .await;
            conn.release();
            match events {
                Ok(events) => events.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {READ_TIMEOUT:?}")),
            }
        };
        ctx.spawn(
            async move {
                let fetched = match read.await {
                    Ok(rows) => read_back(msg.tenant, rows),
                    Err(e) => {
                        log::warn!("reading the event log for tenant {}: {e}", msg.tenant);
                        Fetched {
                            changes: None,
                            unreadable: Vec::new(),
                            complete: false,
                        }
                    }
                };
                msg.reply_to.do_send(fetched);
            }
            .into_actor(self),
        );
    }
}

/// The changes a page of the log holds, each read back into the change that was committed.
fn read_back(tenant: TenantId, rows: Vec<EventRow>) -> Fetched {
    let complete = (rows.len() as i64) < READ_LIMIT;
    let mut changes = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        let seq = row.seq;
        match CommittedChange::try_from(row) {
            Ok(change) => changes.push(Arc::new(change)),
            Err(e) => {
                log::error!("event {seq} of tenant {tenant} cannot be read back: {e}");
                unreadable.push(seq);
            }
        }
    }
    Fetched {
        changes: Some(changes),
        unreadable,
        complete,
    }
}

/// Listens for commits until the registry is gone, reconnecting as needed.
pub async fn run_listener(
    pool: PgPool,
    registry: Weak<RegistryInner>,
    backend_pid: Arc<AtomicI32>,
    latest: Arc<LatestSeqs>,
) {
    // When the listener last heard the database, if it ever did.
    let mut last_heard: Option<Instant> = None;
    loop {
        match listen(&pool).await {
            Ok((mut listener, pid)) => {
                backend_pid.store(pid, Ordering::Relaxed);
                log::debug!("listening for events (backend {pid})");
                let Some(inner) = registry.upgrade() else {
                    return;
                };
                // From here every commit is announced; what came before is read again.
                latest.set_live(true);
                inner.generations().feed_heard();
                // Anything committed while nobody listened is read from the log.
                inner.catch_up_all();
                if let Some(heard) = last_heard {
                    read_missed_revocations(&mut listener, &inner, heard.elapsed()).await;
                }
                drop(inner);
                let mut heard = Instant::now();
                let lost = receive(&mut listener, &registry, &mut heard).await;
                last_heard = Some(heard);
                latest.set_live(false);
                if let Some(inner) = registry.upgrade() {
                    inner.generations().feed_lost();
                }
                if let Err(reason) = lost {
                    log::warn!("event listener lost its connection ({reason}); reconnecting");
                }
                listener.release();
            }
            Err(e) => log::warn!("cannot listen for events: {e}; retrying"),
        }
        if registry.strong_count() == 0 {
            return;
        }
        sleep(RECONNECT_DELAY).await;
    }
}

async fn listen(pool: &PgPool) -> Result<(CancelSafe<PgListener>, i32), sqlx::Error> {
    let mut listener = CancelSafe::new(PgListener::connect_with(pool).await?);
    // We rebuild the listener ourselves after a loss, to catch up at the right moment.
    listener.eager_reconnect(false);
    let ready = async {
        listener.listen_all([CHANNEL, TOKENS_CHANNEL]).await?;
        sqlx::query_scalar::<_, i32>("select pg_backend_pid()")
            .fetch_one(&mut *listener)
            .await
    };
    match ready.await {
        Ok(pid) => Ok((listener, pid)),
        Err(e) => {
            listener.release();
            Err(e)
        }
    }
}

/// Revocations made while the listener could not hear them (from `unheard` before now,
/// and a margin): their users' tokens are refused and their sessions closed, as if heard.
/// If they cannot be read, checks still go to the database until the listener is lost
/// again; only sessions may stay open.
async fn read_missed_revocations(
    listener: &mut PgListener,
    registry: &RegistryInner,
    unheard: Duration,
) {
    let window = (unheard + REVOCATIONS_MARGIN).as_secs_f64();
    match timeout(
        READ_TIMEOUT,
        db::users::revoked_since(&mut *listener, window),
    )
    .await
    {
        Ok(Ok(revoked)) => {
            for r in revoked {
                registry.tokens_revoked(r.tenant, r.user, r.generation);
            }
        }
        Ok(Err(e)) => log::warn!("reading the revocations missed while not listening: {e}"),
        Err(_) => log::warn!("reading the revocations missed while not listening timed out"),
    }
}

/// Dispatches notifications until the connection fails (`Err` says why) or the registry
/// is gone; `heard` is when the database was last heard from.
async fn receive(
    listener: &mut PgListener,
    registry: &Weak<RegistryInner>,
    heard: &mut Instant,
) -> Result<(), String> {
    loop {
        match timeout(LIVENESS_INTERVAL, listener.try_recv()).await {
            Ok(Ok(Some(notification))) => {
                *heard = Instant::now();
                let Some(inner) = registry.upgrade() else {
                    return Ok(());
                };
                let payload = notification.payload();
                if notification.channel() == TOKENS_CHANNEL {
                    match parse_revocation(payload) {
                        Some((tenant, user, generation)) => {
                            inner.tokens_revoked(tenant, user, generation)
                        }
                        None => log::warn!("unexpected token notification {payload:?}"),
                    }
                    continue;
                }
                let by_this_process =
                    i32::try_from(notification.process_id()).is_ok_and(db::is_own_backend);
                match parse_payload(payload) {
                    Some((tenant, seq)) => inner.committed(tenant, seq, by_this_process),
                    None => log::warn!("unexpected event notification {payload:?}"),
                }
            }
            Ok(Ok(None)) => return Err("connection closed".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_quiet) => {
                let ping = sqlx::query("select 1").execute(&mut *listener);
                match timeout(LIVENESS_TIMEOUT, ping).await {
                    Ok(Ok(_)) => *heard = Instant::now(),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("liveness check timed out".into()),
                }
                if registry.strong_count() == 0 {
                    return Ok(());
                }
            }
        }
    }
}

fn parse_payload(payload: &str) -> Option<(TenantId, i64)> {
    let (tenant, seq) = payload.split_once(':')?;
    Some((
        uuid::Uuid::parse_str(tenant).ok()?.into(),
        seq.parse().ok()?,
    ))
}

/// `<tenant>:<user>:<generation>`.
fn parse_revocation(payload: &str) -> Option<(TenantId, UserId, i32)> {
    let mut parts = payload.split(':');
    let tenant = uuid::Uuid::parse_str(parts.next()?).ok()?.into();
    let user = uuid::Uuid::parse_str(parts.next()?).ok()?.into();
    let generation = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((tenant, user, generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_carry_tenant_user_and_generation() {
        let (tenant, user) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert_eq!(
            parse_revocation(&format!("{tenant}:{user}:3")),
            Some((tenant.into(), user.into(), 3))
        );
        assert_eq!(parse_revocation(&format!("{tenant}:{user}")), None);
        assert_eq!(parse_revocation(&format!("{tenant}:{user}:3:4")), None);
        assert_eq!(parse_revocation(&format!("{tenant}:x:3")), None);
    }

    #[test]
    fn payloads_carry_tenant_and_seq() {
        let tenant = uuid::Uuid::new_v4();
        assert_eq!(
            parse_payload(&format!("{tenant}:42")),
            Some((tenant.into(), 42))
        );
        assert_eq!(parse_payload("garbage"), None);
        assert_eq!(parse_payload(&format!("{tenant}:x")), None);
    }
}
