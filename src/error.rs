//! The one place where errors become HTTP responses.
//!
//! Every failure a client can see is an [`ApiError`]; `parts()` gives each variant its
//! status and snake_case code, and `error_response()` writes the contract body
//! `{"error": {"code", "message"}}`. Extractor failures and anything actix produces on its
//! own (unknown routes, oversized bodies) are routed here too, see [`json_error_handlers`].
//! Lower layers have their own error types (`db::Error`, `ticketing::Error`), converted
//! here by `From`.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

use crate::db;
use crate::domain::ids::InvalidName;
use crate::domain::queue_limit::QueueFull;
use crate::domain::stats::RangeError;
use crate::domain::ticket::TransitionError;
use crate::ticketing;

/// Seconds a client should wait before retrying while the database is unreachable.
const DATABASE_RETRY_AFTER_SECS: u64 = 5;
/// Seconds a client refused a live session should wait before trying again.
const SESSION_RETRY_AFTER_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not have the expected fields: {0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("this endpoint is a WebSocket: connect with an Upgrade: websocket request")]
    NotWebSocket,
    #[error("the Idempotency-Key header must be 1 to 255 printable ASCII characters")]
    InvalidIdempotencyKey,
    #[error("send the request body as JSON, with Content-Type: application/json")]
    UnsupportedMediaType,

    #[error("this endpoint needs an operator token: send Authorization: Bearer <token>")]
    MissingToken,
    #[error("the token is not valid; log in again")]
    InvalidToken,
    #[error("the token has expired; log in again")]
    TokenExpired,
    #[error(
        "this token was revoked (the account was deactivated or its role or password changed); log in again"
    )]
    TokenRevoked,
    #[error("unknown tenant, username or password")]
    InvalidCredentials,
    #[error("this is not the tenant's kiosk key; open the kiosk page with its current key")]
    InvalidKioskKey,
    #[error("this token belongs to another tenant")]
    WrongTenant,
    #[error("only an admin may do this")]
    AdminRequired,

    #[error("{0} not found")]
    NotFound(Resource),
    #[error("{0}")]
    InvalidTransition(#[from] TransitionError),
    #[error(transparent)]
    Conflict(#[from] db::Conflict),
    #[error("the service is not active")]
    ServiceInactive,
    #[error("{0}")]
    QueueFull(#[from] QueueFull),
    #[error("the ticket is already in this service")]
    SameService,
    #[error("{0}")]
    Closed(String),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    RequestInProgress,
    #[error(
        "events after {since} are not available (current seq is {current}); load the queue snapshot instead"
    )]
    SinceUnavailable { since: i64, current: i64 },
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many live sessions {0}; close some or retry later")]
    TooManySessions(SessionLimit),
    #[error("the request was not sent in time; send it again")]
    RequestTimeout,

    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Which live-session cap a WebSocket handshake hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLimit {
    PerAddress,
    PerTenant,
}

impl std::fmt::Display for SessionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionLimit::PerAddress => "from this address",
            SessionLimit::PerTenant => "for this tenant",
        })
    }
}

/// What a 404 was about; its code is `<resource>_not_found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Tenant,
    Service,
    Counter,
    Ticket,
    User,
    Route,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Tenant => "tenant",
            Resource::Service => "service",
            Resource::Counter => "counter",
            Resource::Ticket => "ticket",
            Resource::User => "user",
            Resource::Route => "route",
        })
    }
}

impl ApiError {
    /// Status and code of every variant, in one table.
    pub fn parts(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            NotWebSocket => (StatusCode::BAD_REQUEST, "websocket_upgrade_required"),
            MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            TokenRevoked => (StatusCode::UNAUTHORIZED, "token_revoked"),
            InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            InvalidKioskKey => (StatusCode::UNAUTHORIZED, "invalid_kiosk_key"),
            WrongTenant => (StatusCode::FORBIDDEN, "wrong_tenant"),
            AdminRequired => (StatusCode::FORBIDDEN, "admin_required"),
            NotFound(Resource::Tenant) => (StatusCode::NOT_FOUND, "tenant_not_found"),
            NotFound(Resource::Service) => (StatusCode::NOT_FOUND, "service_not_found"),
            NotFound(Resource::Counter) => (StatusCode::NOT_FOUND, "counter_not_found"),
            NotFound(Resource::Ticket) => (StatusCode::NOT_FOUND, "ticket_not_found"),
            NotFound(Resource::User) => (StatusCode::NOT_FOUND, "user_not_found"),
            NotFound(Resource::Route) => (StatusCode::NOT_FOUND, "not_found"),
            InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            Conflict(conflict) => (
                StatusCode::CONFLICT,
                match conflict {
                    db::Conflict::CounterBusy => "counter_busy",
                    db::Conflict::CounterInactive => "counter_inactive",
                    db::Conflict::SlugTaken => "slug_taken",
                    db::Conflict::ServiceCodeTaken => "service_code_taken",
                    db::Conflict::CounterNameTaken => "counter_name_taken",
                    db::Conflict::UsernameTaken => "username_taken",
                    db::Conflict::LastAdmin => "last_admin",
                },
            ),
            ServiceInactive => (StatusCode::UNPROCESSABLE_ENTITY, "service_inactive"),
            QueueFull(_) => (StatusCode::CONFLICT, "queue_full"),
            SameService => (StatusCode::UNPROCESSABLE_ENTITY, "same_service"),
            Closed(_) => (StatusCode::CONFLICT, "closed"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            RequestInProgress => (StatusCode::CONFLICT, "request_in_progress"),
            SinceUnavailable { .. } => (StatusCode::GONE, "since_unavailable"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            TooManySessions(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions"),
            RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<InvalidName> for ApiError {
    fn from(err: InvalidName) -> Self {
        ApiError::Invalid(err.0)
    }
}

impl From<RangeError> for ApiError {
    fn from(err: RangeError) -> Self {
        match err {
            RangeError::Malformed { .. } => ApiError::InvalidQuery(err.to_string()),
            RangeError::Reversed { .. } | RangeError::TooLong { .. } => {
                ApiError::Invalid(err.to_string())
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if db::is_connection_failure(&err) {
            report_database_unavailable(&err);
            ApiError::DatabaseUnavailable
        } else {
            ApiError::Internal(anyhow::Error::new(err))
        }
    }
}

impl From<db::Entity> for Resource {
    fn from(entity: db::Entity) -> Self {
        match entity {
            db::Entity::Tenant => Resource::Tenant,
            db::Entity::Service => Resource::Service,
            db::Entity::Counter => Resource::Counter,
            db::Entity::Ticket => Resource::Ticket,
            db::Entity::User => Resource::User,
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(err: db::Error) -> Self {
        match err {
            db::Error::Database(err) => ApiError::from(err),
            db::Error::NotFound(entity) => ApiError::NotFound(entity.into()),
            db::Error::Conflict(conflict) => ApiError::Conflict(conflict),
            db::Error::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<ticketing::Error> for ApiError {
    fn from(err: ticketing::Error) -> Self {
        match err {
            ticketing::Error::InvalidTransition(err) => ApiError::InvalidTransition(err),
            ticketing::Error::NotFound(entity) => ApiError::NotFound(entity.into()),
            ticketing::Error::ServiceInactive => ApiError::ServiceInactive,
            ticketing::Error::SameService => ApiError::SameService,
            err @ ticketing::Error::Closed { .. } => ApiError::Closed(err.to_string()),
            ticketing::Error::QueueFull(err) => ApiError::QueueFull(err),
            err @ ticketing::Error::NoServicesNamed => ApiError::Invalid(err.to_string()),
            ticketing::Error::Db(err) => ApiError::from(err),
            ticketing::Error::Unexpected(cause) => ApiError::Internal(cause),
        }
    }
}

/// During an outage every request fails the same way: log the first failure, then at most
/// one line per [`OUTAGE_LOG_INTERVAL_SECS`] with how many were not logged.
pub fn report_database_unavailable(err: &dyn std::fmt::Display) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LOGGED_SECS: AtomicU64 = AtomicU64::new(0);
    static UNLOGGED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED_SECS.load(Ordering::Relaxed);
    if now >= last + OUTAGE_LOG_INTERVAL_SECS
        && LAST_LOGGED_SECS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        match UNLOGGED.swap(0, Ordering::Relaxed) {
            0 => log::warn!("database unavailable: {err}"),
            n => log::warn!("database unavailable: {err} ({n} more since the last report)"),
        }
    } else {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
    }
}

const OUTAGE_LOG_INTERVAL_SECS: u64 = 10;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.parts();
        if let ApiError::Internal(cause) = self {
            // Logged once, here, with its cause chain; the client sees a generic message.
            log::error!("internal error: {cause:#}");
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::DatabaseUnavailable => {
                response
                    .insert_header((header::RETRY_AFTER, DATABASE_RETRY_AFTER_SECS.to_string()));
            }
            ApiError::TooManySessions(_) => {
                response.insert_header((header::RETRY_AFTER, SESSION_RETRY_AFTER_SECS.to_string()));
            }
            ApiError::RequestTimeout => {
                // The connection may be mid-body: do not keep it for another request.
                response.force_close();
            }
            ApiError::MissingToken
            | ApiError::InvalidToken
            | ApiError::TokenExpired
            | ApiError::TokenRevoked => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(error_body(code, &self.to_string()))
    }
}

pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({ "error": { "code": code, "message": message } })
}

// ---- extractor failures -------------------------------------------------------------

/// Parses a JSON request body in two steps, so that the error says which is wrong: the
/// syntax (400 `malformed_json`) or the shape (422 `invalid_body`). serde_json alone
/// reports some shape errors (a number where an enum's string belongs) as syntax errors.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    T::deserialize(value).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        ApiError::InvalidPath(format!("a path segment is malformed: {err}")).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::InvalidQuery(format!("the query string is malformed: {err}")).into()
    })
}

pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}

/// Unknown routes are JSON 404s.
pub async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    log::debug!("no route for {} {}", req.method(), req.path());
    Err(ApiError::NotFound(Resource::Route))
}

/// Last resort: any error response that is not already JSON (actix's own 405, an oversized
/// `Bytes` body, …) gets the contract body, with a code derived from its status.
pub fn json_error_handlers<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json || !(res.status().is_client_error() || res.status().is_server_error()) {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            s if s.is_server_error() => "internal_error",
            _ => "bad_request",
        };
        let message = status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_lowercase();
        let (req, res) = res.into_parts();
        let body = error_body(code, &message).to_string();
        let mut res = res.set_body(body);
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let res: ServiceResponse<EitherBody<B, BoxBody>> = ServiceResponse::new(req, res)
            .map_into_boxed_body()
            .map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_are_unavailable_only_without_a_usable_connection() {
        assert!(matches!(
            ApiError::from(sqlx::Error::PoolTimedOut),
            ApiError::DatabaseUnavailable
        ));
        assert!(matches!(
            ApiError::from(db::Error::from(sqlx::Error::PoolTimedOut)),
            ApiError::DatabaseUnavailable
        ));
        assert!(matches!(
            ApiError::from(sqlx::Error::RowNotFound),
            ApiError::Internal(_)
        ));
        assert!(matches!(
            ApiError::from(db::Error::from(sqlx::Error::RowNotFound)),
            ApiError::Internal(_)
        ));
    }
}
