use sqlx::PgConnection;

use super::{Conflict, Error};
use crate::domain::ids::{TenantId, UserId, Username, fold_username};
use crate::domain::role::Role;

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
) -> Result<User, Error> {
    let id = UserId::new();
    sqlx::query!(
        "insert into users (id, tenant_id, username, username_key, password_hash, role)
         values ($1, $2, $3, $4, $5, $6)",
        id.get(),
        tenant.get(),
        username.as_str(),
        username.key(),
        password_hash,
        role.as_str()
    )
    .execute(conn)
    .await
    .map_err(|err| match &err {
        // The folded key (`Ana` after `ana`) or, for names kept from before keys, the name.
        sqlx::Error::Database(db)
            if matches!(
                db.constraint(),
                Some("users_tenant_username_folded_key" | "users_tenant_username_key")
            ) =>
        {
            Conflict::UsernameTaken.into()
        }
        _ => Error::Database(err),
    })?;
    Ok(User {
        id,
        username: username.as_str().to_owned(),
        role,
    })
}

/// The user a login names: by their exact name first, then by the folded name
/// ([`fold_username`]: `ANA` finds `ana`). The exact name matters only for users whose
/// names collided once folded when keys were introduced (see the migration
/// `usernames_folded`): each keeps logging in by their own name. No username holds a
/// control character, so a name with one (a NUL, which PostgreSQL refuses in text) is
/// nobody's, without a query.
pub async fn find_credentials(
    conn: &mut PgConnection,
    tenant: TenantId,
    username: &str,
) -> Result<Option<Credentials>, Error> {
    if username.chars().any(char::is_control) {
        return Ok(None);
    }
    let row = sqlx::query!(
        r#"select id as "id: UserId", username, role, password_hash from users
           where tenant_id = $1 and (username = $2 or username_key = $3)
           order by username = $2 desc
           limit 1"#,
        tenant.get(),
        username,
        fold_username(username)
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let role = r.role.parse().map_err(Error::unexpected)?;
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
