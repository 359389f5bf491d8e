//! A tenant's settings (contract §8): time zone, opening hours, recall limit, fair ratio.

use actix_web::HttpResponse;
use actix_web::web::{self, Data, Path};
use serde_json::Value;

use super::JsonBody;
use super::audit::{record, tenant_target};
use crate::auth::extract::AdminAuth;
use crate::db;
use crate::domain::audit::Action;
use crate::domain::settings::{SettingsPatch, settings_json};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/settings")
            .route(web::get().to(get_settings))
            .route(web::patch().to(update_settings)),
    );
}

/// Admins: the settings, as one flat object.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/settings", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    responses((status = 200, description = "The settings", body = crate::http::openapi::schemas::Settings)),
    security(("admin" = [])),
)]
pub(super) async fn get_settings(
    state: Data<AppState>,
    slug: Path<String>,
    _auth: AdminAuth,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    Ok(HttpResponse::Ok().json(settings_json(tenant.timezone, &tenant.settings)))
}

/// Admins: changes the fields given and answers the whole settings. This process uses
/// the new settings at once; the others within `TENANT_FRESHNESS`.
#[utoipa::path(
    patch, path = "/api/v1/tenants/{slug}/settings", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    request_body(content = crate::http::openapi::schemas::SettingsPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The whole settings after the change", body = crate::http::openapi::schemas::Settings),
        (status = 422, description = "A field is unknown or invalid; the message names it (`invalid_input`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn update_settings(
    state: Data<AppState>,
    slug: Path<String>,
    auth: AdminAuth,
    JsonBody(body): JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let patch = SettingsPatch::from_json(&body).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    let tenant = db::tenants::get_tenant(&mut tx, &slug).await?;
    let mut tenant = db::tenants::lock_tenant(&mut tx, tenant.id).await?;
    let (timezone, settings) = patch.apply(tenant.timezone, &tenant.settings);
    db::tenants::update_settings(&mut tx, tenant.id, timezone, &settings).await?;
    let target = tenant_target(&tenant);
    record(
        &state,
        &mut tx,
        tenant.id,
        Some(&auth.0),
        Action::SettingsUpdated,
        Some(&target),
    )
    .await?;
    tx.commit().await?;
    tenant.timezone = timezone;
    tenant.settings = settings;
    state.tenants.settings_changed(&tenant);
    Ok(HttpResponse::Ok().json(settings_json(tenant.timezone, &tenant.settings)))
}
