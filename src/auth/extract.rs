//! Extractors: `OperatorAuth` (operator or admin), `AdminAuth`, and `MaybeOperator` for
//! public endpoints that give more to operators. Each checks the bearer token, its expiry,
//! the role, and that the token's tenant is the `{slug}` of the path (403 otherwise).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use serde::Deserialize;

use super::token::Claims;
use crate::domain::role::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// A caller with a valid token of the path's tenant (operator or admin).
#[derive(Debug, Clone)]
pub struct OperatorAuth(pub Claims);

/// A caller with a valid admin token of the path's tenant.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub Claims);

/// An anonymous caller, or one with a valid token. A token that is sent must be valid.
#[derive(Debug, Clone)]
pub struct MaybeOperator(pub Option<Claims>);

/// The token of an `Authorization: Bearer …` header: `None` without the header, an error
/// if the header is not a bearer token.
pub fn bearer_token(req: &HttpRequest) -> Option<Result<&str, ApiError>> {
    let value = req.headers().get(header::AUTHORIZATION)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    Some(token.ok_or(ApiError::InvalidToken))
}

fn verify_for_path(req: &HttpRequest, token: &str) -> Result<Claims, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AppState is not registered")))?;
    match req.match_info().get("slug") {
        Some(slug) => verify_for_slug(state, token, slug),
        None => state.tokens.verify(token),
    }
}

/// Verifies a token for the tenant `slug`: 401 if invalid or expired, 403 if it belongs to
/// another tenant.
pub fn verify_for_slug(state: &AppState, token: &str, slug: &str) -> Result<Claims, ApiError> {
    let claims = state.tokens.verify(token)?;
    if claims.tenant != slug {
        return Err(ApiError::WrongTenant);
    }
    Ok(claims)
}

fn authenticate(req: &HttpRequest) -> Result<Claims, ApiError> {
    let token = bearer_token(req).ok_or(ApiError::MissingToken)??;
    verify_for_path(req, token)
}

impl FromRequest for OperatorAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Both roles may act as operators.
        ready(authenticate(req).map(OperatorAuth))
    }
}

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|claims| match claims.role {
            Role::Admin => Ok(AdminAuth(claims)),
            Role::Operator => Err(ApiError::AdminRequired),
        }))
    }
}

impl FromRequest for MaybeOperator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match bearer_token(req) {
            None => Ok(MaybeOperator(None)),
            Some(token) => token
                .and_then(|token| verify_for_path(req, token))
                .map(|claims| MaybeOperator(Some(claims))),
        })
    }
}

/// The query of a listing that admins may widen (contract §9): `?all=true` also lists the
/// inactive entries.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub all: bool,
}

/// Whether this listing is to include the inactive entries: `?all=true` from an admin of
/// the path's tenant. From anyone else `all` is ignored, so the token is only looked at
/// when `all` is asked for (a public listing without it stays public); a token that is
/// sent must then be valid, as for [`MaybeOperator`].
pub fn admin_asks_for_all(req: &HttpRequest, query: &ListQuery) -> Result<bool, ApiError> {
    if !query.all {
        return Ok(false);
    }
    let claims = match bearer_token(req) {
        None => return Ok(false),
        Some(token) => verify_for_path(req, token?)?,
    };
    Ok(claims.role == Role::Admin)
}
