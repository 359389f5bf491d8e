//! The handlers' way into `changes`: a request that changes a ticket becomes a
//! [`ChangeRequest`], and its [`ChangeOutcome`] becomes the response.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse};

use super::deadline::HANDLER_DEADLINE;
use super::idempotency;
use crate::changes::{ChangeOutcome, ChangeRequest, DEADLINE_MARGIN, KeyedRequest, change_status};
use crate::error::ApiError;
use crate::state::AppState;
use crate::ticketing::batch::Command;
use crate::views::Audience;

/// Runs a ticket command for the tenant `slug` in its next batch and answers the request:
/// the ticket in the caller's projection (its event handed to the hub), 204 for a
/// call-next that found nobody, or the answer stored for the request's `Idempotency-Key`.
pub(super) async fn change(
    state: &AppState,
    req: &HttpRequest,
    slug: &str,
    body: &[u8],
    audience: Audience,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency::idempotency_key(req)?.map(|key| KeyedRequest {
        key,
        fingerprint: idempotency::fingerprint(req, body, audience),
    });
    let tenant = match state.tenants.known(slug) {
        Some(tenant) => tenant,
        None => {
            state
                .tenants
                .read(&mut *state.db.acquire().await?, slug)
                .await?
        }
    };
    let status = change_status(&command);
    let request = ChangeRequest {
        command,
        now: state.clock.now(),
        deadline: Instant::now() + HANDLER_DEADLINE - DEADLINE_MARGIN,
        audience,
        key,
    };
    match state.changes.submit(&tenant, request).await? {
        ChangeOutcome::Changed(ticket) => {
            Ok(HttpResponse::build(status).json(ticket.project(audience)))
        }
        ChangeOutcome::NothingToCall => Ok(HttpResponse::NoContent().finish()),
        ChangeOutcome::DayClosed(answer) => Ok(HttpResponse::Ok().json(answer)),
        ChangeOutcome::Replayed(stored) => idempotency::replay(stored),
    }
}
