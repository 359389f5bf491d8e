use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::token::TokenKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::tenants::KnownTenants;
use crate::http::issue_batches::IssueBatches;
use crate::http::rate_limit::RateLimits;
use crate::metrics::Metrics;
use crate::ticketing::commands::ChangeContext;
use crate::ticketing::paces::PaceCache;
use crate::ticketing::turns::SeqTurns;
use crate::ws::caps::SessionCaps;
use crate::ws::registry::HubRegistry;

/// Everything handlers share, created once before the HTTP server starts.
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub tokens: TokenKeys,
    pub clock: Arc<dyn Clock>,
    pub limits: RateLimits,
    pub session_caps: Arc<SessionCaps>,
    pub hubs: HubRegistry,
    pub metrics: Arc<Metrics>,
    pub paces: Arc<PaceCache>,
    pub tenants: KnownTenants,
    pub turns: SeqTurns,
    pub issue_batches: IssueBatches,
}

impl AppState {
    /// The moment of a ticket change about to be made, with the caches it may use.
    pub fn change_context(&self) -> ChangeContext<'_> {
        ChangeContext {
            now: self.clock.now(),
            paces: &self.paces,
            turns: &self.turns,
            turn: std::sync::Mutex::new(None),
        }
    }
}
