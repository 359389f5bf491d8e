use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::audit::{audited, counter_target};
use super::change::change;
use super::{JsonBody, JsonBytes};
use crate::auth::extract::{AdminAuth, ListQuery, OperatorAuth, admin_asks_for_all};
use crate::db;
use crate::domain::audit::Action;
use crate::domain::ids::{CounterId, DisplayName, ServiceId};
use crate::error::{ApiError, parse_json_body};
use crate::state::AppState;
use crate::ticketing::batch::Command;
use crate::ticketing::reads;
use crate::views::Audience;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/counters")
            .route(web::get().to(list_counters))
            .route(web::post().to(create_counter)),
    )
    .service(
        web::resource("/tenants/{slug}/counters/{counter_id}")
            .route(web::patch().to(update_counter)),
    )
    .service(
        web::resource("/tenants/{slug}/counters/{counter_id}/call")
            .route(web::post().to(call_next)),
    )
    .service(
        web::resource("/tenants/{slug}/counters/{counter_id}/next")
            .route(web::get().to(preview_next_call)),
    );
}

/// Operators: the active counters. With `?all=true` an admin gets the inactive ones too
/// (contract §9); from an operator `all` is ignored.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/counters", tag = "counters",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("all" = Option<bool>, Query, description = "Admins: the inactive counters too, each with `active`; ignored from operators")),
    responses((status = 200, description = "The active counters (all of them for an admin's `all=true`)", body = crate::http::openapi::schemas::CounterList)),
    security(("operator" = [])),
)]
pub(super) async fn list_counters(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    _auth: OperatorAuth,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let all = admin_asks_for_all(&req, &query).await?;
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let counters = db::counters::list_counters(&mut conn, tenant.id, !all).await?;
    // Operators get `{id, name}` (contract §4); the admin's full listing adds `active`.
    let counters: Vec<_> = counters
        .iter()
        .map(|c| match all {
            true => json!(c),
            false => json!({ "id": c.id, "name": c.name }),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "counters": counters })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CreateCounterRequest {
    #[schema(example = "Desk 9")]
    name: String,
}

#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/counters", tag = "counters",
    summary = "Admins: add a counter",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    request_body(content = CreateCounterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = crate::db::counters::Counter,
            links(
                ("UpdateCounter" = (operation_id = "update_counter", parameters(("slug" = "$request.path.slug"), ("counter_id" = "$response.body#/id")))),
                ("CallNext" = (operation_id = "call_next", parameters(("slug" = "$request.path.slug"), ("counter_id" = "$response.body#/id")))),
                ("PreviewNextCall" = (operation_id = "preview_next_call", parameters(("slug" = "$request.path.slug"), ("counter_id" = "$response.body#/id"))))
            )),
        (status = 409, description = "The name is taken (`counter_name_taken`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn create_counter(
    state: Data<AppState>,
    slug: Path<String>,
    auth: AdminAuth,
    body: JsonBody<CreateCounterRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = DisplayName::parse("name", &body.0.name)?;
    let counter = audited(
        &state,
        &slug,
        &auth.0,
        Action::CounterCreated,
        async |tx, tenant| {
            let counter = db::counters::insert_counter(tx, tenant.id, &name).await?;
            let target = counter_target(&counter);
            Ok((counter, target))
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(counter))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct UpdateCounterRequest {
    name: Option<String>,
    active: Option<bool>,
}

/// Admins: rename a counter and/or (de)activate it (contract §9). Deactivating a counter
/// that holds a called or serving ticket leaves that ticket where it is: it can still be
/// recalled, started and finished; only new calls to the counter are refused.
#[utoipa::path(
    patch, path = "/api/v1/tenants/{slug}/counters/{counter_id}", tag = "counters",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("counter_id" = CounterId, Path, description = "The counter")),
    request_body(content = UpdateCounterRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The counter after the change", body = crate::db::counters::Counter),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or counter (`counter_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "The name is taken (`counter_name_taken`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn update_counter(
    state: Data<AppState>,
    path: Path<(String, CounterId)>,
    auth: AdminAuth,
    body: JsonBody<UpdateCounterRequest>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let name = body
        .0
        .name
        .as_deref()
        .map(|n| DisplayName::parse("name", n))
        .transpose()?;
    let counter = audited(
        &state,
        &slug,
        &auth.0,
        Action::CounterUpdated,
        async |tx, tenant| {
            let counter =
                db::counters::update_counter(tx, tenant.id, id, name.as_ref(), body.0.active)
                    .await?;
            let target = counter_target(&counter);
            Ok((counter, target))
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(counter))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(super) struct CallNextRequest {
    service_ids: Option<Vec<ServiceId>>,
}

/// Operators: call the next waiting ticket to this counter; 204 when nobody waits.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/counters/{counter_id}/call", tag = "counters",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("counter_id" = CounterId, Path, description = "The counter to call to"), crate::http::openapi::IdempotencyKeyHeader),
    request_body(content = Option<CallNextRequest>, content_type = "application/json", description = "Optional: without it, every service"),
    responses(
        (status = 200, description = "The ticket now called to the counter", body = crate::views::OperatorTicket),
        (status = 204, description = "Nobody waits in the services asked for"),
        (status = 404, description = "Unknown tenant (`tenant_not_found`), counter (`counter_not_found`) or service (`service_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "The counter holds a called or serving ticket (`counter_busy`), is inactive (`counter_inactive`), or the Idempotency-Key's first request is still running (`request_in_progress`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("operator" = [])),
)]
pub(super) async fn call_next(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, CounterId)>,
    auth: OperatorAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, counter) = path.into_inner();
    // The body is optional: no body means "from every service".
    let request: CallNextRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CallNextRequest::default()
    } else {
        parse_json_body(&body)?
    };
    let command = Command::CallNext {
        counter,
        services: request.service_ids,
        operator: auth.0.sub,
    };
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}

#[derive(Deserialize)]
pub(super) struct NextCallQuery {
    /// Comma-separated service ids, as call-next's `service_ids`.
    service_ids: Option<String>,
}

/// `service_ids=<uuid>,<uuid>`: at least one id, each a UUID.
fn parse_service_ids(list: &str) -> Result<Vec<ServiceId>, ApiError> {
    list.split(',')
        .map(|id| uuid::Uuid::parse_str(id.trim()).map(ServiceId::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ApiError::InvalidQuery(
                "service_ids must be service ids separated by commas (omit it for all services)"
                    .to_owned(),
            )
        })
}

/// Operators: the ticket call-next would call to this counter now (from `service_ids`, or
/// from all services), and why; nothing is called. An addition to the contract, for the
/// console.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/counters/{counter_id}/next", tag = "counters",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("counter_id" = CounterId, Path, description = "The counter"),
        ("service_ids" = Option<String>, Query, description = "Service ids separated by commas; all services without it")),
    responses(
        (status = 200, description = "What call-next would call now, and why; nothing is called", body = crate::ticketing::reads::NextCall),
        (status = 404, description = "Unknown tenant (`tenant_not_found`), counter (`counter_not_found`) or service (`service_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 422, description = "`service_ids` names no service (`invalid_input`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("operator" = [])),
)]
pub(super) async fn preview_next_call(
    state: Data<AppState>,
    path: Path<(String, CounterId)>,
    query: Query<NextCallQuery>,
    _auth: OperatorAuth,
) -> Result<HttpResponse, ApiError> {
    let (slug, counter) = path.into_inner();
    let services = query
        .service_ids
        .as_deref()
        .map(parse_service_ids)
        .transpose()?;
    let mut tx = db::begin_snapshot(&state.db).await?;
    let tenant = state.tenants.get(&mut tx, &slug).await?;
    let next = reads::next_call(
        &mut tx,
        &tenant,
        counter,
        services.as_deref(),
        state.clock.now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(next))
}
