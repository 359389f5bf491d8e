//! The audit log (contract §9): `GET …/audit`, and how handlers write an entry.

use actix_web::HttpResponse;
use actix_web::web::{self, Data, Path, Query};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;

use crate::auth::extract::AdminAuth;
use crate::auth::token::Claims;
use crate::db;
use crate::db::counters::Counter;
use crate::db::services::Service;
use crate::db::tenants::Tenant;
use crate::domain::audit::{Action, Actor, Target, TargetKind, parse_limit};
use crate::domain::ids::{TenantId, UserId};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants/{slug}/audit").route(web::get().to(list_audit)));
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    limit: Option<String>,
}

/// Admins: the tenant's newest audit entries, newest first (`?limit=`, 100 by default).
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/audit", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("limit" = Option<u32>, Query, description = "How many entries, newest first (default 100)")),
    responses((status = 200, description = "The newest entries first", body = crate::http::openapi::schemas::AuditLog)),
    security(("admin" = [])),
)]
pub(super) async fn list_audit(
    state: Data<AppState>,
    slug: Path<String>,
    _auth: AdminAuth,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(query.limit.as_deref()).map_err(ApiError::InvalidQuery)?;
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let entries = db::audit::newest(&mut conn, tenant.id, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

/// An admin change and its audit entry in one transaction (a refused change leaves no
/// entry, and a change never lacks one): reads the tenant of `slug`, makes the change,
/// records `action` by `by` on the target the change names, and commits.
pub(super) async fn audited<T>(
    state: &AppState,
    slug: &str,
    by: &Claims,
    action: Action,
    change: impl AsyncFnOnce(&mut PgConnection, &Tenant) -> Result<(T, Target), ApiError>,
) -> Result<T, ApiError> {
    let mut tx = state.db.begin().await?;
    let tenant = db::tenants::get_tenant(&mut tx, slug).await?;
    let (changed, target) = change(&mut tx, &tenant).await?;
    record(state, &mut tx, tenant.id, Some(by), action, Some(&target)).await?;
    tx.commit().await?;
    Ok(changed)
}

/// Writes an entry at the server's now, by the token's user (`None`: by no one), on
/// `conn`: the transaction of the change it records, where there is one.
pub(super) async fn record(
    state: &AppState,
    conn: &mut PgConnection,
    tenant: TenantId,
    by: Option<&Claims>,
    action: Action,
    target: Option<&Target>,
) -> Result<(), ApiError> {
    let actor = by.map(|claims| Actor {
        id: claims.sub,
        username: claims.username.clone(),
    });
    db::audit::record(
        conn,
        tenant,
        state.clock.now(),
        actor.as_ref(),
        action,
        target,
    )
    .await?;
    Ok(())
}

pub(super) fn service_target(service: &Service) -> Target {
    Target {
        kind: TargetKind::Service,
        id: service.id.get(),
        name: service.name.clone(),
    }
}

pub(super) fn counter_target(counter: &Counter) -> Target {
    Target {
        kind: TargetKind::Counter,
        id: counter.id.get(),
        name: counter.name.clone(),
    }
}

pub(super) fn user_target(id: UserId, username: &str) -> Target {
    Target {
        kind: TargetKind::User,
        id: id.get(),
        name: username.to_owned(),
    }
}

pub(super) fn tenant_target(tenant: &Tenant) -> Target {
    Target {
        kind: TargetKind::Tenant,
        id: tenant.id.get(),
        name: tenant.name.clone(),
    }
}
