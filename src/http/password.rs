//! `POST /auth/password`: any user changes their own password (contract §9).

use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::JsonBody;
use super::audit::{record, user_target};
use super::rate_limit::client_key;
use super::users::hash;
use crate::auth::extract::OperatorAuth;
use crate::auth::password::verify_password;
use crate::db;
use crate::db::users::AccountUpdate;
use crate::domain::account::AccountChange;
use crate::domain::audit::Action;
use crate::domain::ids::NewPassword;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/password").route(web::post().to(change_password)));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// 204 once changed. Like any password change it revokes every token the user holds,
/// this one included: the client logs in again with the new password. A wrong current
/// password is 401, and attempts count against the caller's address like logins do.
#[utoipa::path(
    post, path = "/api/v1/auth/password", tag = "auth",
    summary = "Change one's own password (revokes every earlier token of the user)",
    request_body(content = ChangePasswordRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Changed; every earlier token of the user is revoked"),
        (status = 401, description = "A wrong current password (`invalid_credentials`), or no valid token (`missing_token`, `invalid_token`, `token_expired`, `token_revoked`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 429, description = "Too many attempts from this address (`rate_limited`)", body = crate::http::openapi::schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("operator" = [])),
)]
pub(super) async fn change_password(
    req: HttpRequest,
    state: Data<AppState>,
    auth: OperatorAuth,
    body: JsonBody<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims = auth.0;
    let ChangePasswordRequest {
        current_password,
        new_password,
    } = body.0;
    let address = client_key(&req, &state.config.trusted_proxies);
    state.limits.login_by_address.check(&address)?;
    let new_password = NewPassword::parse(new_password)?;

    let mut conn = state.db.acquire().await?;
    let current_hash = db::users::password_hash(&mut conn, claims.tenant_id, claims.sub)
        .await?
        .ok_or(ApiError::TokenRevoked)?;
    drop(conn);
    let matches = web::block(move || verify_password(&current_password, &current_hash))
        .await
        .map_err(ApiError::internal)?;
    if !matches {
        return Err(ApiError::InvalidCredentials);
    }
    let new_hash = hash(new_password).await?;

    let mut tx = state.db.begin().await?;
    let before = db::users::lock_account(&mut tx, claims.tenant_id, claims.sub).await?;
    let change = AccountChange {
        password: true,
        ..AccountChange::default()
    };
    // A password change never touches the role or access, so it is always allowed.
    let decision = change
        .decide(before.standing(), 0)
        .map_err(|_| ApiError::internal(anyhow::anyhow!("a password change was refused")))?;
    let update = AccountUpdate {
        standing: decision.after,
        password_hash: Some(&new_hash),
        revoke_tokens: decision.revokes_tokens,
    };
    let account = db::users::update_account(&mut tx, claims.sub, &update).await?;
    let target = user_target(account.id, &account.username);
    record(
        &state,
        &mut tx,
        claims.tenant_id,
        Some(&claims),
        Action::UserUpdated,
        Some(&target),
    )
    .await?;
    tx.commit().await?;
    state
        .hubs
        .tokens_revoked(claims.tenant_id, account.id, account.token_generation);
    Ok(HttpResponse::NoContent().finish())
}
