//! Issue 18: password guessing must not lock the owner of an account out. Failures are
//! refused per username and client address, and slow a username's logins down globally.
//! Also: the login limits count an IPv6 client by its /64.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::security_issuing::post_typed;

fn trust_local_proxy(c: &mut nextup::config::Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    // Slowed logins are counted by a metric; the length of the wait is unit-tested.
    c.login_slowdown_max = Duration::from_millis(100);
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

/// The value of a counter without labels in `GET /metrics`.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    reply
        .raw
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
        .trim()
        .parse()
        .expect("a counter value")
}

#[actix_web::test]
async fn an_attacker_without_the_password_cannot_lock_the_owner_out() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.login_user_rate_per_minute = 5;
    })
    .await;
    app.site("clinic", 1, 1).await;
    app.create_user("clinic", "bruno", "bruno-password", "operator")
        .await;
    // One wrong password per address, from rotating addresses.
    for i in 0..12 {
        login_from(&app, &format!("198.51.100.{i}"), "bruno", "guess")
            .await
            .expect_error(401, "invalid_credentials");
    }
    // The owner, from an address that has not failed, gets in.
    let reply = login_from(&app, "203.0.113.9", "bruno", "bruno-password").await;
    assert_eq!(reply.expect(200)["user"]["username"], "bruno");
}

#[actix_web::test]
async fn repeated_failures_from_one_address_are_refused_for_that_username_only() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.login_user_rate_per_minute = 3;
    })
    .await;
    app.site("clinic", 1, 1).await;
    app.create_user("clinic", "bruno", "bruno-password", "operator")
        .await;
    let guesser = "198.51.100.1";
    for _ in 0..3 {
        login_from(&app, guesser, "bruno", "guess")
            .await
            .expect_error(401, "invalid_credentials");
    }
    // The guesser is refused before its password is looked at, even a right one.
    let refused = login_from(&app, guesser, "bruno", "bruno-password").await;
    let retry_after: u64 = refused
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    refused.expect_error(429, "rate_limited");
    // Another address, and another username from the same address, are not refused.
    login_from(&app, "198.51.100.2", "bruno", "bruno-password")
        .await
        .expect(200);
    login_from(&app, guesser, "olga", "olga-password")
        .await
        .expect(200);
}

#[actix_web::test]
async fn many_failures_for_one_username_slow_its_logins_down() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.login_user_rate_per_minute = 2;
    })
    .await;
    app.site("clinic", 1, 1).await;
    app.create_user("clinic", "bruno", "bruno-password", "operator")
        .await;
    let slowed = "nextup_login_slowed_total";
    for i in 0..2 {
        login_from(&app, &format!("198.51.100.{i}"), "bruno", "guess")
            .await
            .expect_error(401, "invalid_credentials");
    }
    assert_eq!(
        counter(&app, slowed).await,
        0,
        "slowed before the allowance"
    );
    login_from(&app, "198.51.100.2", "bruno", "guess")
        .await
        .expect_error(401, "invalid_credentials");
    assert_eq!(counter(&app, slowed).await, 1);
    // The owner is slowed too (the server cannot tell them apart) but never refused.
    login_from(&app, "203.0.113.9", "bruno", "bruno-password")
        .await
        .expect(200);
    assert_eq!(counter(&app, slowed).await, 2);
    // Other usernames are not slowed.
    login_from(&app, "203.0.113.9", "olga", "olga-password")
        .await
        .expect(200);
    assert_eq!(counter(&app, slowed).await, 2);
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

#[actix_web::test]
async fn the_longest_slow_down_still_answers_within_the_request_deadline() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.login_user_rate_per_minute = 1;
        c.login_slowdown_max = Duration::from_secs(3);
    })
    .await;
    app.site("clinic", 1, 1).await;
    for i in 0..2 {
        login_from(&app, &format!("198.51.100.{i}"), "olga", "guess")
            .await
            .expect_error(401, "invalid_credentials");
    }
    // Held back the longest (two failures, one allowed), and still answered.
    login_from(&app, "203.0.113.9", "olga", "olga-password")
        .await
        .expect(200);
    assert_eq!(counter(&app, "nextup_login_slowed_total").await, 2);
}
