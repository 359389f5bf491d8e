use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::auth::extract::MaybeOperator;
use crate::db;
use crate::domain::replay::replay_from;
use crate::error::ApiError;
use crate::state::AppState;
use crate::ticketing::reads;
use crate::views::Audience;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants").route(web::get().to(list_tenants)))
        .service(web::resource("/tenants/{slug}/queue").route(web::get().to(get_queue)))
        .service(web::resource("/tenants/{slug}/events").route(web::get().to(list_events)));
}

/// Public: the tenants this server hosts (for the start page).
#[utoipa::path(
    get, path = "/api/v1/tenants", tag = "queue",
    responses((status = 200, description = "Every tenant", body = crate::http::openapi::schemas::TenantList)),
)]
pub(super) async fn list_tenants(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenants = db::tenants::list_tenants(&mut conn).await?;
    let tenants: Vec<_> = tenants
        .iter()
        .map(|t| json!({ "slug": t.slug, "name": t.name }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tenants": tenants })))
}

fn audience_of(auth: &MaybeOperator) -> Audience {
    match auth.0 {
        Some(_) => Audience::Operator,
        None => Audience::Public,
    }
}

/// The tag of the queue at `seq`; each projection has its own.
fn etag(seq: i64, audience: Audience) -> String {
    match audience {
        Audience::Public => format!("\"{seq}\""),
        Audience::Operator => format!("\"{seq}-operator\""),
    }
}

fn matches_if_none_match(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == tag || v == "*")
}

/// Public (operators get the operator view): the queue snapshot, with an `ETag` that
/// changes exactly when the tenant's seq does, and 304 for a matching `If-None-Match`:
/// answered from memory, without the database, while this process is sure of the seq
/// (see [`crate::ws::latest`]). Polling clients mostly get that 304. Otherwise the seq is
/// read from the database, and the snapshot at that seq is shared with every other poll
/// and handshake that wants it (see [`crate::ws::snapshots`]).
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/queue", tag = "queue",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` of an earlier answer: 304 while the queue is unchanged")),
    responses(
        (status = 200, description = "The queue snapshot, in the caller's projection", body = crate::http::openapi::schemas::AnyQueueSnapshot,
            headers(("ETag" = String, description = "Changes exactly when the tenant's `seq` does"))),
        (status = 304, description = "Unchanged since the `If-None-Match` tag",
            headers(("ETag" = String, description = "The current tag"))),
    ),
    security((), ("operator" = [])),
)]
pub(super) async fn get_queue(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    auth: MaybeOperator,
) -> Result<HttpResponse, ApiError> {
    let audience = audience_of(&auth);
    let latest = state.hubs.latest();
    if let Some(seq) = latest.known(&slug) {
        let tag = etag(seq, audience);
        if matches_if_none_match(&req, &tag) {
            return Ok(queue_response(HttpResponse::NotModified(), tag).finish());
        }
    }
    let epoch = latest.epoch();
    let mut tx = db::begin_snapshot(&state.db).await?;
    let tenant = state.tenants.get(&mut tx, &slug).await?;
    let seq = db::events::current_seq(&mut tx, tenant.id).await?;
    latest.learn(&slug, tenant.id, seq, epoch);
    let tag = etag(seq, audience);
    if matches_if_none_match(&req, &tag) {
        return Ok(queue_response(HttpResponse::NotModified(), tag).finish());
    }
    // Read in `tx` unless another request has read the snapshot at this seq.
    let snapshot = state
        .snapshots
        .at_seq(&mut tx, &tenant, seq, state.clock.now())
        .await?;
    tx.commit().await?;
    Ok(queue_response(HttpResponse::Ok(), tag)
        .content_type(ContentType::json())
        .body(snapshot.body(audience)))
}

fn queue_response(
    mut response: actix_web::HttpResponseBuilder,
    tag: String,
) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((header::VARY, HeaderValue::from_static("Authorization")));
    response
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    since: i64,
}

/// Public (operators get the operator view): the messages the WebSocket sent after `since`.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/events", tag = "queue",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("since" = i64, Query, description = "The last `seq` the caller has seen")),
    responses(
        (status = 200, description = "The `ticket_update` and `queue_update` messages after `since`, in order, in the caller's projection", body = crate::http::openapi::schemas::EventList),
        (status = 410, description = "`since` is older than the events kept, or greater than the current `seq` (`since_unavailable`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security((), ("operator" = [])),
)]
pub(super) async fn list_events(
    state: Data<AppState>,
    slug: Path<String>,
    query: Query<EventsQuery>,
    auth: MaybeOperator,
) -> Result<HttpResponse, ApiError> {
    let audience = audience_of(&auth);
    let since = query.since;
    let mut tx = db::begin_snapshot(&state.db).await?;
    let tenant = state.tenants.get(&mut tx, &slug).await?;
    let current = db::events::current_seq(&mut tx, tenant.id).await?;
    // Every event after `since` must still be in the log.
    let oldest_kept = db::events::oldest_seq(&mut tx, tenant.id)
        .await?
        .unwrap_or(current + 1);
    if replay_from(Some(since), current, oldest_kept).is_none() {
        return Err(ApiError::SinceUnavailable { since, current });
    }
    let changes = reads::changes_after(&mut tx, tenant.id, since, current).await?;
    tx.commit().await?;
    // The messages exactly as the WebSocket sends them.
    let mut body = format!(r#"{{"seq":{current},"events":["#);
    for (i, message) in changes
        .iter()
        .flat_map(|c| c.messages(audience))
        .enumerate()
    {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&message);
    }
    body.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}
