//! Builds the application: the same code path for `nextup serve` and for the tests.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest};
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::{Next, NormalizePath, TrailingSlash, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sqlx::PgPool;

use crate::auth::revocation::TokenGenerations;
use crate::auth::token::TokenKeys;
use crate::changes::{self, ChangeWriter};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::tenants::KnownTenants;
use crate::error;
use crate::http;
use crate::http::assets::Assets;
use crate::http::rate_limit::RateLimits;
use crate::maintenance;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::ticketing::paces::PaceCache;
use crate::ws;
use crate::ws::caps::SessionCaps;
use crate::ws::close::Close;
use crate::ws::registry::HubRegistry;

/// Largest request body accepted, in bytes (contract §4).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a shutdown waits for requests in flight before dropping connections.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

pub struct Application {
    server: Server,
    host: String,
    port: u16,
    hubs: HubRegistry,
}

impl Application {
    /// Connects to the database (creating and migrating it), binds `BIND_ADDR` and
    /// prepares the server. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let pool = crate::db::connect_and_migrate(&config).await?;
        Self::build_with_pool(config, pool, clock)
    }

    pub fn build_with_pool(
        config: Config,
        pool: PgPool,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let secret = config.jwt_secret.clone().context(
            "JWT_SECRET is not set: set it to at least 32 random bytes (or run `serve --demo`)",
        )?;
        let listener = listen(&config.bind_addr)
            .with_context(|| format!("cannot listen on BIND_ADDR {}", config.bind_addr))?;
        let local = listener.local_addr()?;
        // Created once, outside the per-worker factory: one hub per tenant for all workers.
        let metrics = Metrics::new();
        let token_generations = Arc::new(TokenGenerations::default());
        let hubs = HubRegistry::start(pool.clone(), metrics.clone(), token_generations.clone());
        let request_timeout = config.request_timeout;
        let send_timeout = config.send_timeout;
        let http_workers = config.http_workers;
        actix_web::rt::spawn(maintenance::trim_allocator_forever());
        let paces = Arc::new(PaceCache::default());
        let changes = Arc::new(ChangeWriter::start(
            &pool,
            paces.clone(),
            metrics.clone(),
            hubs.clone(),
        ));
        let tenants = Arc::new(KnownTenants::default());
        // Background work that reads the database runs on the writer's thread, with its pool
        // (see `ChangeWriter::spawn_beside`).
        {
            let (closer_clock, tenants) = (clock.clone(), tenants.clone());
            changes.spawn_beside(move |pool, writer| {
                changes::close_days_forever(pool, closer_clock, writer, tenants)
            });
            let (clock, metrics) = (clock.clone(), metrics.clone());
            let retention = maintenance::Retention {
                events: config.event_retention,
                audit: config.audit_retention,
            };
            let interval = config.prune_interval;
            changes.spawn_beside(move |pool, _| {
                maintenance::prune_forever(pool, clock, retention, interval, metrics)
            });
        }
        let state = web::Data::new(AppState {
            changes,
            db: pool,
            tokens: TokenKeys::new(&secret, config.token_ttl),
            token_generations,
            limits: RateLimits::new(&config),
            session_caps: SessionCaps::new(
                config.ws_max_sessions_per_address,
                config.ws_max_sessions_per_tenant,
            ),
            assets: Assets::from_config(config.static_dir.as_deref()),
            config: Arc::new(config),
            clock,
            hubs: hubs.clone(),
            snapshots: ws::snapshots::SnapshotCache::new(metrics.snapshot_builds.clone()),
            metrics,
            paces,
            tenants,
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(error::json_error_handlers())
                .wrap(from_fn(count_request))
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .wrap(from_fn(http::access_log::access_log))
                .configure(|cfg| configure_app(cfg, state.clone()))
        })
        .workers(http_workers)
        .on_connect(move |connection, data| {
            http::connection::prepare(connection, data, send_timeout)
        })
        // Slow clients: the request head must arrive within this (408), and a connection
        // that will not close is dropped after it too. Bodies: see `http::deadline`.
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(request_timeout)
        // Signals are ours: sessions must get a close frame (1001) before the server stops.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            host: local.ip().to_string(),
            port: local.port(),
            hubs,
        })
    }

    /// The hubs of this instance (tests read their session counts).
    pub fn hubs(&self) -> HubRegistry {
        self.hubs.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://HOST:PORT` of the bound listener.
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: stops accepting, closes
    /// every WebSocket session with 1001, finishes the requests in flight (for at most
    /// [`SHUTDOWN_TIMEOUT_SECS`]) and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let hubs = self.hubs.clone();
        actix_web::rt::spawn(async move {
            let signal = shutdown_signal().await;
            log::info!("{signal}: closing sessions and finishing requests in flight");
            // Stop accepting first, so no session starts after the hubs closed theirs.
            let stopped = handle.stop(true);
            hubs.close_all(Close::Shutdown).await;
            stopped.await;
        });
        self.server.await
    }
}

/// Connections the kernel queues for accept. The standard library listens with 128, which
/// a wave of displays reconnecting after a restart overflows (the load tool saw a thousand
/// dropped attempts, each retried a second later). Linux caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

fn listen(bind_addr: &str) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address = std::net::ToSocketAddrs::to_socket_addrs(bind_addr)?
        .next()
        .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Registers state, extractor configuration, every route and the pages.
pub fn configure_app(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state.clone())
        .app_data(error::payload_config(MAX_BODY_BYTES))
        .app_data(error::path_config())
        .app_data(error::query_config())
        .service(
            web::scope("/api/v1")
                .wrap(from_fn(http::deadline::bounded))
                .wrap(cors(&state.config.cors_allowed_origins))
                .configure(http::configure_api),
        )
        .configure(ws::configure)
        .configure(http::ops::configure)
        .configure(http::pages::configure)
        .default_service(web::to(error::route_not_found));
}

/// CORS for the API: closed unless `CORS_ALLOWED_ORIGINS` names origins. A request from
/// another origin is still served (browsers enforce CORS, not servers), but without the
/// headers that would let a page there read the answer.
fn cors(allowed_origins: &[String]) -> Cors {
    allowed_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "POST", "PATCH"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(crate::auth::kiosk_key::HEADER),
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER])
        .max_age(3600)
}

/// Counts requests by route pattern (bounded: never the raw path) and status.
async fn count_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let response = next.call(req).await;
    if let Some(metrics) = metrics {
        let (route, status) = match &response {
            Ok(response) => (
                response
                    .request()
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned()),
                response.status(),
            ),
            // An error from a middleware (a request over its deadline): its request is
            // gone, and with it the route it matched.
            Err(error) => (
                "error_in_middleware".to_owned(),
                error.as_response_error().status_code(),
            ),
        };
        metrics
            .http_requests
            .with_label_values(&[route.as_str(), status.as_str()])
            .inc();
    }
    response
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn shutdown_signal() -> &'static str {
    use actix_web::rt::signal::unix::{SignalKind, signal};
    use futures_util::future::{Either, select};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            match select(Box::pin(term.recv()), Box::pin(int.recv())).await {
                Either::Left(_) => "SIGTERM",
                Either::Right(_) => "SIGINT",
            }
        }
        _ => {
            log::warn!("cannot listen for signals; stop with SIGKILL");
            std::future::pending().await
        }
    }
}
