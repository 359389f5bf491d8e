use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Conflict, Entity, Error};
use crate::domain::account::Standing;
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
    /// A deactivated user's password is still checked (the same work as for anyone), but
    /// they are not let in.
    pub active: bool,
    /// Written into the token (see [`Account::token_generation`]).
    pub token_generation: i32,
}

/// A user as admins see and change them (contract §9).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Tokens carry the generation they were issued under; a token of an older one is
    /// refused (401 token_revoked).
    pub token_generation: i32,
}

impl Account {
    pub fn standing(&self) -> Standing {
        Standing {
            role: self.role,
            active: self.active,
        }
    }
}

struct AccountRow {
    id: UserId,
    username: String,
    role: String,
    active: bool,
    last_login_at: Option<DateTime<Utc>>,
    token_generation: i32,
}

impl TryFrom<AccountRow> for Account {
    type Error = Error;

    fn try_from(row: AccountRow) -> Result<Self, Error> {
        Ok(Account {
            id: row.id,
            username: row.username,
            role: row.role.parse().map_err(Error::unexpected)?,
            active: row.active,
            last_login_at: row.last_login_at,
            token_generation: row.token_generation,
        })
    }
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
        r#"select id as "id: UserId", username, role, password_hash, active, token_generation
           from users
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
            active: r.active,
            token_generation: r.token_generation,
        })
    })
    .transpose()
}

/// The tenant's users, by username.
pub async fn list_accounts(
    conn: &mut PgConnection,
    tenant: TenantId,
) -> Result<Vec<Account>, Error> {
    sqlx::query_as!(
        AccountRow,
        r#"select id as "id: UserId", username, role, active, last_login_at, token_generation
             from users where tenant_id = $1
            order by username_key, username"#,
        tenant.get()
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(Account::try_from)
    .collect()
}

/// The user, locked until the transaction ends.
pub async fn lock_account(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
) -> Result<Account, Error> {
    sqlx::query_as!(
        AccountRow,
        r#"select id as "id: UserId", username, role, active, last_login_at, token_generation
             from users where tenant_id = $1 and id = $2
              for update"#,
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound(Entity::User))?
    .try_into()
}

/// How many active admins the tenant has besides `except`.
pub async fn count_other_active_admins(
    conn: &mut PgConnection,
    tenant: TenantId,
    except: UserId,
) -> Result<u64, Error> {
    let count = sqlx::query_scalar!(
        r#"select count(*) as "count!" from users
            where tenant_id = $1 and id <> $2 and role = 'admin' and active"#,
        tenant.get(),
        except.get()
    )
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// What [`update_account`] writes: the new standing, a new password hash if any, and
/// whether the user's earlier tokens are refused from now on.
pub struct AccountUpdate<'a> {
    pub standing: Standing,
    pub password_hash: Option<&'a str>,
    pub revoke_tokens: bool,
}

/// Writes the change and returns the account as changed. Revoking moves the user to the
/// next token generation, stamped with the database's clock (the clock a process that
/// missed the notification compares with, see [`revoked_since`]).
pub async fn update_account(
    conn: &mut PgConnection,
    id: UserId,
    update: &AccountUpdate<'_>,
) -> Result<Account, Error> {
    sqlx::query_as!(
        AccountRow,
        r#"update users
              set role = $2, active = $3, password_hash = coalesce($4, password_hash),
                  token_generation = token_generation + case when $5 then 1 else 0 end,
                  tokens_revoked_at = case when $5 then clock_timestamp() else tokens_revoked_at end
            where id = $1
        returning id as "id: UserId", username, role, active, last_login_at, token_generation"#,
        id.get(),
        update.standing.role.as_str(),
        update.standing.active,
        update.password_hash,
        update.revoke_tokens
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

/// The password hash of a user, for checking their current password.
pub async fn password_hash(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<String>, Error> {
    Ok(sqlx::query_scalar!(
        "select password_hash from users where tenant_id = $1 and id = $2 and active",
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?)
}

pub async fn record_login(
    conn: &mut PgConnection,
    id: UserId,
    at: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query!(
        "update users set last_login_at = $2 where id = $1",
        id.get(),
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The user's current token generation; `None` if the user is no more (every token of
/// theirs is then refused).
pub async fn token_generation(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<i32>, Error> {
    Ok(sqlx::query_scalar!(
        "select token_generation from users where tenant_id = $1 and id = $2",
        tenant.get(),
        id.get()
    )
    .fetch_optional(conn)
    .await?)
}

/// A user whose tokens were revoked: their tenant, id and current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub tenant: TenantId,
    pub user: UserId,
    pub generation: i32,
}

/// Users whose tokens were revoked within the last `secs` seconds by the database's
/// clock: what a process that could not hear the notifications for that long missed.
pub async fn revoked_since<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    secs: f64,
) -> Result<Vec<Revoked>, Error> {
    let rows = sqlx::query!(
        r#"select tenant_id as "tenant: TenantId", id as "user: UserId", token_generation
             from users
            where tokens_revoked_at > clock_timestamp() - make_interval(secs => $1)"#,
        secs
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Revoked {
            tenant: r.tenant,
            user: r.user,
            generation: r.token_generation,
        })
        .collect())
}
