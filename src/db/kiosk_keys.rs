//! Kiosk keys of tenants (the key itself is made by the database: `new_kiosk_key()`).

use sqlx::PgConnection;

use super::Error;

/// The tenant's kiosk key; `None` when there is no such tenant.
pub async fn kiosk_key(conn: &mut PgConnection, slug: &str) -> Result<Option<String>, Error> {
    let key = sqlx::query_scalar!("select kiosk_key from tenants where slug = $1", slug)
        .fetch_optional(conn)
        .await?;
    Ok(key)
}

/// Gives the tenant a new kiosk key, which replaces the old one at once; `None` when there
/// is no such tenant.
pub async fn rotate_kiosk_key(
    conn: &mut PgConnection,
    slug: &str,
) -> Result<Option<String>, Error> {
    let key = sqlx::query_scalar!(
        "update tenants set kiosk_key = new_kiosk_key() where slug = $1 returning kiosk_key",
        slug
    )
    .fetch_optional(conn)
    .await?;
    Ok(key)
}
