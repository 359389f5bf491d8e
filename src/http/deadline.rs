//! Time bounds on every API request, so that neither a slow client nor a silent database
//! can hold a request open.
//!
//! - The client has `REQUEST_TIMEOUT_SECS` to send the request head (set on the server)
//!   and then as long again to send its body: 408 `request_timeout` after that.
//! - The answer must then be ready within [`HANDLER_DEADLINE`]. Handlers wait only on the
//!   database, so a request over it means a database that stopped answering: a link that
//!   drops packets never errors, and without this bound the request would hang until TCP
//!   gives up, many minutes later. It gets 503 `database_unavailable`, like a refused
//!   connection.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::rt::time::timeout;
use actix_web::web::{Bytes, Data};

use crate::error::{ApiError, report_database_unavailable};
use crate::state::AppState;

/// How long a handler may take once the body is in. Above the pool's acquire timeout, so a
/// refused database still reports through the pool first.
pub const HANDLER_DEADLINE: Duration = Duration::from_secs(5);

pub async fn bounded<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(request_timeout) = req
        .app_data::<Data<AppState>>()
        .map(|state| state.config.request_timeout)
    else {
        return next.call(req).await.map(|r| r.map_into_left_body());
    };
    // Read the whole body here, under its own clock, and hand it on to the handler.
    let body = match timeout(request_timeout, req.extract::<Bytes>()).await {
        Ok(Ok(body)) => body,
        Ok(Err(too_large_or_broken)) => {
            return Ok(req
                .error_response(too_large_or_broken)
                .map_into_right_body());
        }
        Err(_) => {
            return Ok(req
                .error_response(ApiError::RequestTimeout)
                .map_into_right_body());
        }
    };
    req.set_payload(Payload::from(body));

    // No clone of the request may be kept across `next.call` (routing mutates it), so an
    // overrun is returned as an error; actix renders it as the contract's JSON body.
    let method = req.method().clone();
    let path = req.path().to_owned();
    match timeout(HANDLER_DEADLINE, next.call(req)).await {
        Ok(response) => response.map(|r| r.map_into_left_body()),
        Err(_) => {
            report_database_unavailable(&format_args!(
                "{method} {path} got no answer within {HANDLER_DEADLINE:?}"
            ));
            Err(ApiError::DatabaseUnavailable.into())
        }
    }
}
