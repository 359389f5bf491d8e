use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn login_returns_a_token_and_the_user() {
    let app = TestApp::spawn().await;
    app.site("clinic", 1, 1).await;
    let body = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": "clinic", "username": "olga", "password": "olga-password" }),
        )
        .await
        .expect(200);
    assert!(
        body["token"].as_str().unwrap().split('.').count() == 3,
        "a JWT"
    );
    assert!(body["expires_at"].is_string());
    assert_eq!(body["user"]["username"], "olga");
    assert_eq!(body["user"]["role"], "operator");
    assert_eq!(body["user"]["tenant"], "clinic");
}

#[actix_web::test]
async fn wrong_password_unknown_user_and_unknown_tenant_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.site("clinic", 1, 1).await;
    let cases = [
        (
            "wrong password",
            json!({ "tenant": "clinic", "username": "olga", "password": "nope-nope" }),
        ),
        (
            "unknown user",
            json!({ "tenant": "clinic", "username": "nobody", "password": "olga-password" }),
        ),
        (
            "unknown tenant",
            json!({ "tenant": "elsewhere", "username": "olga", "password": "olga-password" }),
        ),
    ];
    let mut bodies = Vec::new();
    for (case, body) in cases {
        let reply = app.post("/api/v1/auth/login", None, body).await;
        assert_eq!(reply.status, 401, "{case}");
        bodies.push(reply.body);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0]["error"]["code"], "invalid_credentials");
}

fn forged(secret: &str, exp_offset_secs: i64, tenant: &str, role: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "sub": uuid::Uuid::new_v4(),
        "tenant_id": uuid::Uuid::new_v4(),
        "tenant": tenant,
        "username": "ghost",
        "role": role,
        "iat": now - 100,
        "exp": now + exp_offset_secs,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[actix_web::test]
async fn operator_endpoints_refuse_missing_bad_expired_and_foreign_tokens() {
    let app = TestApp::spawn().await;
    let clinic = app.site("clinic", 1, 1).await;
    let other = app.site("other", 1, 1).await;
    let list = format!("/api/v1/tenants/{}/tickets", clinic.slug);
    let cases: [(&str, Option<String>, u16, &str); 5] = [
        ("no token", None, 401, "missing_token"),
        ("garbage", Some("not-a-jwt".into()), 401, "invalid_token"),
        (
            "wrong signature",
            Some(forged(&"x".repeat(40), 3600, "clinic", "admin")),
            401,
            "invalid_token",
        ),
        (
            "expired one second ago",
            Some(forged(TEST_JWT_SECRET, -1, "clinic", "operator")),
            401,
            "token_expired",
        ),
        (
            "token of another tenant",
            Some(other.operator.clone()),
            403,
            "wrong_tenant",
        ),
    ];
    for (case, token, status, code) in cases {
        let reply = app.get(&list, token.as_deref()).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.raw);
        assert_eq!(reply.body["error"]["code"], code, "{case}");
    }
    // A foreign token cannot act on this tenant's tickets either.
    let ticket = app.issue(&clinic, 0).await;
    let path = format!(
        "/api/v1/tenants/clinic/tickets/{}/cancel",
        ticket["id"].as_str().unwrap()
    );
    app.post(&path, Some(&other.admin), json!({}))
        .await
        .expect_error(403, "wrong_tenant");
    // The right one works.
    app.get(&list, Some(&clinic.operator)).await.expect(200);
}

#[actix_web::test]
async fn operators_cannot_use_admin_endpoints() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let attempts = [
        ("services", json!({ "code": "Z", "name": "Zeta" })),
        ("counters", json!({ "name": "Desk 7" })),
        (
            "users",
            json!({ "username": "eve", "password": "eve-password", "role": "admin" }),
        ),
    ];
    for (resource, body) in attempts {
        let path = format!("/api/v1/tenants/{}/{resource}", site.slug);
        app.post(&path, Some(&site.operator), body.clone())
            .await
            .expect_error(403, "admin_required");
        app.post(&path, None, body)
            .await
            .expect_error(401, "missing_token");
    }
}

#[actix_web::test]
async fn the_public_issue_endpoint_is_rate_limited_per_address_but_not_for_operators() {
    let app = TestApp::spawn_with(|c| {
        c.issue_rate_per_minute = 1;
        c.issue_burst = 3;
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    for _ in 0..3 {
        app.issue(&site, 0).await;
    }
    let path = format!("/api/v1/tenants/{}/tickets", site.slug);
    let limited = app
        .post(&path, None, json!({ "service_id": site.services[0] }))
        .await;
    let retry_after: u64 = limited
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    limited.expect_error(429, "rate_limited");
    // An operator issuing at the desk is not limited.
    for _ in 0..5 {
        app.post(
            &path,
            Some(&site.operator),
            json!({ "service_id": site.services[0] }),
        )
        .await
        .expect(201);
    }
}

#[actix_web::test]
async fn password_guessing_is_refused_per_username_and_address_and_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.login_user_rate_per_minute = 3;
        c.login_rate_per_minute = 7;
    })
    .await;
    app.site("clinic", 1, 1).await; // two logins (boss, olga)
    let attempt = |username: &str, password: &str| {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": "clinic", "username": username, "password": password }),
        )
    };
    // olga: three wrong guesses from this address, then it is refused for olga, even the
    // right password (security_login.rs: the owner from elsewhere still gets in).
    for guess in ["guess-1", "guess-2", "guess-3"] {
        attempt("olga", guess)
            .await
            .expect_error(401, "invalid_credentials");
    }
    let limited = attempt("olga", "olga-password").await;
    let retry_after: u64 = limited
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    limited.expect_error(429, "rate_limited");
    // Another account is not affected by olga's failures, until the address's quota of
    // attempts is spent.
    app.login("clinic", "boss", "boss-password").await;
    attempt("nobody", "x-x-x-x-x")
        .await
        .expect_error(429, "rate_limited");
}
