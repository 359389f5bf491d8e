use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::JsonBytes;
use super::change::change;
use super::rate_limit::client_key;
use crate::auth::extract::{MaybeOperator, OperatorAuth};
use crate::auth::kiosk_key;
use crate::db;
use crate::domain::ids::{CounterId, ServiceId, TicketId};
use crate::domain::ticket::{Action, Priority, Status};
use crate::error::{ApiError, Resource, parse_json_body};
use crate::state::AppState;
use crate::ticketing::batch::Command;
use crate::ticketing::commands::IssueTicket;
use crate::ticketing::reads;
use crate::views::Audience;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/tickets")
            .route(web::post().to(issue_ticket))
            .route(web::get().to(list_tickets)),
    )
    .service(web::resource("/tenants/{slug}/tickets/{id}").route(web::get().to(get_ticket)))
    // `call` and `transfer` take a body; registered before the generic action route.
    .service(web::resource("/tenants/{slug}/tickets/{id}/call").route(web::post().to(call_ticket)))
    .service(
        web::resource("/tenants/{slug}/tickets/{id}/transfer")
            .route(web::post().to(transfer_ticket)),
    )
    .service(
        web::resource("/tenants/{slug}/tickets/{id}/{action}").route(web::post().to(act_on_ticket)),
    );
}

/// Longest customer name kept, in characters.
const MAX_CUSTOMER_NAME_CHARS: usize = 200;

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct IssueBody {
    service_id: ServiceId,
    #[serde(default)]
    priority: Priority,
    customer_name: Option<String>,
}

fn customer_name(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(name) = raw.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_CUSTOMER_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "customer_name must be at most {MAX_CUSTOMER_NAME_CHARS} characters, without control characters"
        )));
    }
    Ok(Some(name))
}

/// Public: a kiosk takes a ticket (rate-limited per address and tenant, or per kiosk key).
/// With an operator token the ticket may carry a customer name and the answer is the operator view.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/tickets", tag = "tickets",
    summary = "Take a ticket: public (rate-limited), or an operator's with a customer name",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), crate::http::openapi::IdempotencyKeyHeader,
        ("X-Kiosk-Key" = Option<String>, Header, description = "The tenant's kiosk key: anonymous kiosks then share a quota of their own")),
    request_body(content = IssueBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Issued: the public ticket, or the operator ticket with a token", body = crate::http::openapi::schemas::AnyTicket,
            links(
                ("GetTicket" = (operation_id = "get_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id")))),
                ("CancelTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "cancel")))),
                ("RecallTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "recall")))),
                ("StartTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "start")))),
                ("FinishTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "finish")))),
                ("NoShowTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "no-show")))),
                ("ReactivateTicket" = (operation_id = "act_on_ticket", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"), ("action" = "reactivate"))))
            )),
        (status = 401, description = "A wrong kiosk key (`invalid_kiosk_key`), or a bad token (`invalid_token`, `token_expired`, `token_revoked`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or service (`service_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "Without a token: the service's queue is full (`queue_full`) or the tenant is closed (`closed`); or the Idempotency-Key's first request is still running (`request_in_progress`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 422, description = "The body does not have the expected fields (`invalid_body`), the service is inactive (`service_inactive`), the customer name is too long (`invalid_input`), or the Idempotency-Key was used with another request (`idempotency_key_reused`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 429, description = "Without a token: this address or tenant issues too fast (`rate_limited`)", body = crate::http::openapi::schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security((), ("operator" = [])),
)]
pub(super) async fn issue_ticket(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    auth: MaybeOperator,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let audience = match auth.0 {
        Some(_) => Audience::Operator,
        None => {
            check_public_quota(&req, &state, &slug).await?;
            Audience::Public
        }
    };
    let request: IssueBody = parse_json_body(&body)?;
    // Anonymous callers cannot attach personal data to a ticket.
    let customer_name = match audience {
        Audience::Operator => customer_name(request.customer_name)?,
        Audience::Public => None,
    };
    let command = Command::Issue(IssueTicket {
        service: request.service_id,
        priority: request.priority,
        customer_name,
        // Only anonymous issues are held to the public limit.
        waiting_limit: match audience {
            Audience::Operator => None,
            Audience::Public => Some(state.config.public_queue_limit),
        },
        only_while_open: audience == Audience::Public,
    });
    change(&state, &req, &slug, &body, audience, command).await
}

/// Anonymous issuing counts against the client address's quota and the tenant's, unless it
/// carries the tenant's kiosk key: kiosks then share a tenant quota of their own (as large
/// as the anonymous one), which a flood from elsewhere cannot spend. A wrong key is 401,
/// never served as anonymous, and never refused for being too many: a refusal there would
/// let anyone at a kiosk's address lock it out again (and the key, 244 random bits, cannot
/// be guessed).
async fn check_public_quota(
    req: &HttpRequest,
    state: &AppState,
    slug: &String,
) -> Result<(), ApiError> {
    let Some(presented) = req.headers().get(kiosk_key::HEADER) else {
        let address = client_key(req, &state.config.trusted_proxies);
        state.limits.issue_by_address.check(&address)?;
        return state.limits.issue_by_tenant.check(slug);
    };
    // Read at each use, so that a rotated key is refused at once by every process.
    let stored = db::kiosk_keys::kiosk_key(&mut *state.db.acquire().await?, slug)
        .await?
        .ok_or(ApiError::NotFound(Resource::Tenant))?;
    if !kiosk_key::matches(presented.as_bytes(), &stored) {
        return Err(ApiError::InvalidKioskKey);
    }
    state.limits.issue_by_kiosk.check(slug)
}

/// Finished tickets accumulate forever: a listing of them returns the most recent ones.
/// Active tickets (waiting, called, serving) are always listed in full.
const FINISHED_LIST_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    status: Option<Status>,
    service_id: Option<ServiceId>,
}

/// Operators: tickets by status (default: waiting, called and serving) and service.
/// Finished statuses list the most recent [`FINISHED_LIST_LIMIT`] tickets.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/tickets", tag = "tickets",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("status" = Option<Status>, Query, description = "Only this status (default: waiting, called and serving); finished statuses list the 1000 most recent"),
        ("service_id" = Option<ServiceId>, Query, description = "Only this service")),
    responses((status = 200, description = "Waiting tickets in call order, then the others", body = crate::http::openapi::schemas::TicketList)),
    security(("operator" = [])),
)]
pub(super) async fn list_tickets(
    state: Data<AppState>,
    slug: Path<String>,
    query: Query<ListQuery>,
    _auth: OperatorAuth,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenant = state.tenants.get(&mut conn, &slug).await?;
    let statuses = match query.status {
        Some(status) => vec![status],
        None => vec![Status::Waiting, Status::Called, Status::Serving],
    };
    let limit = statuses
        .iter()
        .any(|s| !matches!(s, Status::Waiting | Status::Called | Status::Serving))
        .then_some(FINISHED_LIST_LIMIT);
    let records =
        db::tickets::list_records(&mut conn, tenant.id, &statuses, query.service_id, limit).await?;
    let loads = db::queue::service_loads(&mut conn, tenant.id, state.clock.now()).await?;
    let (waiting, others) = reads::in_queue_order(records, &loads)?;
    let tickets: Vec<_> = waiting
        .iter()
        .chain(&others)
        .map(|t| t.project(Audience::Operator))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tickets": tickets })))
}

/// Public: one ticket, as a person following it on their phone sees it.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/tickets/{id}", tag = "tickets",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = TicketId, Path, description = "The ticket")),
    responses(
        (status = 200, description = "The public ticket", body = crate::views::PublicTicket),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or ticket (`ticket_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
)]
pub(super) async fn get_ticket(
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let mut conn = state.db.acquire().await?;
    let tenant = state.tenants.get(&mut conn, &slug).await?;
    let ticket = reads::load_ticket(&mut conn, &tenant, id, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(ticket.project(Audience::Public)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CallTicketRequest {
    counter_id: CounterId,
}

/// Operators: call this waiting ticket to a counter, out of order.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/tickets/{id}/call", tag = "tickets",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = TicketId, Path, description = "A waiting ticket"), crate::http::openapi::IdempotencyKeyHeader),
    request_body(content = CallTicketRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The ticket, called to the counter out of order", body = crate::views::OperatorTicket),
        (status = 404, description = "Unknown tenant (`tenant_not_found`), ticket (`ticket_not_found`) or counter (`counter_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "The ticket is not waiting (`invalid_transition`), the counter is busy (`counter_busy`) or inactive (`counter_inactive`), or the Idempotency-Key's first request is still running (`request_in_progress`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("operator" = [])),
)]
pub(super) async fn call_ticket(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
    auth: OperatorAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let request: CallTicketRequest = parse_json_body(&body)?;
    let command = Command::Call {
        ticket: id,
        counter: request.counter_id,
        operator: auth.0.sub,
    };
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TransferRequest {
    service_id: ServiceId,
}

/// Operators: move a called or serving ticket to another service's queue.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/tickets/{id}/transfer", tag = "tickets",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = TicketId, Path, description = "A called or serving ticket"), crate::http::openapi::IdempotencyKeyHeader),
    request_body(content = TransferRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The ticket, waiting in the other service with its code and issue time", body = crate::views::OperatorTicket),
        (status = 404, description = "Unknown tenant (`tenant_not_found`), ticket (`ticket_not_found`) or service (`service_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "The ticket is not called or serving (`invalid_transition`), or the Idempotency-Key's first request is still running (`request_in_progress`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 422, description = "The body does not have the expected fields (`invalid_body`), the service is the ticket's own (`same_service`) or inactive (`service_inactive`), or the Idempotency-Key was used with another request (`idempotency_key_reused`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("operator" = [])),
)]
pub(super) async fn transfer_ticket(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId)>,
    _auth: OperatorAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let request: TransferRequest = parse_json_body(&body)?;
    let command = Command::Transfer {
        ticket: id,
        service: request.service_id,
    };
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}

/// The `{action}` of [`act_on_ticket`], for the API document (the handler reads it with
/// `Action::from_path_name`; the route test checks that each one is answered).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
pub(super) enum TicketAction {
    Recall,
    Start,
    Finish,
    NoShow,
    Cancel,
    Reactivate,
}

/// The actions take no body.
#[derive(utoipa::ToSchema)]
struct EmptyBody {}

/// Operators: recall, start, finish, no-show, cancel, reactivate.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/tickets/{id}/{action}", tag = "tickets",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = TicketId, Path, description = "The ticket"),
        ("action" = TicketAction, Path, description = "What to do"), crate::http::openapi::IdempotencyKeyHeader),
    request_body(content = Option<EmptyBody>, content_type = "application/json", description = "None; any body is ignored (but must be sent as JSON)"),
    responses(
        (status = 200, description = "The ticket after the action", body = crate::views::OperatorTicket),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or ticket (`ticket_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "The action is not allowed from the ticket's status (`invalid_transition`), or the Idempotency-Key's first request is still running (`request_in_progress`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("operator" = [])),
)]
pub(super) async fn act_on_ticket(
    req: HttpRequest,
    state: Data<AppState>,
    path: Path<(String, TicketId, String)>,
    _auth: OperatorAuth,
    JsonBytes(body): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let (slug, id, action_name) = path.into_inner();
    let action = Action::from_path_name(&action_name)
        .filter(|a| !matches!(a, Action::Call | Action::Transfer))
        .ok_or(ApiError::NotFound(Resource::Route))?;
    let command = Command::Act { ticket: id, action };
    change(&state, &req, &slug, &body, Audience::Operator, command).await
}
