//! `Idempotency-Key` for POSTs that change tickets.
//!
//! The key is taken with a transaction-scoped advisory lock, without waiting: a second
//! request with a key still being processed gets 409 `request_in_progress`. Under the lock,
//! a saved response is replayed (or 422 if the request differs); otherwise the command runs
//! in its batch (`http::change_batches`) and its response is saved in the same transaction
//! as the change, so a crash can never leave a change without its saved response or a key
//! stuck "in progress". Client errors (4xx) are saved too: the key's first answer is its
//! answer for 24 hours. (A command refuses before it writes anything, so a refusal needs no
//! savepoint.)

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use crate::db::events::EventRow;
use sha2::{Digest, Sha256};

use crate::db::idempotency::{RequestFingerprint, SavedResponse};
use crate::db::tenants::Tenant;
use crate::error::{ApiError, error_body};
use crate::state::AppState;
use crate::ticketing::commands::Change;
use crate::views::Audience;

pub const HEADER: &str = "Idempotency-Key";

/// What a command answered: a status, an optional JSON body, and the event its change
/// appended (published to the hub once the transaction has committed).
pub struct Outcome {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub event: Option<EventRow>,
}

impl Outcome {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            event: None,
        }
    }

    /// The answer to a change: the ticket in the caller's projection, and its event.
    pub fn change(status: StatusCode, change: Change, audience: Audience) -> Self {
        Self {
            status,
            body: Some(change.ticket.project(audience)),
            event: Some(change.event),
        }
    }

    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            event: None,
        }
    }

    /// After commit: hand the event to the hub without waiting for the fan-out.
    pub(super) fn publish(&mut self, state: &AppState, tenant: &Tenant) {
        if let Some(event) = self.event.take() {
            state.hubs.publish(tenant.id, Arc::new(event));
        }
    }

    pub(super) fn into_response(self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if replayed {
            response.insert_header(("Idempotent-Replayed", "true"));
        }
        match self.body {
            Some(body) => response.json(body),
            None => response.finish(),
        }
    }
}

pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey)?;
    let printable = key.bytes().all(|b| (0x20..=0x7e).contains(&b));
    if key.is_empty() || key.len() > 255 || !printable {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

/// What a saved answer must match: the method, the path, the projection and the body.
pub(super) fn fingerprint(
    req: &HttpRequest,
    body: &[u8],
    audience: Audience,
) -> RequestFingerprint {
    fingerprint_of(req.method().as_str(), req.path(), audience, body)
}

/// SHA-256 of the request as one JSON document. A JSON body is part of it as a value, so
/// that whitespace and key order do not matter (serde_json's maps serialise their keys
/// sorted); any other body as text.
fn fingerprint_of(method: &str, path: &str, audience: Audience, body: &[u8]) -> RequestFingerprint {
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

/// The saved answer of a key, sent again.
pub(super) fn replay(saved: SavedResponse) -> Result<HttpResponse, ApiError> {
    let status = u16::try_from(saved.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("bad saved status")))?;
    Ok(Outcome {
        status,
        body: saved.body,
        event: None,
    }
    .into_response(true))
}

/// The answer to save for a key, if it is final (see [`is_final_answer`]).
pub(super) fn answer_to_save(
    request: RequestFingerprint,
    outcome: Result<&Outcome, &ApiError>,
) -> Option<SavedResponse> {
    let (status, body) = match outcome {
        Ok(outcome) => (outcome.status, outcome.body.clone()),
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
/// "try again" (overload, unavailability, 5xx) are not saved.
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
        fingerprint_of(
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
            fingerprint_of(
                "POST",
                "/api/v1/tenants/other/tickets",
                Audience::Public,
                br#"{"service_id":"s"}"#
            )
        );
        assert_ne!(
            base,
            fingerprint_of(
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
