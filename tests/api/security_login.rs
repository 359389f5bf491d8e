//! Issue 18: login limits, and the IPv6 clients they count.

use serde_json::json;

use crate::helpers::*;
use crate::security_issuing::post_typed;

fn trust_local_proxy(c: &mut nextup::config::Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// A login attempt as if from `address` behind the trusted local proxy.
async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> Reply {
    let body = json!({ "tenant": "clinic", "username": username, "password": password });
    post_typed(
        app,
        "/api/v1/auth/login",
        Some("application/json"),
        &[("X-Forwarded-For", address)],
        body.to_string(),
    )
    .await
}

#[actix_web::test]
async fn login_attempts_of_an_ipv6_client_are_counted_per_64() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.login_rate_per_minute = 2;
    })
    .await;
    app.site("clinic", 1, 1).await;
    for address in ["2001:db8:5:5::1", "2001:db8:5:5::2"] {
        login_from(&app, address, "olga", "olga-password")
            .await
            .expect(200);
    }
    login_from(&app, "2001:db8:5:5:ffff::3", "olga", "olga-password")
        .await
        .expect_error(429, "rate_limited");
    login_from(&app, "2001:db8:5:6::1", "olga", "olga-password")
        .await
        .expect(200);
}
