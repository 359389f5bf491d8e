use actix_web::HttpResponse;
use actix_web::web::{self, Data, Path};
use serde::Deserialize;
use serde_json::{Value, json};

use super::JsonBody;
use super::audit::{audited, record, user_target};
use crate::auth::extract::AdminAuth;
use crate::auth::password::hash_password;
use crate::db;
use crate::db::users::{Account, AccountUpdate};
use crate::domain::account::{AccountChange, Refusal};
use crate::domain::audit::Action;
use crate::domain::ids::{NewPassword, UserId, Username};
use crate::domain::role::Role;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tenants/{slug}/users")
            .route(web::get().to(list_users))
            .route(web::post().to(create_user)),
    )
    .service(web::resource("/tenants/{slug}/users/{id}").route(web::patch().to(update_user)));
}

/// A user as admins see them: never the password or its hash.
fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id,
        "username": account.username,
        "role": account.role,
        "active": account.active,
        "last_login_at": account.last_login_at,
    })
}

/// Admins: every user of the tenant, active or not, by username.
#[utoipa::path(
    get, path = "/api/v1/tenants/{slug}/users", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    responses((status = 200, description = "Every user of the tenant", body = crate::http::openapi::schemas::UserList)),
    security(("admin" = [])),
)]
pub(super) async fn list_users(
    state: Data<AppState>,
    slug: Path<String>,
    _: AdminAuth,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let accounts = db::users::list_accounts(&mut conn, tenant.id).await?;
    let users: Vec<Value> = accounts.iter().map(account_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUserRequest {
    role: Option<Role>,
    active: Option<bool>,
    password: Option<String>,
}

/// Admins: change a user's role, access or password. Deactivating a user or changing
/// their role or password refuses every token issued to them before (contract §9); no
/// change may leave the tenant without an active admin (409 `last_admin`).
#[utoipa::path(
    patch, path = "/api/v1/tenants/{slug}/users/{id}", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo"), ("id" = UserId, Path, description = "The user")),
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The user after the change", body = crate::http::openapi::schemas::User),
        (status = 404, description = "Unknown tenant (`tenant_not_found`) or user (`user_not_found`)", body = crate::http::openapi::schemas::ErrorBody),
        (status = 409, description = "It would leave the tenant without an active admin (`last_admin`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn update_user(
    state: Data<AppState>,
    path: Path<(String, UserId)>,
    auth: AdminAuth,
    body: JsonBody<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let UpdateUserRequest {
        role,
        active,
        password,
    } = body.0;
    let change = AccountChange {
        role,
        active,
        password: password.is_some(),
    };
    let password_hash = match password {
        Some(password) => Some(hash(NewPassword::parse(password)?).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let tenant = db::tenants::get_tenant(&mut tx, &slug).await?;
    // Account changes of a tenant take turns, so that two admins demoting each other
    // cannot both see the other one as the admin who remains.
    db::tenants::lock_tenant(&mut tx, tenant.id).await?;
    let before = db::users::lock_account(&mut tx, tenant.id, id).await?;
    if change.is_empty() {
        return Ok(HttpResponse::Ok().json(account_json(&before)));
    }
    let others = db::users::count_other_active_admins(&mut tx, tenant.id, id).await?;
    let decision = change
        .decide(before.standing(), others)
        .map_err(|refusal| match refusal {
            Refusal::LastAdmin => ApiError::Conflict(db::Conflict::LastAdmin),
        })?;
    let update = AccountUpdate {
        standing: decision.after,
        password_hash: password_hash.as_deref(),
        revoke_tokens: decision.revokes_tokens,
    };
    let account = db::users::update_account(&mut tx, id, &update).await?;
    let target = user_target(account.id, &account.username);
    record(
        &state,
        &mut tx,
        tenant.id,
        Some(&auth.0),
        Action::UserUpdated,
        Some(&target),
    )
    .await?;
    tx.commit().await?;
    if decision.revokes_tokens {
        state
            .hubs
            .tokens_revoked(tenant.id, account.id, account.token_generation);
    }
    Ok(HttpResponse::Ok().json(account_json(&account)))
}

/// Hashes a new password off the async workers; no connection is held meanwhile.
pub(super) async fn hash(password: NewPassword) -> Result<String, ApiError> {
    web::block(move || hash_password(password.expose()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::Internal)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct CreateUserRequest {
    username: String,
    password: String,
    role: Role,
}

/// Admins: add an operator or admin. The answer never contains the password or its hash.
#[utoipa::path(
    post, path = "/api/v1/tenants/{slug}/users", tag = "admin",
    params(("slug" = String, Path, description = "The tenant's slug", example = "demo")),
    request_body(content = CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = crate::http::openapi::schemas::User,
            links(
                ("UpdateUser" = (operation_id = "update_user", parameters(("slug" = "$request.path.slug"), ("id" = "$response.body#/id"))))
            )),
        (status = 409, description = "The username is taken (`username_taken`)", body = crate::http::openapi::schemas::ErrorBody),
    ),
    security(("admin" = [])),
)]
pub(super) async fn create_user(
    state: Data<AppState>,
    slug: Path<String>,
    auth: AdminAuth,
    body: JsonBody<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateUserRequest {
        username,
        password,
        role,
    } = body.0;
    let username = Username::parse(&username)?;
    let password = NewPassword::parse(password)?;
    // Hashed before the transaction begins: no connection is held for the hashing.
    let hash = hash(password).await?;
    let (user, tenant_slug) = audited(
        &state,
        &slug,
        &auth.0,
        Action::UserCreated,
        async |tx, tenant| {
            let user = db::users::insert_user(tx, tenant.id, &username, &hash, role).await?;
            let target = user_target(user.id, &user.username);
            Ok(((user, tenant.slug.clone()), target))
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "active": true,
        "last_login_at": null,
        "tenant": tenant_slug,
    })))
}
