//! Issue 18, item 6: the small holes. Each test replays what the probe did.

use actix_web::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const WS_UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// A token signed with the test secret for `slug`, with this `exp`.
fn token_expiring_at(slug: &str, exp: i64) -> String {
    let claims = json!({
        "sub": Uuid::new_v4(),
        "tenant_id": Uuid::new_v4(),
        "tenant": slug,
        "username": "ghost",
        "role": "operator",
        "iat": exp - 100,
        "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[actix_web::test]
async fn a_slug_that_cannot_exist_is_tenant_not_found_everywhere_never_a_500() {
    let app = TestApp::spawn().await;
    let site = app.site("demo", 1, 1).await;
    let ticket = app.issue(&site, 0).await;
    let id = ticket["id"].as_str().unwrap();
    let service = &site.services[0];
    let too_long = "x".repeat(65);
    for slug in ["demo%00", "de%00mo", "demo%01", "Demo", too_long.as_str()] {
        let reads = [
            format!("/api/v1/tenants/{slug}/queue"),
            format!("/api/v1/tenants/{slug}/services"),
            format!("/api/v1/tenants/{slug}/events?since=0"),
            format!("/api/v1/tenants/{slug}/tickets/{id}"),
            format!("/t/{slug}/totem"),
            format!("/t/{slug}/ticket/{id}"),
            format!("/t/{slug}/ticket/{id}/qr.svg"),
        ];
        for path in reads {
            app.get(&path, None)
                .await
                .expect_error(404, "tenant_not_found");
        }
        app.post(
            &format!("/api/v1/tenants/{slug}/tickets"),
            None,
            json!({ "service_id": service }),
        )
        .await
        .expect_error(404, "tenant_not_found");
        app.send(
            Method::GET,
            &format!("/ws/{slug}/totem"),
            None,
            &WS_UPGRADE,
            None,
        )
        .await
        .expect_error(404, "tenant_not_found");
    }
    // Login names the tenant in its body: an impossible one is the usual 401, as for any
    // unknown tenant; so is a NUL in the username.
    for (tenant, username) in [("demo\0", "boss"), ("demo", "bo\0ss")] {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": tenant, "username": username, "password": "boss-password" }),
        )
        .await
        .expect_error(401, "invalid_credentials");
    }
    // The real tenant still answers.
    app.get("/api/v1/tenants/demo/queue", None).await.expect(200);
}

#[actix_web::test]
async fn a_token_is_refused_from_the_second_its_exp_names() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let path = format!("/api/v1/tenants/{}/counters", site.slug);
    // A second later it would be refused by any reading of the RFC; at `exp` itself too.
    let now = chrono::Utc::now().timestamp();
    let at_exp = token_expiring_at("clinic", now);
    app.get(&path, Some(&at_exp))
        .await
        .expect_error(401, "token_expired");
    let later = token_expiring_at("clinic", now + 600);
    app.get(&path, Some(&later)).await.expect(200);
}
