use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use super::audit::{audited, service_target};
use crate::auth::extract::{AdminAuth, ListQuery, admin_asks_for_all};
use crate::db;
use crate::domain::audit::Action;
use crate::domain::ids::{DisplayName, ServiceCode, ServiceId};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/services")
            .route(web::get().to(list_services))
            .route(web::post().to(create_service)),
    )
    .service(web::resource("/tenants/{slug}/services/{id}").route(web::patch().to(update_service)));
}

/// The service as clients see it; `active` only matters to admins.
fn service_json(service: &db::services::Service) -> serde_json::Value {
    json!({ "id": service.id, "code": service.code, "name": service.name, "active": service.active })
}

/// Public: the active services, for a kiosk to offer, and whether the tenant is open now
/// (contract §8): `opens_at` is the start of its next opening range while it is closed.
/// With `?all=true` an admin gets the inactive ones too, each with `active` (contract §9);
/// from anyone else `all` is ignored.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/services", tag = "services",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"),
        ("all" = Option<bool>, Query, description = "Admins: the inactive services too, each with `active`; ignored from anyone else")),
    responses((status = 200, description = "The active services (all of them for an admin's `all=true`) and whether the tenant is open", body = crate::http::openapi::schemas::ServiceList)),
    security((), ("operator" = [])),
)]
pub(super) async fn list_services(
    req: HttpRequest,
    state: Data<AppState>,
    slug: Path<String>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let all = admin_asks_for_all(&req, &query).await?;
    let mut conn = state.db.acquire().await?;
    let tenant = state.tenants.get(&mut conn, &slug).await?;
    let services = db::services::list_services(&mut conn, tenant.id, !all).await?;
    let services: Vec<_> = services
        .iter()
        .map(|s| match all {
            true => service_json(s),
            false => json!({ "id": s.id, "code": s.code, "name": s.name }),
        })
        .collect();
    let now = state.clock.now();
    let day = tenant.business_day();
    Ok(HttpResponse::Ok().json(json!({
        "services": services,
        "open": day.is_open(now),
        "opens_at": day.opens_at(now),
        // Beyond the contract: kiosks show `opens_at` in the site's own time.
        "timezone": tenant.timezone.name(),
    })))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CreateServiceRequest {
    /// One to four capital letters, unique in the tenant.
    #[schema(pattern = "^[A-Z]{1,4}$", example = "X")]
    code: String,
    #[schema(example = "Extra")]
    name: String,
}

#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/services", tag = "services",
    summary = "Admins: add a service",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    request_body(content = CreateServiceRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = crate::http::openapi::schemas::Service,
            links(
                ("UpdateService" = (operation_id = "update_service", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id")))),
                ("IssueTicket" = (operation_id = "issue_ticket", parameters(("slug" = "$request.path.slug")), request_body = json!({"service_id": "$response.body#/id"})))
            )),
        (status = 409, description = "The code is taken (`service_code_taken`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn create_service(
    state: Data<AppState>,
    slug: Path<String>,
    auth: AdminAuth,
    body: JsonBody<CreateServiceRequest>,
) -> Result<HttpResponse, ApiError> {
    let code = ServiceCode::parse(&body.0.code)?;
    let name = DisplayName::parse("name", &body.0.name)?;
    let service = audited(
        &state,
        &slug,
        &auth.0,
        Action::ServiceCreated,
        async |tx, tenant| {
            let service = db::services::insert_service(tx, tenant.id, &code, &name).await?;
            let target = service_target(&service);
            Ok((service, target))
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(service_json(&service)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct UpdateServiceRequest {
    name: Option<String>,
    active: Option<bool>,
}

#[utoipa::path(
    patch, path = "/api/v1/tenants/{slug}/services/{id}", tag = "services",
    summary = "Admins: rename a service and/or (de)activate it",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = ServiceId, Path, description = "The service")),
    request_body(content = UpdateServiceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The service after the change", body = crate::http::openapi::schemas::Service),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or service (`service_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn update_service(
    state: Data<AppState>,
    path: Path<(String, ServiceId)>,
    auth: AdminAuth,
    body: JsonBody<UpdateServiceRequest>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let name = body
        .0
        .name
        .as_deref()
        .map(|n| DisplayName::parse("name", n))
        .transpose()?;
    let service = audited(
        &state,
        &slug,
        &auth.0,
        Action::ServiceUpdated,
        async |tx, tenant| {
            let service =
                db::services::update_service(tx, tenant.id, id, name.as_ref(), body.0.active)
                    .await?;
            let target = service_target(&service);
            Ok((service, target))
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(service_json(&service)))
}
