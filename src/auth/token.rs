//! Login tokens: HS256 JWTs carrying the user, the tenant and the role. Expiry is checked
//! with no leeway: an expired token is refused at once, from the second its `exp` names
//! (RFC 7519 §4.1.4: it is valid only *before* that time).

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtSecret;
use crate::domain::ids::{TenantId, UserId};
use crate::domain::role::Role;
use crate::error::ApiError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: UserId,
    pub tenant_id: TenantId,
    /// The tenant's slug, compared with the `{slug}` of each request.
    pub tenant: String,
    pub username: String,
    pub role: Role,
    /// The user's token generation when the token was issued: a token of an older
    /// generation than the user's current one is revoked. Tokens issued before accounts
    /// could be revoked carry none, which reads as the first generation.
    #[serde(default, rename = "gen")]
    pub generation: i32,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl TokenKeys {
    pub fn new(secret: &JwtSecret, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // jsonwebtoken accepts a token during the second its `exp` names (it refuses only
        // `exp < now`); `verify_at` checks expiry itself. `exp` must still be present.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose()),
            decoding: DecodingKey::from_secret(secret.expose()),
            validation,
            ttl,
        }
    }

    pub fn issue(
        &self,
        user: UserId,
        username: &str,
        role: Role,
        generation: i32,
        tenant_id: TenantId,
        tenant_slug: &str,
    ) -> Result<IssuedToken, ApiError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.ttl).map_err(ApiError::internal)?;
        let expires_at = now + ttl;
        let claims = Claims {
            sub: user,
            tenant_id,
            tenant: tenant_slug.to_owned(),
            username: username.to_owned(),
            role,
            generation,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(ApiError::internal)?;
        Ok(IssuedToken { token, expires_at })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    /// Verifies the token as of `now` (seconds since the epoch): its signature and claims
    /// first, then that `now` is before its `exp`.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                _ => ApiError::InvalidToken,
            })?;
        if !is_before_expiry(now, claims.exp) {
            return Err(ApiError::TokenExpired);
        }
        Ok(claims)
    }
}

/// RFC 7519 §4.1.4: a token may be accepted only while the current time is before `exp`.
fn is_before_expiry(now: i64, exp: i64) -> bool {
    now < exp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ttl_secs: u64) -> TokenKeys {
        let secret = JwtSecret::parse("k".repeat(32)).unwrap();
        TokenKeys::new(&secret, Duration::from_secs(ttl_secs))
    }

    #[test]
    fn a_token_round_trips_its_claims() {
        let keys = keys(60);
        let (user, tenant) = (UserId::new(), TenantId::new());
        let issued = keys
            .issue(user, "ana", Role::Admin, 3, tenant, "demo")
            .unwrap();
        let claims = keys.verify(&issued.token).unwrap();
        assert_eq!((claims.sub, claims.tenant_id), (user, tenant));
        assert_eq!((claims.tenant.as_str(), claims.role), ("demo", Role::Admin));
        assert_eq!(claims.generation, 3);
        assert_eq!(claims.exp, issued.expires_at.timestamp());
    }

    #[test]
    fn tokens_signed_with_another_secret_or_tampered_are_invalid() {
        let issued = keys(60)
            .issue(
                UserId::new(),
                "ana",
                Role::Operator,
                0,
                TenantId::new(),
                "demo",
            )
            .unwrap();
        let other = TokenKeys::new(
            &JwtSecret::parse("z".repeat(32)).unwrap(),
            Duration::from_secs(60),
        );
        assert!(matches!(
            other.verify(&issued.token),
            Err(ApiError::InvalidToken)
        ));
        assert!(matches!(
            keys(60).verify("not.a.token"),
            Err(ApiError::InvalidToken)
        ));
    }

    fn token_expiring_at(keys: &TokenKeys, exp: i64) -> String {
        let claims = Claims {
            sub: UserId::new(),
            tenant_id: TenantId::new(),
            tenant: "demo".into(),
            username: "ana".into(),
            role: Role::Operator,
            generation: 0,
            iat: exp - 60,
            exp,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap()
    }

    #[test]
    fn a_token_expires_at_the_second_its_exp_names() {
        let keys = keys(60);
        let exp = 1_900_000_000;
        let token = token_expiring_at(&keys, exp);
        assert!(keys.verify_at(&token, exp - 1).is_ok());
        assert!(matches!(
            keys.verify_at(&token, exp),
            Err(ApiError::TokenExpired)
        ));
        assert!(matches!(
            keys.verify_at(&token, exp + 1),
            Err(ApiError::TokenExpired)
        ));
        // A bad signature is invalid whatever its expiry says.
        let other = TokenKeys::new(
            &JwtSecret::parse("z".repeat(32)).unwrap(),
            Duration::from_secs(60),
        );
        assert!(matches!(
            other.verify_at(&token, exp),
            Err(ApiError::InvalidToken)
        ));
    }

    #[test]
    fn a_token_without_exp_is_invalid() {
        let keys = keys(60);
        let claims = serde_json::json!({ "sub": UserId::new(), "tenant_id": TenantId::new(),
            "tenant": "demo", "username": "ana", "role": "operator", "iat": 0 });
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert!(matches!(keys.verify(&token), Err(ApiError::InvalidToken)));
    }

    #[test]
    fn a_token_from_before_generations_is_of_the_first_generation() {
        let keys = keys(60);
        let claims = serde_json::json!({ "sub": UserId::new(), "tenant_id": TenantId::new(),
            "tenant": "demo", "username": "ana", "role": "operator", "iat": 0,
            "exp": Utc::now().timestamp() + 60 });
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(keys.verify(&token).unwrap().generation, 0);
    }

    #[test]
    fn an_expired_token_is_refused_without_leeway() {
        let keys = keys(60);
        let token = token_expiring_at(&keys, Utc::now().timestamp() - 1);
        assert!(matches!(keys.verify(&token), Err(ApiError::TokenExpired)));
    }
}
