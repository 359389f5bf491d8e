//! REST handlers, one module per resource; each exposes `configure`.

pub mod change_batches;
pub mod connection;
pub mod counters;
pub mod deadline;
pub mod idempotency;
pub mod login;
pub mod ops;
pub mod pages;
pub mod queue;
pub mod rate_limit;
pub mod services;
pub mod tickets;
pub mod users;

use actix_web::dev::Payload;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::parse_json_body;

/// Routes under `/api/v1`.
pub fn configure_api(cfg: &mut web::ServiceConfig) {
    login::configure(cfg);
    services::configure(cfg);
    counters::configure(cfg);
    users::configure(cfg);
    queue::configure(cfg);
    tickets::configure(cfg);
}

/// A JSON request body, with every failure reported as the contract's error body
/// (see [`parse_json_body`]). The size limit is the app's `PayloadConfig`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await?;
            Ok(JsonBody(parse_json_body(&bytes)?))
        })
    }
}
