use sqlx::PgConnection;

use super::Error;
use crate::domain::ids::TenantId;

/// What identifies the request a key was first used with: a SHA-256 digest, so that a
/// saved key never holds the request itself (bodies are up to 64 KiB, from anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFingerprint(pub [u8; 32]);

/// A response saved for an idempotency key: the fingerprint of its request, and the answer
/// a replay sends (a ticket or a short error body).
pub struct SavedResponse {
    pub request: RequestFingerprint,
    pub status_code: i16,
    pub body: Option<serde_json::Value>,
}

/// A key, as keys are per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantKey<'a> {
    pub tenant: TenantId,
    pub key: &'a str,
}

/// Tries to take each key for this transaction without waiting, whatever their tenants:
/// whether each was taken, in order. `false` means another request holds that key right
/// now.
pub async fn try_lock_keys(
    conn: &mut PgConnection,
    keys: &[TenantKey<'_>],
) -> Result<Vec<bool>, Error> {
    let tenants: Vec<uuid::Uuid> = keys.iter().map(|k| k.tenant.get()).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
    let rows = sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock(hashtextextended(k.tenant_id::text || ':' || k.key, 0))
                  as "locked!"
             from unnest($1::uuid[], $2::text[]) with ordinality as k(tenant_id, key, ord)
            order by k.ord"#,
        &tenants,
        &names as &[&str]
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The saved responses of those of the keys used within the last 24 hours, with the index
/// of their key in `keys`. Read after the keys are locked ([`try_lock_keys`]), in a
/// statement of its own: its snapshot then holds the answer of a request that held a key
/// and committed just before.
pub async fn find_saved_many(
    conn: &mut PgConnection,
    keys: &[TenantKey<'_>],
) -> Result<Vec<(usize, SavedResponse)>, Error> {
    let tenants: Vec<uuid::Uuid> = keys.iter().map(|k| k.tenant.get()).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
    let rows = sqlx::query!(
        // One index probe per key, whatever the statistics say: written as a join (or
        // `key = any($2)`), the plan made while the table was new read all the tenant's
        // keys for each batch. `limit 1` keeps the lateral subquery from being flattened
        // into such a join; the key is unique anyway.
        r#"select k.ord as "ord!", i.request_sha256, i.status_code, i.response_body
             from unnest($1::uuid[], $2::text[]) with ordinality as k(tenant_id, key, ord)
             cross join lateral (
                 select request_sha256, status_code, response_body from idempotency_keys
                  where tenant_id = k.tenant_id and key = k.key
                    and created_at > now() - interval '24 hours'
                  limit 1
             ) i"#,
        &tenants,
        &names as &[&str]
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let request = r.request_sha256.try_into().map_err(|_| {
                Error::unexpected(anyhow::anyhow!(
                    "a saved request fingerprint is not 32 bytes"
                ))
            })?;
            let saved = SavedResponse {
                request: RequestFingerprint(request),
                status_code: r.status_code,
                body: r.response_body,
            };
            let at = usize::try_from(r.ord - 1).map_err(Error::unexpected)?;
            Ok((at, saved))
        })
        .collect()
}

/// Saves (or, for an expired key, replaces) the responses given for the keys of any tenants
/// (each tenant's keys distinct).
pub async fn save_responses(
    conn: &mut PgConnection,
    responses: &[(TenantId, &str, SavedResponse)],
) -> Result<(), Error> {
    if responses.is_empty() {
        return Ok(());
    }
    let tenants: Vec<uuid::Uuid> = responses.iter().map(|(t, _, _)| t.get()).collect();
    let keys: Vec<&str> = responses.iter().map(|(_, k, _)| *k).collect();
    let requests: Vec<&[u8]> = responses.iter().map(|(_, _, r)| &r.request.0[..]).collect();
    let statuses: Vec<i16> = responses.iter().map(|(_, _, r)| r.status_code).collect();
    let bodies: Vec<Option<serde_json::Value>> =
        responses.iter().map(|(_, _, r)| r.body.clone()).collect();
    sqlx::query!(
        "insert into idempotency_keys (tenant_id, key, request_sha256, status_code, response_body)
         select r.* from unnest($1::uuid[], $2::text[], $3::bytea[], $4::int2[], $5::jsonb[])
                as r(tenant_id, key, request_sha256, status_code, response_body)
         on conflict (tenant_id, key) do update
         set request_sha256 = excluded.request_sha256, status_code = excluded.status_code,
             response_body = excluded.response_body, created_at = now()",
        &tenants,
        &keys as &[&str],
        &requests as &[&[u8]],
        &statuses,
        &bodies as &[Option<serde_json::Value>]
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `batch` keys older than their 24 hours of replay.
pub async fn prune_expired_keys(conn: &mut PgConnection, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query!(
        "delete from idempotency_keys where ctid = any(array(
             select ctid from idempotency_keys
             where created_at < now() - interval '24 hours' limit $1))",
        batch
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected())
}
