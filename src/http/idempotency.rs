//! The HTTP side of `Idempotency-Key` (the rules live in `changes::idempotency`): reading
//! the header, fingerprinting the request, and sending a stored answer again.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::changes::idempotency;
use crate::db::idempotency::{RequestFingerprint, SavedResponse};
use crate::error::ApiError;
use crate::views::Audience;

pub const HEADER: &str = "Idempotency-Key";

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

/// What a stored answer must match: the method, the path, the projection and the body.
pub(super) fn fingerprint(
    req: &HttpRequest,
    body: &[u8],
    audience: Audience,
) -> RequestFingerprint {
    idempotency::fingerprint(req.method().as_str(), req.path(), audience, body)
}

/// The stored answer of a key, sent again.
pub(super) fn replay(stored: SavedResponse) -> Result<HttpResponse, ApiError> {
    let status = u16::try_from(stored.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("bad saved status")))?;
    let mut response = HttpResponse::build(status);
    response.insert_header(("Idempotent-Replayed", "true"));
    Ok(match stored.body {
        Some(body) => response.json(body),
        None => response.finish(),
    })
}
