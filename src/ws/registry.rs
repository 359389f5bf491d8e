//! Tenant → Hub. Created once, before the HTTP server, and shared by every worker; the
//! hubs, the log reader and the listener run on one arbiter thread of their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use sqlx::PgPool;

use super::close::Close;
use super::feed::{LogReader, run_listener};
use super::hub::Hub;
use super::latest::LatestSeqs;
use super::messages::{CatchUp, CloseAll, Committed, Publish, RevokeTokens, SessionCount};
use crate::auth::revocation::TokenGenerations;
use crate::db;
use crate::domain::ids::{TenantId, UserId};
use crate::metrics::Metrics;
use crate::views::CommittedChange;

#[derive(Clone)]
pub struct HubRegistry(Arc<RegistryInner>);

pub struct RegistryInner {
    hubs: Mutex<HashMap<TenantId, Addr<Hub>>>,
    arbiter: Arbiter,
    log: Addr<LogReader>,
    listener_pid: Arc<AtomicI32>,
    latest: Arc<LatestSeqs>,
    metrics: Arc<Metrics>,
    generations: Arc<TokenGenerations>,
}

impl HubRegistry {
    /// Starts the hub thread and the listener. Needs a running actix `System`.
    pub fn start(pool: PgPool, metrics: Arc<Metrics>, generations: Arc<TokenGenerations>) -> Self {
        let arbiter = Arbiter::new();
        let log_pool = db::log_reader_pool(&pool);
        let log = LogReader::start_in_arbiter(&arbiter.handle(), move |_| LogReader::new(log_pool));
        let inner = Arc::new(RegistryInner {
            hubs: Mutex::new(HashMap::new()),
            arbiter,
            log,
            listener_pid: Arc::new(AtomicI32::new(0)),
            latest: Arc::default(),
            metrics,
            generations,
        });
        let weak = Arc::downgrade(&inner);
        let pid = inner.listener_pid.clone();
        let latest = inner.latest.clone();
        inner
            .arbiter
            .spawn(run_listener(db::listener_pool(&pool), weak, pid, latest));
        Self(inner)
    }

    /// The tenant's hub, started if it does not exist yet.
    pub fn hub(&self, tenant: TenantId, slug: &str) -> Addr<Hub> {
        let mut hubs = self.0.lock();
        hubs.entry(tenant)
            .or_insert_with(|| {
                let log = self.0.log.clone();
                let metrics = self.0.metrics.clone();
                let generations = self.0.generations.clone();
                let slug = slug.to_owned();
                Hub::start_in_arbiter(&self.0.arbiter.handle(), move |_| {
                    Hub::new(tenant, slug, log, metrics, generations)
                })
            })
            .clone()
    }

    /// Hands a committed change to its tenant's hub, if this process has one. Never waits.
    pub fn publish(&self, tenant: TenantId, change: Arc<CommittedChange>) {
        self.0.latest.committed(tenant, change.seq);
        if let Some(hub) = self.0.get(tenant) {
            hub.do_send(Publish(change));
        }
    }

    /// The user's tokens before `generation` are revoked by a change of this process: they
    /// are refused from now on here, and the user's sessions here are closed (4001). Other
    /// processes hear it from the database.
    pub fn tokens_revoked(&self, tenant: TenantId, user: UserId, generation: i32) {
        self.0.tokens_revoked(tenant, user, generation);
    }

    /// Open sessions of the tenant in this process: (totem, operator).
    pub async fn session_counts(&self, tenant: TenantId) -> (usize, usize) {
        match self.0.get(tenant) {
            Some(hub) => hub.send(SessionCount).await.unwrap_or((0, 0)),
            None => (0, 0),
        }
    }

    /// Tells every session of every tenant to close with `code` (1001 at shutdown);
    /// returns once every hub has sent the word.
    pub async fn close_all(&self, close: Close) {
        let hubs: Vec<Addr<Hub>> = self.0.lock().values().cloned().collect();
        for hub in hubs {
            let _ = hub.send(CloseAll(close)).await;
        }
    }

    /// Each tenant's latest seq, as far as this process is sure of it.
    pub fn latest(&self) -> &LatestSeqs {
        &self.0.latest
    }

    /// The PostgreSQL backend pid of the event listener (0 before it connected).
    pub fn listener_backend_pid(&self) -> i32 {
        self.0.listener_pid.load(Ordering::Relaxed)
    }
}

impl RegistryInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Addr<Hub>>> {
        self.hubs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, tenant: TenantId) -> Option<Addr<Hub>> {
        self.lock().get(&tenant).cloned()
    }

    pub(super) fn committed(&self, tenant: TenantId, seq: i64, by_this_process: bool) {
        self.latest.committed(tenant, seq);
        if let Some(hub) = self.get(tenant) {
            hub.do_send(Committed {
                seq,
                by_this_process,
            });
        }
    }

    pub(super) fn generations(&self) -> &TokenGenerations {
        &self.generations
    }

    pub(super) fn tokens_revoked(&self, tenant: TenantId, user: UserId, generation: i32) {
        self.generations.revoked(user, generation);
        if let Some(hub) = self.get(tenant) {
            hub.do_send(RevokeTokens { user, generation });
        }
    }

    pub(super) fn catch_up_all(&self) {
        for hub in self.lock().values() {
            hub.do_send(CatchUp);
        }
    }
}

impl Drop for RegistryInner {
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}
