//! Extractors: `OperatorAuth` (operator or admin), `AdminAuth`, and `MaybeOperator` for
//! public endpoints that give more to operators. Each checks the bearer token, its expiry,
//! that it is not revoked, the role, and that the token's tenant is the `{slug}` of the
//! path (403 otherwise).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::TryFutureExt;
use futures_util::future::LocalBoxFuture;
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

/// Verifies a token for the path's tenant (any tenant on a path without `{slug}`).
async fn verify_for_path(req: &HttpRequest, token: &str) -> Result<Claims, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AppState is not registered")))?;
    match req.match_info().get("slug") {
        Some(slug) => verify_for_slug(state, token, slug).await,
        None => verify(state, token).await,
    }
}

/// Verifies a token for the tenant `slug`: 401 if invalid, expired or revoked, 403 if it
/// belongs to another tenant.
pub async fn verify_for_slug(
    state: &AppState,
    token: &str,
    slug: &str,
) -> Result<Claims, ApiError> {
    let claims = state.tokens.verify(token)?;
    if claims.tenant != slug {
        return Err(ApiError::WrongTenant);
    }
    state.token_generations.check(&state.db, &claims).await?;
    Ok(claims)
}

/// Verifies a token of any tenant: 401 if invalid, expired or revoked.
async fn verify(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    let claims = state.tokens.verify(token)?;
    state.token_generations.check(&state.db, &claims).await?;
    Ok(claims)
}

/// The claims of the request's bearer token (401 without one).
async fn authenticate(req: HttpRequest) -> Result<Claims, ApiError> {
    let token = bearer_token(&req).ok_or(ApiError::MissingToken)??;
    verify_for_path(&req, token).await
}

impl FromRequest for OperatorAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Both roles may act as operators.
        Box::pin(authenticate(req.clone()).map_ok(OperatorAuth))
    }
}

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()).and_then(|claims| async move {
            match claims.role {
                Role::Admin => Ok(AdminAuth(claims)),
                Role::Operator => Err(ApiError::AdminRequired),
            }
        }))
    }
}

impl FromRequest for MaybeOperator {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match bearer_token(&req) {
                None => Ok(MaybeOperator(None)),
                Some(token) => Ok(MaybeOperator(Some(verify_for_path(&req, token?).await?))),
            }
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
pub async fn admin_asks_for_all(req: &HttpRequest, query: &ListQuery) -> Result<bool, ApiError> {
    if !query.all {
        return Ok(false);
    }
    let claims = match bearer_token(req) {
        None => return Ok(false),
        Some(token) => verify_for_path(req, token?).await?,
    };
    Ok(claims.role == Role::Admin)
}
