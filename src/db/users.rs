use sqlx::PgConnection;

use crate::domain::ids::{TenantId, UserId, Username};
use crate::domain::role::Role;
use crate::error::{ApiError, OnConstraint};

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
}

pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

pub async fn insert_user(
    conn: &mut PgConnection,
    tenant: TenantId,
    username: &Username,
    password_hash: &str,
    role: Role,
) -> Result<User, ApiError> {
    let id = UserId::new();
    sqlx::query!(
        "insert into users (id, tenant_id, username, password_hash, role) values ($1, $2, $3, $4, $5)",
        id.get(),
        tenant.get(),
        username.as_str(),
        password_hash,
        role.as_str()
    )
    .execute(conn)
    .await
    .on_constraint("users_tenant_username_key", ApiError::UsernameTaken)?;
    Ok(User {
        id,
        username: username.as_str().to_owned(),
        role,
    })
}

/// The user a login names. No username holds a control character, so a name with one (a
/// NUL, which PostgreSQL refuses in text) is nobody's, without a query.
pub async fn find_credentials(
    conn: &mut PgConnection,
    tenant: TenantId,
    username: &str,
) -> Result<Option<Credentials>, ApiError> {
    if username.chars().any(char::is_control) {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"select id as "id: UserId", username, role, password_hash from users
           where tenant_id = $1 and username = $2"#,
        tenant.get(),
        username
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let role = r.role.parse().map_err(ApiError::internal)?;
        Ok(Credentials {
            user: User {
                id: r.id,
                username: r.username,
                role,
            },
            password_hash: r.password_hash,
        })
    })
    .transpose()
}
