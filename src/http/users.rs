use actix_web::HttpResponse;
use actix_web::web::{self, Data, Path};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use super::audit::{record, user_target};
use crate::auth::extract::AdminAuth;
use crate::auth::password::hash_password;
use crate::db;
use crate::domain::audit::Action;
use crate::domain::ids::{NewPassword, Username};
use crate::domain::role::Role;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tenants/{slug}/users").route(web::post().to(create_user)));
}

#[derive(Deserialize)]
struct CreateUserRequest {
    username: String,
    password: String,
    role: Role,
}

/// Admins: add an operator or admin. The answer never contains the password or its hash.
async fn create_user(
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
    let hash = web::block(move || hash_password(password.expose()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::Internal)?;
    let mut tx = state.db.begin().await?;
    let tenant = db::tenants::get_tenant(&mut tx, &slug).await?;
    let user = db::users::insert_user(&mut tx, tenant.id, &username, &hash, role).await?;
    let target = user_target(user.id, &user.username);
    record(
        &state,
        &mut tx,
        tenant.id,
        Some(&auth.0),
        Action::UserCreated,
        Some(&target),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(json!({
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "tenant": tenant.slug,
    })))
}
