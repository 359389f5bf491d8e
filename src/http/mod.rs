//! REST handlers, one module per resource; each exposes `configure`.

pub mod access_log;
pub mod assets;
pub mod audit;
pub mod change;
pub mod connection;
pub mod counters;
pub mod day;
pub mod deadline;
pub mod idempotency;
pub mod login;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod password;
pub mod queue;
pub mod rate_limit;
pub mod services;
pub mod settings;
pub mod stats;
pub mod tickets;
pub mod users;

use actix_web::dev::Payload;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpMessage, HttpRequest, mime};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, parse_json_body};

/// Routes under `/api/v1`.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    login::configure(cfg);
    password::configure(cfg);
    services::configure(cfg);
    settings::configure(cfg);
    audit::configure(cfg);
    stats::configure(cfg);
    counters::configure(cfg);
    day::configure(cfg);
    users::configure(cfg);
    queue::configure(cfg);
    tickets::configure(cfg);
    openapi::configure(cfg);
}

/// A JSON request body, with every failure reported as the contract's error body
/// (see [`parse_json_body`]). The size limit is the app's `PayloadConfig`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = JsonBytes::from_request(req, payload);
        Box::pin(async move {
            let JsonBytes(bytes) = bytes.await?;
            Ok(JsonBody(parse_json_body(&bytes)?))
        })
    }
}

/// The raw body of a JSON endpoint, for handlers that parse it themselves (an optional
/// body, or the exact bytes for idempotency). Every JSON endpoint reads its body through
/// this extractor, so the Content-Type rule is checked in one place: a body must be sent as
/// `application/json` (415 otherwise), so that a page of another site cannot send one
/// without the browser asking us first (a CORS preflight). An empty body needs no type:
/// the action endpoints take none, and a body-less POST carries nothing to judge.
pub struct JsonBytes(pub Bytes);

impl FromRequest for JsonBytes {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared_json = is_json_content_type(req);
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await?;
            if !bytes.is_empty() && !declared_json {
                return Err(ApiError::UnsupportedMediaType.into());
            }
            Ok(JsonBytes(bytes))
        })
    }
}

/// Whether the request says its body is `application/json` (parameters such as
/// `charset` allowed). `+json` types are not JSON here: the contract names one type.
fn is_json_content_type(req: &HttpRequest) -> bool {
    matches!(
        req.mime_type(),
        Ok(Some(m)) if m.type_() == mime::APPLICATION
            && m.subtype() == mime::JSON
            && m.suffix().is_none()
    )
}
