use actix_web::HttpResponse;
use actix_web::web::{self, Data, Path};
use serde::Deserialize;
use serde_json::json;

use super::JsonBody;
use crate::auth::extract::AdminAuth;
use crate::auth::password::hash_password;
use crate::db;
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
    _auth: AdminAuth,
    body: JsonBody<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let CreateUserRequest {
        username,
        password,
        role,
    } = body.0;
    let username = Username::parse(&username)?;
    let password = NewPassword::parse(password)?;
    let mut conn = state.db.acquire().await?;
    let tenant = db::tenants::get_tenant(&mut conn, &slug).await?;
    let hash = web::block(move || hash_password(password.expose()))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::Internal)?;
    let user = db::users::insert_user(&mut conn, tenant.id, &username, &hash, role).await?;
    Ok(HttpResponse::Created().json(json!({
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "tenant": tenant.slug,
    })))
}
