use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::revocation::TokenGenerations;
use crate::auth::token::TokenKeys;
use crate::changes::ChangeWriter;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::tenants::KnownTenants;
use crate::http::assets::Assets;
use crate::http::rate_limit::RateLimits;
use crate::metrics::Metrics;
use crate::ticketing::paces::PaceCache;
use crate::ws::caps::SessionCaps;
use crate::ws::registry::HubRegistry;
use crate::ws::snapshots::SnapshotCache;

/// Everything handlers share, created once before the HTTP server starts.
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
    /// The pages' files: built in, or from `STATIC_DIR`.
    pub assets: Assets,
    pub tokens: TokenKeys,
    /// Which tokens are revoked, kept up to date by the event feed's listener.
    pub token_generations: Arc<TokenGenerations>,
    pub clock: Arc<dyn Clock>,
    pub limits: RateLimits,
    pub session_caps: Arc<SessionCaps>,
    pub hubs: HubRegistry,
    pub metrics: Arc<Metrics>,
    pub paces: Arc<PaceCache>,
    pub tenants: Arc<KnownTenants>,
    /// Queue snapshots, read once per tenant and seq and shared.
    pub snapshots: SnapshotCache,
    /// Every ticket change goes through its tenant's batches.
    pub changes: Arc<ChangeWriter>,
}
