//! The machine-readable descriptions of the API: OpenAPI 3.1 for REST, generated from the
//! handlers' `#[utoipa::path]` annotations and the types they serialize, and the AsyncAPI
//! document of the WebSocket protocol (`docs/asyncapi.yaml`, written by hand).
//!
//! Each handler lists the answers particular to it. The answers that come from the shared
//! extractors and middleware are added here by one rule each (see [`CommonAnswers`]), so
//! that they cannot be forgotten on one operation and stay true when an extractor changes.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::web;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use super::{
    audit, counters, day, login, ops, password, queue, services, settings, stats, tickets, users,
};
use crate::ws;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
pub const ASYNCAPI_PATH: &str = "/api/v1/asyncapi.yaml";

/// The AsyncAPI document, served as written.
pub const ASYNCAPI_YAML: &str = include_str!("../../docs/asyncapi.yaml");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/openapi.json").route(web::get().to(get_openapi)))
        .service(web::resource("/asyncapi.yaml").route(web::get().to(get_asyncapi)));
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "nextup",
        description = "Ticket-queue server: kiosks issue tickets, operators call them, displays \
            announce them. Errors always have the body `{\"error\": {\"code\", \"message\"}}`. \
            The WebSocket protocol is described by the AsyncAPI document at /api/v1/asyncapi.yaml.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        login::login,
        password::change_password,
        queue::list_tenants,
        services::list_services,
        services::create_service,
        services::update_service,
        settings::get_settings,
        settings::update_settings,
        audit::list_audit,
        counters::list_counters,
        counters::create_counter,
        counters::update_counter,
        counters::call_next,
        counters::preview_next_call,
        day::close_day,
        stats::get_stats,
        users::list_users,
        users::create_user,
        users::update_user,
        queue::get_queue,
        queue::list_events,
        tickets::issue_ticket,
        tickets::list_tickets,
        tickets::get_ticket,
        tickets::call_ticket,
        tickets::transfer_ticket,
        tickets::act_on_ticket,
        get_openapi,
        get_asyncapi,
        ws::totem_session,
        ws::operator_session,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    components(schemas(
        schemas::ErrorBody,
        schemas::QueueSnapshot,
        schemas::OperatorQueueSnapshot,
        schemas::CounterRef,
        schemas::TicketUpdateMessage,
        schemas::QueueUpdateMessage,
        tickets::TicketAction,
        stats::StatsFormat,
    )),
    modifiers(&CommonAnswers),
    tags(
        (name = "auth", description = "Logging in and passwords"),
        (name = "tickets", description = "Issuing tickets and moving them through their states"),
        (name = "queue", description = "The queue snapshot and the event log"),
        (name = "services", description = "Services: the queues of a tenant"),
        (name = "counters", description = "Counters: the desks tickets are called to"),
        (name = "admin", description = "Users, settings, the audit log and closing the day"),
        (name = "websocket", description = "WebSocket handshakes; the messages are in the AsyncAPI document"),
        (name = "ops", description = "Health, readiness and metrics, outside /api/v1"),
        (name = "docs", description = "These documents"),
    ),
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON, built once.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut document =
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
        fix_link_field_names(&mut document);
        serde_json::to_string_pretty(&document).expect("a JSON value serializes")
    })
}

/// utoipa 5.5 writes the fields of a Link Object in snake_case (`operation_id`,
/// `request_body`); OpenAPI names them in camelCase, and tools ignore the others.
fn fix_link_field_names(document: &mut serde_json::Value) {
    let operations = document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let responses = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flatten();
        for (_, response) in responses {
            let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
                continue;
            };
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.to_owned(), value);
                    }
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub(super) async fn get_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(openapi_json())
}

/// The AsyncAPI document of the WebSocket protocol.
#[utoipa::path(
    get,
    path = "/api/v1/asyncapi.yaml",
    tag = "docs",
    responses((status = 200, description = "The AsyncAPI 3.0 document of the WebSocket protocol", content_type = "application/yaml", body = String)),
)]
pub(super) async fn get_asyncapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .body(ASYNCAPI_YAML)
}

/// Adds the security schemes and, to every operation, the answers of the shared
/// extractors and middleware:
/// - under `/api/v1`: 408 (the body came too slowly, `http::deadline`); 503 where the
///   handler reads the database (all but the two documents);
/// - a security requirement (`OperatorAuth`, `AdminAuth`, `MaybeOperator`): 401 for a
///   missing, bad, expired or revoked token, 403 for another tenant's token (or an
///   operator's on an admin route);
/// - a `{slug}`: 404 for an unknown tenant; any other path parameter (a UUID): 400;
/// - a query parameter: 400 when it does not parse;
/// - a request body: 400 malformed JSON, 413 over 64 KiB, 415 not `application/json`,
///   422 wrong fields;
/// - an `Idempotency-Key` header: 400 for a bad key, 409 while its first request runs,
///   422 when reused with another body.
///
/// An answer the handler documents itself is kept as it is.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // Two names for the one bearer scheme, so that each operation says which role it
        // needs.
        for (name, who) in [
            ("operator", "an operator's or an admin's"),
            ("admin", "an admin's"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(format!(
                            "The token of `POST /api/v1/auth/login` (HS256 JWT): {who}, \
                             of the path's tenant"
                        )))
                        .build(),
                ),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                add_common_answers(path, operation);
            }
        }
    }
}

fn add_common_answers(path: &str, operation: &mut Operation) {
    let params = operation.parameters.as_deref().unwrap_or_default();
    let in_api = path.starts_with("/api/v1/");
    let is_document = path == OPENAPI_PATH || path == ASYNCAPI_PATH;
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let has_slug = params
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path && p.name == "slug");
    let has_id = params
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path && p.name != "slug" && p.name != "action");
    let has_query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
    let idempotent = params
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Header && p.name == super::idempotency::HEADER);
    let has_body = operation.request_body.is_some();

    let mut answers: Vec<(u16, &str)> = Vec::new();
    if has_id {
        answers.push((400, "A path segment is not a valid UUID (`invalid_path`)"));
    }
    if has_query {
        answers.push((400, "A query parameter does not parse (`invalid_query`)"));
    }
    if has_body {
        answers.push((400, "The body is not JSON (`malformed_json`)"));
    }
    if idempotent {
        answers.push((
            400,
            "The Idempotency-Key is not 1–255 printable characters (`invalid_idempotency_key`)",
        ));
    }
    if secured {
        answers.push((401, "No token, or a bad, expired or revoked one (`missing_token`, `invalid_token`, `token_expired`, `token_revoked`)"));
        answers.push((403, "A token of another tenant (`wrong_tenant`), or an operator's where an admin's is needed (`admin_required`)"));
    }
    if has_slug {
        answers.push((404, "Unknown tenant (`tenant_not_found`)"));
    }
    if in_api {
        answers.push((
            408,
            "The request body did not arrive in time (`request_timeout`)",
        ));
    }
    if idempotent {
        answers.push((
            409,
            "A request with this Idempotency-Key is still being processed (`request_in_progress`)",
        ));
    }
    if has_body {
        answers.push((413, "The body is over 64 KiB (`payload_too_large`)"));
        answers.push((
            415,
            "The body is not sent as `application/json` (`unsupported_media_type`)",
        ));
        answers.push((422, "The body does not have the expected fields (`invalid_body`), or a value is invalid (`invalid_input`)"));
    }
    if idempotent {
        answers.push((
            422,
            "This Idempotency-Key was used with another request (`idempotency_key_reused`)",
        ));
    }
    if in_api && !is_document {
        answers.push((503, "The database is unavailable (`database_unavailable`); retry after `Retry-After` seconds"));
    }

    let responses = &mut operation.responses.responses;
    let mut added: Vec<(u16, Vec<&str>)> = Vec::new();
    for (status, description) in answers {
        if responses.contains_key(&status.to_string()) {
            continue;
        }
        match added.iter_mut().find(|(s, _)| *s == status) {
            Some((_, descriptions)) => descriptions.push(description),
            None => added.push((status, vec![description])),
        }
    }
    for (status, descriptions) in added {
        responses.insert(
            status.to_string(),
            RefOr::T(error_response(status, &descriptions.join("; or "))),
        );
    }
}

/// An error answer: the contract's error body, and the headers its status carries.
pub fn error_response(status: u16, description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Error")))
            .build(),
    );
    let integer = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    };
    match status {
        401 => {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            );
        }
        429 | 503 => {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(integer())
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        _ => {}
    }
    response.build()
}

/// The `Idempotency-Key` header of the routes that change tickets (contract §1.5), for
/// their `params(…)`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKeyHeader {
    // One line: the document shows the text as written.
    /// Makes the request safe to retry: the same key on the same tenant within 24 h answers the first response again (1–255 printable ASCII characters)
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = "^[ -~]+$"
    )]
    idempotency_key: Option<String>,
}

/// Schemas of answers that handlers build with `json!` or assemble from parts, and the
/// error body. The real types are the ones named in each comment.
#[allow(dead_code)]
pub mod schemas {
    use chrono::{DateTime, Utc};
    use utoipa::openapi::schema::{AnyOfBuilder, Schema};
    use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Type};
    use utoipa::{PartialSchema, ToSchema};

    use crate::db::audit::Entry;
    use crate::db::counters::Counter;
    use crate::domain::ids::{CounterId, ServiceId, UserId};
    use crate::domain::role::Role;
    use crate::domain::ticket::{EventAction, Status};
    use crate::views::{OperatorTicket, PublicTicket, ServiceSummary};

    /// The body of every error answer (contract §4, `error::error_body`).
    #[derive(ToSchema)]
    #[schema(as = Error)]
    pub struct ErrorBody {
        pub error: ErrorDetail,
    }

    #[derive(ToSchema)]
    pub struct ErrorDetail {
        /// snake_case, e.g. `tenant_not_found`.
        #[schema(pattern = "^[a-z0-9_]+$")]
        pub code: String,
        /// A sentence for a person.
        pub message: String,
    }

    /// A ticket in the caller's projection: the public view without a token, the operator
    /// view with one. (`anyOf`, not `oneOf`: an operator ticket is also a valid public one.)
    pub struct AnyTicket;

    impl PartialSchema for AnyTicket {
        fn schema() -> RefOr<Schema> {
            AnyOfBuilder::new()
                .item(Ref::from_schema_name("PublicTicket"))
                .item(Ref::from_schema_name("OperatorTicket"))
                .description(Some(
                    "PublicTicket without a token, OperatorTicket with an operator's token",
                ))
                .into()
        }
    }

    impl ToSchema for AnyTicket {
        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            schemas.push((PublicTicket::name().into(), PublicTicket::schema()));
            schemas.push((OperatorTicket::name().into(), OperatorTicket::schema()));
            PublicTicket::schemas(schemas);
            OperatorTicket::schemas(schemas);
        }
    }

    /// The queue snapshot in either projection (`GET …/queue`).
    pub struct AnyQueueSnapshot;

    impl PartialSchema for AnyQueueSnapshot {
        fn schema() -> RefOr<Schema> {
            AnyOfBuilder::new()
                .item(Ref::from_schema_name("QueueSnapshot"))
                .item(Ref::from_schema_name("OperatorQueueSnapshot"))
                .into()
        }
    }

    impl ToSchema for AnyQueueSnapshot {}

    #[derive(ToSchema)]
    pub struct TenantRef {
        #[schema(example = "demo")]
        pub slug: String,
        pub name: String,
    }

    /// `GET /tenants`: every tenant, for the start page (`http::queue::list_tenants`).
    #[derive(ToSchema)]
    pub struct TenantList {
        pub tenants: Vec<TenantRef>,
    }

    /// The queue snapshot, public projection (`ticketing::reads::QueueSnapshot`).
    #[derive(ToSchema)]
    pub struct QueueSnapshot {
        pub tenant: TenantRef,
        pub seq: i64,
        pub services: Vec<ServiceSummary>,
        /// In call order.
        pub waiting: Vec<PublicTicket>,
        /// Called or serving, most recent call first.
        pub called: Vec<PublicTicket>,
    }

    /// The queue snapshot, operator projection.
    #[derive(ToSchema)]
    pub struct OperatorQueueSnapshot {
        pub tenant: TenantRef,
        pub seq: i64,
        pub services: Vec<ServiceSummary>,
        pub waiting: Vec<OperatorTicket>,
        pub called: Vec<OperatorTicket>,
    }

    /// A `ticket_update` message (`views::CommittedChange::ticket_update`).
    #[derive(ToSchema)]
    pub struct TicketUpdateMessage {
        /// `ticket_update`
        #[schema(rename = "type", pattern = "^ticket_update$")]
        pub kind: String,
        pub seq: i64,
        pub ts: DateTime<Utc>,
        pub data: TicketUpdate,
    }

    #[derive(ToSchema)]
    pub struct TicketUpdate {
        pub action: EventAction,
        /// `null` for an issued ticket.
        #[schema(required = true)]
        pub previous_status: Option<Status>,
        #[schema(schema_with = AnyTicket::schema)]
        pub ticket: AnyTicket,
    }

    /// A `queue_update` message (`views::CommittedChange::queue_update`).
    #[derive(ToSchema)]
    pub struct QueueUpdateMessage {
        /// `queue_update`
        #[schema(rename = "type", pattern = "^queue_update$")]
        pub kind: String,
        pub seq: i64,
        pub ts: DateTime<Utc>,
        pub data: QueueUpdate,
    }

    #[derive(ToSchema)]
    pub struct QueueUpdate {
        pub services: Vec<ServiceSummary>,
    }

    /// `GET …/events`: the messages after `since`, each change's `ticket_update` then its
    /// `queue_update` (`http::queue::list_events`).
    #[derive(ToSchema)]
    pub struct EventList {
        pub seq: i64,
        #[schema(schema_with = event_items)]
        pub events: Vec<TicketUpdateMessage>,
    }

    fn event_items() -> utoipa::openapi::schema::Array {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(
                AnyOfBuilder::new()
                    .item(Ref::from_schema_name("TicketUpdateMessage"))
                    .item(Ref::from_schema_name("QueueUpdateMessage")),
            )
            .build()
    }

    /// A service as an operator or a kiosk sees it.
    #[derive(ToSchema)]
    pub struct Service {
        pub id: ServiceId,
        #[schema(example = "A")]
        pub code: String,
        #[schema(example = "General")]
        pub name: String,
        /// Only in answers to admins (`?all=true`, create, update).
        pub active: Option<bool>,
    }

    /// `GET …/services` (`http::services::list_services`).
    #[derive(ToSchema)]
    pub struct ServiceList {
        pub services: Vec<Service>,
        /// Whether the tenant is open now (contract §8).
        pub open: bool,
        /// The start of the next opening range while closed; `null` while open or when the
        /// tenant never opens.
        #[schema(required = true)]
        pub opens_at: Option<DateTime<Utc>>,
        /// The tenant's IANA timezone, for showing `opens_at` in local time.
        #[schema(example = "Europe/Lisbon")]
        pub timezone: String,
    }

    /// A counter as operators see it (`GET …/counters` without `all`).
    #[derive(ToSchema)]
    pub struct CounterRef {
        pub id: CounterId,
        pub name: String,
    }

    /// `GET …/counters`: `{id, name}` each, with `active` too for an admin's `?all=true`
    /// (`db::counters::Counter`).
    #[derive(ToSchema)]
    pub struct CounterList {
        #[schema(schema_with = counter_items)]
        pub counters: Vec<Counter>,
    }

    fn counter_items() -> utoipa::openapi::schema::Array {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(
                AnyOfBuilder::new()
                    .item(Ref::from_schema_name("CounterRef"))
                    .item(Ref::from_schema_name("Counter")),
            )
            .build()
    }

    /// `GET …/tickets` (`http::tickets::list_tickets`).
    #[derive(ToSchema)]
    pub struct TicketList {
        pub tickets: Vec<OperatorTicket>,
    }

    /// A user as admins see it (`http::users::account_json`); never the password.
    #[derive(ToSchema)]
    pub struct User {
        pub id: UserId,
        pub username: String,
        pub role: Role,
        pub active: bool,
        #[schema(required = true)]
        pub last_login_at: Option<DateTime<Utc>>,
        /// The tenant's slug; only in the answer to creating the user.
        pub tenant: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct UserList {
        pub users: Vec<User>,
    }

    /// `GET …/audit` (`db::audit::Entry`).
    #[derive(ToSchema)]
    pub struct AuditLog {
        pub entries: Vec<Entry>,
    }

    /// The logged-in user (`http::login::login`).
    #[derive(ToSchema)]
    pub struct LoggedInUser {
        pub id: UserId,
        pub username: String,
        pub role: Role,
        /// The tenant's slug.
        pub tenant: String,
    }

    #[derive(ToSchema)]
    pub struct LoginAnswer {
        /// An HS256 JWT, sent as `Authorization: Bearer …`.
        pub token: String,
        pub expires_at: DateTime<Utc>,
        pub user: LoggedInUser,
    }

    /// Opening hours: weekdays `mon`…`sun`, each a list of `["HH:MM", "HH:MM"]` ranges in
    /// local time; a weekday left out or empty is closed (`domain::settings::OpeningHours`).
    #[derive(ToSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct OpeningHours {
        #[schema(schema_with = ranges)]
        pub mon: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub tue: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub wed: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub thu: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub fri: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub sat: Option<Vec<Vec<String>>>,
        #[schema(schema_with = ranges)]
        pub sun: Option<Vec<Vec<String>>>,
    }

    fn ranges() -> utoipa::openapi::schema::Array {
        use utoipa::openapi::schema::ArrayBuilder;
        let time = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"));
        ArrayBuilder::new()
            .items(
                ArrayBuilder::new()
                    .items(time)
                    .min_items(Some(2))
                    .max_items(Some(2)),
            )
            .build()
    }

    /// The tenant's settings (`domain::settings::settings_json`).
    #[derive(ToSchema)]
    pub struct Settings {
        #[schema(example = "Europe/Lisbon")]
        pub timezone: String,
        /// `null`: always open.
        #[schema(required = true)]
        pub opening_hours: Option<OpeningHours>,
        #[schema(minimum = 1)]
        #[schema(required = true)]
        pub max_calls: Option<u32>,
        #[schema(minimum = 1)]
        #[schema(required = true)]
        pub priority_ratio: Option<u32>,
    }

    /// A settings change: any of the fields; an unknown field is refused
    /// (`domain::settings::SettingsPatch`).
    #[derive(ToSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SettingsPatch {
        /// An IANA timezone name.
        pub timezone: Option<String>,
        pub opening_hours: Option<OpeningHours>,
        #[schema(minimum = 1)]
        pub max_calls: Option<u32>,
        #[schema(minimum = 1)]
        pub priority_ratio: Option<u32>,
    }

    /// `GET /healthz`, `GET /readyz`.
    #[derive(ToSchema)]
    pub struct Health {
        #[schema(example = "ok")]
        pub status: String,
    }
}
