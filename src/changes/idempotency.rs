//! `Idempotency-Key` for requests that change tickets.
//!
//! The key is claimed with a transaction-scoped advisory lock, without waiting: a second
//! request with a key still being processed gets 409 `request_in_progress`. Under the lock,
//! a stored answer is replayed (or 422 if the request differs); otherwise the command runs
//! in its batch (`changes::writer`) and its answer is stored in the same transaction as
//! the change, so a crash can never leave a change without its stored answer or a key
//! stuck "in progress". Client errors (4xx) are stored too: the key's first answer is its
//! answer for 24 hours. (A command refuses before it writes anything, so a refusal needs no
//! savepoint.)

use std::collections::HashSet;

use actix_web::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::writer::{BatchOutcome, ChangeResult, TenantRequest};
use super::{ChangeRequest, KeyedRequest, change_status};
use crate::db;
use crate::db::idempotency::{RequestFingerprint, SavedResponse, TenantKey};
use crate::error::{ApiError, error_body};
use crate::ticketing::{self, batch::CommandOutcome};
use crate::views::Audience;

/// SHA-256 of the request as one JSON document: what a stored answer must match (the
/// method, the path, the projection and the body). A JSON body is part of it as a value, so
/// that whitespace and key order do not matter (serde_json's maps serialise their keys
/// sorted); any other body as text.
pub fn fingerprint(
    method: &str,
    path: &str,
    audience: Audience,
    body: &[u8],
) -> RequestFingerprint {
    let request = json!({
        "method": method,
        "path": path,
        "audience": match audience {
            Audience::Public => "public",
            Audience::Operator => "operator",
        },
        "body": serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    });
    RequestFingerprint(Sha256::digest(request.to_string().as_bytes()).into())
}

/// Claims the keys of the requests that have one, settling the result of those whose key
/// is busy (also when the batch uses it twice) or already answered. Keys are per tenant;
/// those of all the batch's tenants are claimed together, in two statements.
pub(super) async fn claim_keys(
    conn: &mut PgConnection,
    requests: &[TenantRequest],
    results: &mut [Option<ChangeResult>],
) -> Result<(), ticketing::Error> {
    let mut keys_seen = HashSet::new();
    let mut keyed: Vec<(usize, &KeyedRequest)> = Vec::new();
    let mut keys: Vec<TenantKey> = Vec::new();
    for (i, TenantRequest { tenant, request }) in requests.iter().enumerate() {
        let Some(key) = &request.key else { continue };
        let tenant_key = TenantKey {
            tenant: tenant.id,
            key: key.key.as_str(),
        };
        if !keys_seen.insert(tenant_key) {
            results[i] = Some(Err(ApiError::RequestInProgress));
            continue;
        }
        keyed.push((i, key));
        keys.push(tenant_key);
    }
    if keys.is_empty() {
        return Ok(());
    }
    let claimed = db::idempotency::try_lock_keys(conn, &keys).await?;
    let mut stored: Vec<Option<SavedResponse>> = keys.iter().map(|_| None).collect();
    for (at, saved) in db::idempotency::find_saved_many(conn, &keys).await? {
        if let Some(slot) = stored.get_mut(at) {
            *slot = Some(saved);
        }
    }
    for (((i, key), claimed), stored) in keyed.into_iter().zip(claimed).zip(stored) {
        results[i] = match (claimed, stored) {
            (false, _) => Some(Err(ApiError::RequestInProgress)),
            (true, None) => None,
            (true, Some(stored)) => Some(if stored.request == key.fingerprint {
                Ok(BatchOutcome::Replayed(stored))
            } else {
                Err(ApiError::IdempotencyKeyReused)
            }),
        };
    }
    Ok(())
}

/// The answer to store for the request's key, given what its command did; `None` for one
/// that cannot be stored.
pub(super) fn answer_to_store(
    request: &ChangeRequest,
    key: &KeyedRequest,
    result: Result<&CommandOutcome, &ApiError>,
) -> Option<SavedResponse> {
    let answer = result.map(|outcome| answer_of(request, outcome));
    stored_answer(key.fingerprint, answer.as_ref().map_err(|e| *e))
}

/// What a command answers over HTTP: a status and an optional JSON body.
struct Answer {
    status: StatusCode,
    body: Option<Value>,
}

/// The answer to a command: the ticket in the caller's projection, or 204 for a call-next
/// that found nobody waiting.
fn answer_of(request: &ChangeRequest, outcome: &CommandOutcome) -> Answer {
    match outcome {
        CommandOutcome::Changed(change) => Answer {
            status: change_status(&request.command),
            body: Some(change.ticket.project(request.audience)),
        },
        CommandOutcome::NothingToCall => Answer {
            status: StatusCode::NO_CONTENT,
            body: None,
        },
        CommandOutcome::DayClosed(closed) => Answer {
            status: StatusCode::OK,
            body: serde_json::to_value(closed.answer()).ok(),
        },
    }
}

/// The answer to store for a key, if it is final (see [`is_final_answer`]).
fn stored_answer(
    request: RequestFingerprint,
    answer: Result<&Answer, &ApiError>,
) -> Option<SavedResponse> {
    let (status, body) = match answer {
        Ok(answer) => (answer.status, answer.body.clone()),
        Err(error) if is_final_answer(error) => {
            let (status, code) = error.parts();
            (status, Some(error_body(code, &error.to_string())))
        }
        Err(_) => return None,
    };
    Some(SavedResponse {
        request,
        status_code: status.as_u16() as i16,
        body,
    })
}

/// Client errors that describe the request itself are the key's answer; errors that say
/// "try again" (overload, unavailability, 5xx) are not stored.
fn is_final_answer(error: &ApiError) -> bool {
    let (status, _) = error.parts();
    status.is_client_error()
        && !matches!(
            error,
            ApiError::RateLimited { .. } | ApiError::RequestInProgress
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(audience: Audience, body: &str) -> RequestFingerprint {
        fingerprint(
            "POST",
            "/api/v1/tenants/demo/tickets",
            audience,
            body.as_bytes(),
        )
    }

    #[test]
    fn equal_json_bodies_have_one_fingerprint() {
        let a = issue(
            Audience::Public,
            r#"{"service_id":"s","priority":"normal"}"#,
        );
        let b = issue(
            Audience::Public,
            "{ \"priority\": \"normal\",\n  \"service_id\": \"s\" }",
        );
        assert_eq!(a, b, "whitespace and key order do not make another request");
    }

    #[test]
    fn method_path_projection_and_body_each_count() {
        let base = issue(Audience::Public, r#"{"service_id":"s"}"#);
        assert_ne!(base, issue(Audience::Operator, r#"{"service_id":"s"}"#));
        assert_ne!(base, issue(Audience::Public, r#"{"service_id":"t"}"#));
        assert_ne!(
            base,
            fingerprint(
                "POST",
                "/api/v1/tenants/other/tickets",
                Audience::Public,
                br#"{"service_id":"s"}"#
            )
        );
        assert_ne!(
            base,
            fingerprint(
                "PATCH",
                "/api/v1/tenants/demo/tickets",
                Audience::Public,
                br#"{"service_id":"s"}"#
            )
        );
        // A body that is not JSON counts as its text.
        assert_eq!(
            issue(Audience::Public, "{oops"),
            issue(Audience::Public, "{oops")
        );
        assert_ne!(
            issue(Audience::Public, "{oops"),
            issue(Audience::Public, "{oops!")
        );
    }

    #[test]
    fn a_large_body_leaves_a_fingerprint_of_32_bytes() {
        let padding = "x".repeat(60_000);
        let body = format!(r#"{{"service_id":"s","padding":"{padding}"}}"#);
        assert_eq!(issue(Audience::Public, &body).0.len(), 32);
    }
}
