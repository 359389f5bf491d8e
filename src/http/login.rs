use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use super::rate_limit::{client_key, login_name};
use crate::auth::password::{decoy_hash, verify_password};
use crate::db;
use crate::domain::audit::{Action, Actor, Target, TargetKind};
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/auth/login").route(web::post().to(login)));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct LoginRequest {
    tenant: String,
    username: String,
    password: String,
}

/// Unknown tenant, unknown user and wrong password all get the same 401, after the same
/// amount of hashing work.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    summary = "Log in: a token for one tenant's user",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Logged in", body = crate::http::openapi::schemas::LoginAnswer),
        (status = 401, description = "Unknown tenant, username or password, or a deactivated user (`invalid_credentials`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 429, description = "Too many attempts from this address or for this name (`rate_limited`)", body = crate::http::openapi::schemas::ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(super) async fn login(
    req: HttpRequest,
    state: Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest {
        tenant,
        username,
        password,
    } = body.0;
    // Every attempt counts against its address, before any work. Failures are counted
    // per username and address (refused) and per username (slowed), see LoginFailures.
    let address = client_key(&req, &state.config.trusted_proxies);
    state.limits.login_by_address.check(&address)?;
    let name = login_name(&tenant, &username);
    let failures = &state.limits.login_failures;
    let delay = failures.begin(&name, address)?;
    if !delay.is_zero() {
        state.metrics.login_slowed.inc();
        actix_web::rt::time::sleep(delay).await;
    }
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::find_tenant(&mut conn, &tenant).await?;
    let credentials = match &tenant {
        Some(tenant) => db::users::find_credentials(&mut conn, tenant.id, &username).await?,
        None => None,
    };
    drop(conn);
    let hash = credentials
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    let matches = web::block(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    // The audit log (contract §9) keeps who logged in, and who failed: the user when the
    // username is known (also the target), nobody and nothing when it is not (what was
    // typed is not kept, in case it was a password typed in the wrong box). Failures of an
    // unknown tenant have no tenant to record them in. Attempts refused by the rate limits
    // above are not recorded, which bounds what anonymous callers can add.
    let user = credentials.as_ref().map(|c| &c.user);
    let actor = user.map(|u| Actor {
        id: u.id,
        username: u.username.clone(),
    });
    let target = user.map(|u| Target {
        kind: TargetKind::User,
        id: u.id.get(),
        name: u.username.clone(),
    });
    // A deactivated user gets the same answer as a wrong password (contract §9).
    let admitted = matches && credentials.as_ref().is_some_and(|c| c.active);
    let action = if admitted {
        Action::Login
    } else {
        Action::LoginFailed
    };
    if let Some(tenant) = &tenant {
        let mut tx = state.db.begin().await?;
        let now = state.clock.now();
        db::audit::record(
            &mut tx,
            tenant.id,
            now,
            actor.as_ref(),
            action,
            target.as_ref(),
        )
        .await?;
        if let (Some(user), true) = (user, admitted) {
            db::users::record_login(&mut tx, user.id, now).await?;
        }
        tx.commit().await?;
    }
    let (Some(tenant), Some(credentials), true) = (tenant, credentials, admitted) else {
        failures.failed(name);
        return Err(ApiError::InvalidCredentials);
    };
    failures.succeeded(name, address);
    let generation = credentials.token_generation;
    let user = credentials.user;
    let issued = state.tokens.issue(
        user.id,
        &user.username,
        user.role,
        generation,
        tenant.id,
        &tenant.slug,
    )?;
    Ok(HttpResponse::Ok().json(json!({
        "token": issued.token,
        "expires_at": issued.expires_at,
        "user": {
            "id": user.id,
            "username": user.username,
            "role": user.role,
            "tenant": tenant.slug,
        },
    })))
}
