//! Operations endpoints: liveness, readiness and metrics.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::web::{self, Data};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// 200 while the process runs.
#[utoipa::path(
    get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The process runs", body = crate::http::openapi::schemas::Health)),
)]
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)),
)]
pub(super) async fn metrics(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(&state.db))
}

/// 200 when the database answers, 503 otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "The database answers", body = crate::http::openapi::schemas::Health),
        (status = 503, description = "The database does not answer (`database_unavailable`)", body = crate::http::openapi::schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(super) async fn readyz(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let ping = sqlx::query("select 1").execute(&state.db);
    match actix_web::rt::time::timeout(READY_CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Ok(Err(e)) => {
            log::warn!("readiness check failed: {e}");
            Err(ApiError::DatabaseUnavailable)
        }
        Err(_) => Err(ApiError::DatabaseUnavailable),
    }
}
