//! Issue 18: tickets issued from other sites' pages (415 for bodies that are not JSON),
//! and per-address limits counting an IPv6 client by its /64.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;

fn trust_local_proxy(c: &mut nextup::config::Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// A POST with exactly this `Content-Type` (none when `None`) and these other headers.
pub async fn post_typed(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Reply {
    let mut request = awc::Client::new().post(app.url(path));
    if let Some(content_type) = content_type {
        request = request.insert_header(("Content-Type", content_type));
    }
    for (name, value) in headers {
        request = request.insert_header((*name, *value));
    }
    let mut response = request.send_body(body.into()).await.expect("request sent");
    let bytes = response.body().await.expect("body read");
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        raw,
    }
}

fn tickets_path(site: &Site) -> String {
    format!("/api/v1/tenants/{}/tickets", site.slug)
}

#[actix_web::test]
async fn a_cross_site_simple_request_issues_nothing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let json_text = json!({ "service_id": site.services[0] }).to_string();
    // What a page of another site can send without a CORS preflight: a form post or a
    // `no-cors` fetch, with a JSON text as the body. Also no type at all (`curl -d` without
    // a header sends the form type).
    let simple_types = [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=----nextup"),
        None,
    ];
    for content_type in simple_types {
        let reply = post_typed(
            &app,
            &tickets_path(&site),
            content_type,
            &[],
            json_text.clone(),
        )
        .await;
        assert!(
            reply
                .header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{content_type:?}: {:?}",
            reply.headers
        );
        reply.expect_error(415, "unsupported_media_type");
    }
    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], 0, "{queue}");
    assert_eq!(queue["waiting"], json!([]), "{queue}");

    // JSON, with parameters or in another case, is served.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        post_typed(
            &app,
            &tickets_path(&site),
            Some(content_type),
            &[],
            json_text.clone(),
        )
        .await
        .expect(201);
    }
}

#[actix_web::test]
async fn every_json_endpoint_refuses_other_types_and_bodiless_actions_still_work() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 2).await;
    let ticket = app.issue(&site, 0).await;
    let ticket = ticket["id"].as_str().unwrap().to_owned();
    let (service, counter) = (&site.services[0], &site.counters[0]);
    let api = |rest: &str| format!("/api/v1/tenants/clinic{rest}");
    // (path, token, a body that would be accepted as JSON)
    let cases: Vec<(String, Option<&str>, Value)> = vec![
        (
            "/api/v1/auth/login".into(),
            None,
            json!({ "tenant": "clinic", "username": "olga", "password": "olga-password" }),
        ),
        (
            api("/services"),
            Some(&site.admin),
            json!({ "code": "X", "name": "Extra" }),
        ),
        (
            api("/counters"),
            Some(&site.admin),
            json!({ "name": "Desk 9" }),
        ),
        (
            api("/users"),
            Some(&site.admin),
            json!({ "username": "zed", "password": "zed-password", "role": "operator" }),
        ),
        (
            api("/tickets"),
            Some(&site.operator),
            json!({ "service_id": service }),
        ),
        (
            api(&format!("/counters/{counter}/call")),
            Some(&site.operator),
            json!({}),
        ),
        (
            api(&format!("/tickets/{ticket}/call")),
            Some(&site.operator),
            json!({ "counter_id": counter }),
        ),
        (
            api(&format!("/tickets/{ticket}/transfer")),
            Some(&site.operator),
            json!({ "service_id": site.services[1] }),
        ),
        (
            api(&format!("/tickets/{ticket}/cancel")),
            Some(&site.operator),
            json!({}),
        ),
    ];
    let mut failures = Vec::new();
    for (path, token, body) in &cases {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let reply = post_typed(&app, path, Some("text/plain"), &headers, body.to_string()).await;
        if reply.status != 415 || reply.body["error"]["code"] != "unsupported_media_type" {
            failures.push(format!("{path}: {} {}", reply.status, reply.raw));
        }
    }
    let patch = awc::Client::new()
        .patch(app.url(&api(&format!("/services/{service}"))))
        .insert_header(("Authorization", format!("Bearer {}", site.admin)))
        .insert_header(("Content-Type", "text/plain"))
        .send_body(json!({ "name": "Renamed" }).to_string())
        .await
        .expect("request sent");
    if patch.status().as_u16() != 415 {
        failures.push(format!("PATCH a service: {}", patch.status()));
    }
    assert!(
        failures.is_empty(),
        "not refused with 415:\n{}",
        failures.join("\n")
    );

    // Nothing above changed anything.
    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], 1, "{queue}");
    let services = app.get(&api("/services"), None).await.expect(200);
    assert_eq!(
        services["services"].as_array().unwrap().len(),
        2,
        "{services}"
    );
    assert_eq!(services["services"][0]["name"], "Service A", "{services}");

    // Endpoints that need no body work without one and without a type, as clients send
    // them today; an empty body needs no type whatever it says.
    let operator = format!("Bearer {}", site.operator);
    let auth = [("Authorization", operator.as_str())];
    let called = post_typed(
        &app,
        &api(&format!("/counters/{counter}/call")),
        None,
        &auth,
        "",
    )
    .await;
    assert_eq!(called.expect(200)["id"], json!(ticket));
    post_typed(
        &app,
        &api(&format!("/tickets/{ticket}/recall")),
        None,
        &auth,
        "",
    )
    .await
    .expect(200);
    let started = post_typed(
        &app,
        &api(&format!("/tickets/{ticket}/start")),
        Some("text/plain"),
        &auth,
        "",
    )
    .await;
    assert_eq!(started.expect(200)["status"], "serving");
}

#[actix_web::test]
async fn an_ipv6_client_is_limited_by_its_64_whatever_address_it_picks_in_it() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.issue_rate_per_minute = 1;
        c.issue_burst = 2;
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let issue_from = |address: &'static str| {
        let path = tickets_path(&site);
        let body = json!({ "service_id": site.services[0] }).to_string();
        let app = &app;
        async move {
            post_typed(
                app,
                &path,
                Some("application/json"),
                &[("X-Forwarded-For", address)],
                body,
            )
            .await
        }
    };
    issue_from("2001:db8:1:2::1").await.expect(201);
    issue_from("2001:db8:1:2:ffff:ffff:ffff:fffe")
        .await
        .expect(201);
    issue_from("2001:db8:1:2:abcd::7")
        .await
        .expect_error(429, "rate_limited");
    // The next /64 is another client.
    issue_from("2001:db8:1:3::1").await.expect(201);

    // An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 client.
    issue_from("198.51.100.7").await.expect(201);
    issue_from("::ffff:198.51.100.7").await.expect(201);
    issue_from("198.51.100.7")
        .await
        .expect_error(429, "rate_limited");
    // IPv4 addresses are each their own client.
    issue_from("198.51.100.8").await.expect(201);
}

#[actix_web::test]
async fn live_sessions_of_an_ipv6_client_are_capped_per_64() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        c.ws_max_sessions_per_address = 2;
    })
    .await;
    app.site("clinic", 1, 1).await;
    let url = app.url("/ws/clinic/totem").replacen("http", "ws", 1);
    let connect = |address: &'static str| {
        let url = url.clone();
        async move {
            awc::Client::new()
                .ws(url)
                .header("X-Forwarded-For", address)
                .connect()
                .await
        }
    };
    let mut open = Vec::new();
    for address in ["2001:db8:7:7::1", "2001:db8:7:7::2"] {
        let (_, mut framed) = connect(address).await.expect("admitted");
        // The hello proves the session is admitted and counted.
        let hello = framed
            .next()
            .await
            .expect("a frame")
            .expect("a valid frame");
        assert!(matches!(hello, awc::ws::Frame::Text(_)), "{hello:?}");
        open.push(framed);
    }
    match connect("2001:db8:7:7:1234:5678:9abc:def0").await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 429)
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a third session of the same /64 was admitted"),
    }
    let (_, _other_prefix) = connect("2001:db8:7:8::1")
        .await
        .expect("another /64 is admitted");
    drop(open);
}
