//! Abuse of the public endpoints: floods from many addresses, too many live sessions,
//! addresses behind a reverse proxy, other origins, and clients that send too slowly.

use std::time::{Duration, Instant};

use actix_web::http::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;
use crate::ws::WsClient;

const UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn trust_local_proxy(c: &mut nextup::config::Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// An anonymous issue, as if from `address` behind the trusted local proxy.
async fn issue_from(app: &TestApp, site: &Site, address: &str) -> Reply {
    let body = json!({ "service_id": site.services[0] }).to_string();
    app.send(
        Method::POST,
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        &[("X-Forwarded-For", address)],
        Some(body.into_bytes()),
    )
    .await
}

#[actix_web::test]
async fn a_flood_from_many_addresses_hits_the_tenant_limit_and_spares_other_tenants() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.issue_rate_per_minute = 1;
        c.issue_burst = 2;
        c.issue_tenant_rate_per_minute = 1;
        c.issue_tenant_burst = 4;
    })
    .await;
    let clinic = app.site("clinic", 1, 1).await;
    let office = app.site("office", 1, 1).await;
    for i in 0..4 {
        issue_from(&app, &clinic, &format!("198.51.100.{i}"))
            .await
            .expect(201);
    }
    let limited = issue_from(&app, &clinic, "198.51.100.200").await;
    assert!(limited.header("Retry-After").is_some());
    limited.expect_error(429, "rate_limited");
    // A fresh address at another tenant is served.
    issue_from(&app, &office, "198.51.100.200")
        .await
        .expect(201);
    // Operators at the flooded tenant are not limited.
    app.post(
        "/api/v1/tenants/clinic/tickets",
        Some(&clinic.operator),
        json!({ "service_id": clinic.services[0] }),
    )
    .await
    .expect(201);
}

#[actix_web::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    // Behind the trusted proxy each forwarded address has its own quota of 2.
    let proxied = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.issue_rate_per_minute = 1;
        c.issue_burst = 2;
    })
    .await;
    let site = proxied.site("clinic", 1, 1).await;
    for _ in 0..2 {
        issue_from(&proxied, &site, "203.0.113.7").await.expect(201);
    }
    issue_from(&proxied, &site, "203.0.113.7")
        .await
        .expect_error(429, "rate_limited");
    // A spoofed entry to the left of the real one changes nothing.
    issue_from(&proxied, &site, "192.0.2.1, 203.0.113.7")
        .await
        .expect_error(429, "rate_limited");
    issue_from(&proxied, &site, "203.0.113.8").await.expect(201);

    // Without trusted proxies the header is ignored: every request is the TCP peer's.
    let direct = TestApp::spawn_with(|c| {
        c.issue_rate_per_minute = 1;
        c.issue_burst = 2;
    })
    .await;
    let site = direct.site("clinic", 1, 1).await;
    for (i, expected) in [201, 201, 429].into_iter().enumerate() {
        let reply = issue_from(&direct, &site, &format!("203.0.113.{i}")).await;
        assert_eq!(reply.status, expected, "request {i}: {}", reply.raw);
    }
}

#[actix_web::test]
async fn live_sessions_are_capped_per_address_and_a_closed_one_frees_its_place() {
    let app = TestApp::spawn_with(|c| c.ws_max_sessions_per_address = 2).await;
    let site = app.site("clinic", 1, 1).await;
    let mut first = WsClient::connect(&app, "/ws/clinic/totem").await;
    first.start().await;
    let mut second = WsClient::connect(&app, "/ws/clinic/totem").await;
    second.start().await;

    let refused = app
        .send(Method::GET, "/ws/clinic/totem", None, &UPGRADE, None)
        .await;
    assert_eq!(refused.header("Retry-After"), Some("30"));
    refused.expect_error(429, "too_many_sessions");
    // Operators count too: the cap is on sessions, whoever holds them.
    let operator = format!("/ws/clinic/operator?token={}", site.operator);
    app.send(Method::GET, &operator, None, &UPGRADE, None)
        .await
        .expect_error(429, "too_many_sessions");

    drop(first);
    app.wait_for_sessions("clinic", (1, 0)).await;
    let mut again = WsClient::connect(&app, &operator).await;
    again.start().await;
    app.wait_for_sessions("clinic", (1, 1)).await;
}

#[actix_web::test]
async fn live_sessions_are_capped_per_tenant_across_addresses() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.ws_max_sessions_per_tenant = 2;
    })
    .await;
    app.site("clinic", 1, 1).await;
    app.site("office", 1, 1).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let mut session = WsClient::connect(&app, "/ws/clinic/totem").await;
        session.start().await;
        sessions.push(session);
    }
    let from_elsewhere = [UPGRADE.as_slice(), &[("X-Forwarded-For", "198.51.100.9")]].concat();
    app.send(Method::GET, "/ws/clinic/totem", None, &from_elsewhere, None)
        .await
        .expect_error(429, "too_many_sessions");
    let mut office = WsClient::connect(&app, "/ws/office/totem").await;
    office.start().await;
    assert_eq!(app.session_counts("clinic").await, (2, 0));
}

/// A CORS preflight from `origin` for a POST with a JSON body and a token.
async fn preflight(app: &TestApp, origin: &str) -> Reply {
    app.send(
        Method::OPTIONS,
        "/api/v1/tenants/clinic/tickets",
        None,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        None,
    )
    .await
}

#[actix_web::test]
async fn cors_is_closed_by_default_and_opens_only_to_configured_origins() {
    let closed = TestApp::spawn().await;
    let site = closed.site("clinic", 1, 1).await;
    let reply = preflight(&closed, "https://elsewhere.example").await;
    assert!(
        reply.header("Access-Control-Allow-Origin").is_none(),
        "{:?}",
        reply.headers
    );
    // The pages' own requests carry their origin and are served as always.
    let same_origin = closed
        .send(
            Method::POST,
            "/api/v1/tenants/clinic/tickets",
            None,
            &[("Origin", closed.base.as_str())],
            Some(
                json!({ "service_id": site.services[0] })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(same_origin.status, 201, "{}", same_origin.raw);

    let open = TestApp::spawn_with(|c| {
        c.cors_allowed_origins = vec!["https://kiosk.example".into()];
    })
    .await;
    open.site("clinic", 1, 1).await;
    let allowed = preflight(&open, "https://kiosk.example").await;
    assert_eq!(
        allowed.header("Access-Control-Allow-Origin"),
        Some("https://kiosk.example")
    );
    let methods = allowed
        .header("Access-Control-Allow-Methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight(&open, "https://elsewhere.example").await;
    assert!(other.header("Access-Control-Allow-Origin").is_none());
    let read = open
        .send(
            Method::GET,
            "/api/v1/tenants/clinic/queue",
            None,
            &[("Origin", "https://kiosk.example")],
            None,
        )
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(
        read.header("Access-Control-Allow-Origin"),
        Some("https://kiosk.example")
    );
    let exposed = read
        .header("Access-Control-Expose-Headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("etag"), "{exposed}");
}

/// Writes `request` on a fresh connection, then waits (up to `wait`) for the server to
/// answer or hang up; returns what it sent back and how long that took.
async fn send_partially(app: &TestApp, request: &str, wait: Duration) -> (String, Duration) {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = actix_web::rt::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept a stalled request open for {wait:?}"
    );
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[actix_web::test]
async fn clients_that_send_too_slowly_are_cut_off() {
    let app = TestApp::spawn_with(|c| c.request_timeout = Duration::from_secs(1)).await;
    let site = app.site("clinic", 1, 1).await;

    // Half a request head, then nothing.
    let (_, took) = send_partially(
        &app,
        "GET /api/v1/tenants HTTP/1.1\r\nHost: nextup\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(took >= Duration::from_millis(500), "cut after {took:?}");

    // A whole head announcing a body that never fully arrives.
    let head = format!(
        "POST /api/v1/tenants/clinic/tickets HTTP/1.1\r\nHost: nextup\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"service_id\": \"{}\"",
        site.services[0]
    );
    let (answer, took) = send_partially(&app, &head, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(took >= Duration::from_millis(500), "cut after {took:?}");
    // Nothing was issued by the broken request.
    assert_eq!(app.queue(&site).await["services"][0]["waiting"], 0);
}
