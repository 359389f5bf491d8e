//! Live updates over WebSocket (contract §5): handshake routes, sessions, hubs, the feed.

pub mod caps;
pub mod close;
pub mod feed;
pub mod hub;
pub mod incoming;
pub mod latest;
pub mod messages;
pub mod registry;
pub mod session;
pub mod snapshots;

use std::time::Instant;

use actix_web::web::{self, Data, Path, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytestring::ByteString;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;

use self::incoming::{FrameGate, Verdict};
use self::messages::{TokenHolder, frame};
use self::session::WsSession;
use crate::auth::extract::{bearer_token, verify_for_slug};
use crate::db;
use crate::domain::replay::replay_from;
use crate::error::ApiError;
use crate::http::connection::ConnectionSocket;
use crate::http::rate_limit::client_address;
use crate::state::AppState;
use crate::ticketing::reads;
use crate::views::Audience;

/// Largest frame a client may send; clients send tiny JSON messages.
pub const MAX_CLIENT_FRAME_BYTES: usize = 4096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/{slug}/totem", web::get().to(totem_session))
        .route("/ws/{slug}/operator", web::get().to(operator_session));
}

#[derive(Deserialize)]
pub(crate) struct SessionQuery {
    since: Option<i64>,
    token: Option<String>,
}

#[utoipa::path(
    get, path = "/ws/{slug}/totem", tag = "websocket",
    summary = "Public live updates (kiosks, displays): a WebSocket",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("since" = Option<i64>, Query, description = "Resume after this `seq`")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol: public messages (see the AsyncAPI document)"),
        (status = 400, description = "Not a WebSocket upgrade (`websocket_upgrade_required`), or a query parameter does not parse (`invalid_query`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 429, description = "Too many live sessions from this address or for this tenant (`too_many_sessions`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 503, description = "The database is unavailable (`database_unavailable`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
)]
pub(crate) async fn totem_session(
    req: HttpRequest,
    stream: Payload,
    state: Data<AppState>,
    slug: Path<String>,
    query: Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    start_session(
        req,
        stream,
        &state,
        &slug,
        Audience::Public,
        None,
        query.since,
    )
    .await
}

/// The token comes as `?token=` (browsers cannot set headers on a WebSocket) or as
/// `Authorization: Bearer`.
#[utoipa::path(
    get, path = "/ws/{slug}/operator", tag = "websocket",
    summary = "Operators' live updates: a WebSocket",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("since" = Option<i64>, Query, description = "Resume after this `seq`"),
        ("token" = Option<String>, Query, description = "The operator's token (browsers cannot set headers on a WebSocket); or send `Authorization: Bearer`")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol: operator messages (see the AsyncAPI document)"),
        (status = 400, description = "Not a WebSocket upgrade (`websocket_upgrade_required`), or a query parameter does not parse (`invalid_query`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 429, description = "Too many live sessions from this address or for this tenant (`too_many_sessions`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 503, description = "The database is unavailable (`database_unavailable`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security((), ("operator" = [])),
)]
pub(crate) async fn operator_session(
    req: HttpRequest,
    stream: Payload,
    state: Data<AppState>,
    slug: Path<String>,
    query: Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let token = match (query.token.as_deref(), bearer_token(&req)) {
        (Some(token), _) => token,
        (None, Some(header)) => header?,
        (None, None) => return Err(ApiError::MissingToken),
    };
    let claims = verify_for_slug(&state, token, &slug).await?;
    let expires_at = Utc
        .timestamp_opt(claims.exp, 0)
        .single()
        .ok_or(ApiError::InvalidToken)?;
    start_session(
        req,
        stream,
        &state,
        &slug,
        Audience::Operator,
        Some(Holder {
            expires_at,
            token: TokenHolder {
                user: claims.sub,
                generation: claims.generation,
            },
        }),
        query.since,
    )
    .await
}

/// The token an operator session is opened with: it closes when the token expires or is
/// revoked.
#[derive(Clone, Copy)]
struct Holder {
    expires_at: DateTime<Utc>,
    token: TokenHolder,
}

async fn start_session(
    req: HttpRequest,
    stream: Payload,
    state: &AppState,
    slug: &str,
    audience: Audience,
    holder: Option<Holder>,
    since: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let tenant = match state.tenants.known(slug) {
        Some(tenant) => tenant,
        None => {
            let mut conn = state.db.acquire().await?;
            state.tenants.read(&mut conn, slug).await?
        }
    };
    let address = client_address(&req, &state.config.trusted_proxies);
    let permit = state.session_caps.admit(address, tenant.id)?;
    // The hub must exist before the state is read: every event committed after that read
    // then reaches the hub, and nothing falls between the two.
    let hub = state.hubs.hub(tenant.id, &tenant.slug);
    let session_id = uuid::Uuid::new_v4();
    let now = state.clock.now();

    let mut tx = db::begin_snapshot(&state.db).await?;
    let seq = db::events::current_seq(&mut tx, tenant.id).await?;
    let oldest = db::events::oldest_seq(&mut tx, tenant.id)
        .await?
        .unwrap_or(seq + 1);
    let mut initial: Vec<ByteString> = vec![frame(
        "hello",
        now,
        json!({
            "session_id": session_id,
            "audience": match audience { Audience::Public => "totem", Audience::Operator => "operator" },
            "seq": seq,
            "heartbeat_interval_secs": state.config.heartbeat_interval.as_secs(),
        }),
    )];
    match replay_from(since, seq, oldest) {
        Some(since) => {
            let changes = reads::changes_after(&mut tx, tenant.id, since, seq).await?;
            for change in &changes {
                initial.extend(change.messages(audience).map(ByteString::from));
            }
        }
        None => {
            // Read in `tx` unless another request has read the snapshot at this seq.
            let snapshot = state.snapshots.at_seq(&mut tx, &tenant, seq, now).await?;
            initial.push(snapshot.message(audience));
        }
    }
    tx.commit().await?;

    let verdict = Verdict::default();
    let incoming = FrameGate::new(
        stream,
        MAX_CLIENT_FRAME_BYTES,
        state.config.request_timeout,
        verdict.clone(),
    );
    let session = WsSession {
        id: session_id,
        audience,
        hub,
        initial,
        last_seq: seq,
        heartbeat: state.config.heartbeat_interval,
        client_timeout: state.config.client_timeout,
        token_expires_at: holder.map(|h| h.expires_at),
        operator: holder.map(|h| h.token),
        last_heard: Instant::now(),
        close_reason: "client_closed",
        metrics: state.metrics.clone(),
        permit,
        incoming_verdict: verdict,
        connection: req.conn_data::<ConnectionSocket>().copied(),
    };
    ws::WsResponseBuilder::new(session, &req, incoming)
        .frame_size(MAX_CLIENT_FRAME_BYTES)
        .start()
        .map_err(|e| {
            log::debug!("WebSocket handshake refused: {e}");
            ApiError::NotWebSocket
        })
}
