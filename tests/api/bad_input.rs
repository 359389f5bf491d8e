//! Contract §4: every bad input gets the JSON error body `{"error": {"code", "message"}}`
//! with a fitting status, never a 500 and never an HTML or plain-text page.

use actix_web::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

/// One bad request and the error it must get.
struct Case {
    /// What the case is about, shown when it fails.
    what: &'static str,
    method: Method,
    path: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    /// Raw body (sent as `application/json`), or none.
    body: Option<Vec<u8>>,
    status: u16,
    /// The expected code; `None` accepts any non-empty code.
    code: Option<&'static str>,
}

impl Case {
    fn new(what: &'static str, method: Method, path: impl Into<String>) -> Self {
        Case {
            what,
            method,
            path: path.into(),
            token: None,
            headers: Vec::new(),
            body: None,
            status: 0,
            code: None,
        }
    }

    fn get(what: &'static str, path: impl Into<String>) -> Self {
        Self::new(what, Method::GET, path)
    }

    fn post(what: &'static str, path: impl Into<String>) -> Self {
        Self::new(what, Method::POST, path)
    }

    fn patch(what: &'static str, path: impl Into<String>) -> Self {
        Self::new(what, Method::PATCH, path)
    }

    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn json(self, body: Value) -> Self {
        self.raw(body.to_string())
    }

    fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn expect_status(mut self, status: u16) -> Self {
        self.status = status;
        self.code = None;
        self
    }
}

/// Sends every case and fails once, listing every case that did not get its error.
async fn check(app: &TestApp, cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for case in &cases {
        assert_ne!(
            case.status, 0,
            "case '{}' has no expected status",
            case.what
        );
        let headers: Vec<(&str, &str)> = case
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let reply = app
            .send(
                case.method.clone(),
                &case.path,
                case.token.as_deref(),
                &headers,
                case.body.clone(),
            )
            .await;
        if let Err(problem) = judge(case, &reply) {
            failures.push(format!(
                "{} ({} {}): {problem}; got {} {:?} {}",
                case.what,
                case.method,
                case.path,
                reply.status,
                reply.header("content-type"),
                reply.raw.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Whether a reply is the contract error body the case expects.
fn judge(case: &Case, reply: &Reply) -> Result<(), String> {
    if reply.status >= 500 {
        return Err("a server error for a client mistake".into());
    }
    let content_type = reply.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!("content type is '{content_type}', not JSON"));
    }
    let code = reply.body["error"]["code"].as_str().unwrap_or_default();
    let snake_case = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !snake_case {
        return Err("no snake_case error.code".into());
    }
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    if message.trim().is_empty() {
        return Err("no error.message".into());
    }
    if reply.status != case.status {
        return Err(format!("expected status {}", case.status));
    }
    if let Some(expected) = case.code
        && code != expected
    {
        return Err(format!("expected code '{expected}'"));
    }
    Ok(())
}

fn random_id() -> String {
    Uuid::new_v4().to_string()
}

/// A site with one service, one counter and one waiting ticket.
async fn site_with_ticket(app: &TestApp) -> (Site, String) {
    let site = app.site("clinic", 2, 1).await;
    let ticket = app.issue(&site, 0).await;
    let id = ticket["id"].as_str().expect("ticket id").to_owned();
    (site, id)
}

fn api(site: &Site, rest: &str) -> String {
    format!("/api/v1/tenants/{}{rest}", site.slug)
}

#[actix_web::test]
async fn malformed_json_bodies_are_400_malformed_json() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let service = &site.services[0];
    let counter = &site.counters[0];
    let truncated = br#"{"service_id": "#.to_vec();
    let cases = vec![
        Case::post("public issue, truncated JSON", api(&site, "/tickets")).raw(truncated.clone()),
        Case::post("public issue, not JSON at all", api(&site, "/tickets")).raw("service=A"),
        Case::post("public issue, empty body", api(&site, "/tickets")).raw(""),
        Case::post("public issue, trailing garbage", api(&site, "/tickets"))
            .raw(format!(r#"{{"service_id": "{service}"}} extra"#)),
        Case::post("operator issue, single quotes", api(&site, "/tickets"))
            .token(&site.operator)
            .raw(format!("{{'service_id': '{service}'}}")),
        Case::post("login, truncated JSON", "/api/v1/auth/login")
            .raw(r#"{"tenant": "clinic", "username": "#),
        Case::post("login, not JSON", "/api/v1/auth/login").raw("tenant=clinic"),
        Case::post(
            "call a ticket, truncated JSON",
            api(&site, &format!("/tickets/{ticket}/call")),
        )
        .token(&site.operator)
        .raw(format!(r#"{{"counter_id": "{counter}""#)),
        Case::post(
            "call-next, not JSON",
            api(&site, &format!("/counters/{counter}/call")),
        )
        .token(&site.operator)
        .raw("next please"),
        Case::post(
            "transfer, truncated JSON",
            api(&site, &format!("/tickets/{ticket}/transfer")),
        )
        .token(&site.operator)
        .raw(truncated.clone()),
        Case::post("admin create service, truncated", api(&site, "/services"))
            .token(&site.admin)
            .raw(r#"{"code": "C", "name": "#),
        Case::post("admin create counter, not JSON", api(&site, "/counters"))
            .token(&site.admin)
            .raw("<counter/>"),
        Case::post("admin create user, truncated", api(&site, "/users"))
            .token(&site.admin)
            .raw(r#"{"username": "x""#),
        Case::patch(
            "admin update service, not JSON",
            api(&site, &format!("/services/{service}")),
        )
        .token(&site.admin)
        .raw("{name: Exams}"),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(400, "malformed_json"))
        .collect();
    check(&app, cases).await;
    // Nothing was issued by the malformed requests.
    assert_eq!(
        app.queue(&site).await["waiting"].as_array().unwrap().len(),
        1
    );
}

#[actix_web::test]
async fn fields_of_the_wrong_type_and_missing_fields_are_422_invalid_body() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let service = &site.services[0];
    let counter = &site.counters[0];
    let cases = vec![
        Case::post("public issue, no service_id", api(&site, "/tickets")).json(json!({})),
        Case::post("public issue, service_id a number", api(&site, "/tickets"))
            .json(json!({ "service_id": 42 })),
        Case::post("public issue, service_id null", api(&site, "/tickets"))
            .json(json!({ "service_id": null })),
        Case::post("public issue, unknown priority", api(&site, "/tickets"))
            .json(json!({ "service_id": service, "priority": "urgent" })),
        Case::post("public issue, priority a boolean", api(&site, "/tickets"))
            .json(json!({ "service_id": service, "priority": true })),
        Case::post("public issue, body an array", api(&site, "/tickets")).json(json!([service])),
        Case::post("public issue, body a string", api(&site, "/tickets")).json(json!(service)),
        Case::post(
            "operator issue, customer_name a number",
            api(&site, "/tickets"),
        )
        .token(&site.operator)
        .json(json!({ "service_id": service, "customer_name": 7 })),
        Case::post("login, no password", "/api/v1/auth/login")
            .json(json!({ "tenant": site.slug, "username": "boss" })),
        Case::post("login, tenant a number", "/api/v1/auth/login")
            .json(json!({ "tenant": 1, "username": "boss", "password": "boss-password" })),
        Case::post(
            "call a ticket, no counter_id",
            api(&site, &format!("/tickets/{ticket}/call")),
        )
        .token(&site.operator)
        .json(json!({})),
        Case::post(
            "call-next, service_ids a string",
            api(&site, &format!("/counters/{counter}/call")),
        )
        .token(&site.operator)
        .json(json!({ "service_ids": service })),
        Case::post(
            "transfer, service_id a list",
            api(&site, &format!("/tickets/{ticket}/transfer")),
        )
        .token(&site.operator)
        .json(json!({ "service_id": [service] })),
        Case::post("create service, no name", api(&site, "/services"))
            .token(&site.admin)
            .json(json!({ "code": "C" })),
        Case::post("create service, code a number", api(&site, "/services"))
            .token(&site.admin)
            .json(json!({ "code": 3, "name": "Third" })),
        Case::post("create counter, name null", api(&site, "/counters"))
            .token(&site.admin)
            .json(json!({ "name": null })),
        Case::post("create user, unknown role", api(&site, "/users"))
            .token(&site.admin)
            .json(json!({ "username": "zed", "password": "zed-password", "role": "root" })),
        Case::post("create user, role a number", api(&site, "/users"))
            .token(&site.admin)
            .json(json!({ "username": "zed", "password": "zed-password", "role": 1 })),
        Case::post("create user, no role", api(&site, "/users"))
            .token(&site.admin)
            .json(json!({ "username": "zed", "password": "zed-password" })),
        Case::patch(
            "update service, active a string",
            api(&site, &format!("/services/{service}")),
        )
        .token(&site.admin)
        .json(json!({ "active": "no" })),
        Case::patch(
            "update service, name a number",
            api(&site, &format!("/services/{service}")),
        )
        .token(&site.admin)
        .json(json!({ "name": 12 })),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(422, "invalid_body"))
        .collect();
    check(&app, cases).await;
    assert_eq!(
        app.queue(&site).await["waiting"].as_array().unwrap().len(),
        1
    );
}

#[actix_web::test]
async fn malformed_uuids_in_the_path_are_400_invalid_path() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let counter = &site.counters[0];
    let bad_ids = ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"];
    let mut cases = Vec::new();
    for bad in bad_ids {
        cases.extend([
            Case::get("public ticket", api(&site, &format!("/tickets/{bad}"))),
            Case::post("an action", api(&site, &format!("/tickets/{bad}/start")))
                .token(&site.operator)
                .json(json!({})),
            Case::post("call a ticket", api(&site, &format!("/tickets/{bad}/call")))
                .token(&site.operator)
                .json(json!({ "counter_id": counter })),
            Case::post("transfer", api(&site, &format!("/tickets/{bad}/transfer")))
                .token(&site.operator)
                .json(json!({ "service_id": site.services[1] })),
            Case::post("call-next", api(&site, &format!("/counters/{bad}/call")))
                .token(&site.operator)
                .json(json!({})),
            Case::patch("update service", api(&site, &format!("/services/{bad}")))
                .token(&site.admin)
                .json(json!({ "name": "Renamed" })),
        ]);
    }
    let cases = cases
        .into_iter()
        .map(|c| c.expect(400, "invalid_path"))
        .collect();
    check(&app, cases).await;
    // The ticket was not touched by any of them.
    let still = app
        .get(&api(&site, &format!("/tickets/{ticket}")), None)
        .await
        .expect(200);
    assert_eq!(still["status"], "waiting");
}

#[actix_web::test]
async fn malformed_uuids_in_the_body_are_422_invalid_body() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let counter = &site.counters[0];
    let cases = vec![
        Case::post(
            "public issue, service_id not a uuid",
            api(&site, "/tickets"),
        )
        .json(json!({ "service_id": "A" })),
        Case::post(
            "public issue, service_id a short hex",
            api(&site, "/tickets"),
        )
        .json(json!({ "service_id": "deadbeef" })),
        Case::post("operator issue, service_id empty", api(&site, "/tickets"))
            .token(&site.operator)
            .json(json!({ "service_id": "" })),
        Case::post(
            "call a ticket, counter_id not a uuid",
            api(&site, &format!("/tickets/{ticket}/call")),
        )
        .token(&site.operator)
        .json(json!({ "counter_id": "desk-1" })),
        Case::post(
            "call-next, a service id not a uuid",
            api(&site, &format!("/counters/{counter}/call")),
        )
        .token(&site.operator)
        .json(json!({ "service_ids": [site.services[0], "B"] })),
        Case::post(
            "transfer, service_id not a uuid",
            api(&site, &format!("/tickets/{ticket}/transfer")),
        )
        .token(&site.operator)
        .json(json!({ "service_id": "xyz" })),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(422, "invalid_body"))
        .collect();
    check(&app, cases).await;
    let still = app
        .get(&api(&site, &format!("/tickets/{ticket}")), None)
        .await
        .expect(200);
    assert_eq!(still["status"], "waiting");
}

#[actix_web::test]
async fn an_unknown_route_is_a_json_404_even_for_a_browser() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    let cases = vec![
        Case::get("unknown API root path", "/api/v1/nothing-here"),
        Case::get("unknown API version", "/api/v2/tenants"),
        Case::get("unknown tenant resource", api(&site, "/widgets")),
        Case::get("too deep a ticket path", api(&site, "/tickets/a/b/c/d")),
        Case::post("unknown POST", "/api/v1/auth/logout")
            .token(&site.operator)
            .json(json!({})),
        Case::get("unknown top-level path", "/no/such/page"),
        Case::get("unknown path asked by a browser", "/api/v1/nope").header("Accept", html),
        Case::get("unknown tenant page", "/t/clinic/kitchen").header("Accept", html),
        Case::get("missing static file", "/static/no-such-file.js"),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(404, "not_found"))
        .collect();
    check(&app, cases).await;
}

#[actix_web::test]
async fn an_unknown_ticket_action_is_a_json_404() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let cases = ["explode", "teleport", "Start", "call-next"]
        .into_iter()
        .map(|action| {
            Case::post(
                "an action that does not exist",
                api(&site, &format!("/tickets/{ticket}/{action}")),
            )
            .token(&site.operator)
            .json(json!({}))
            .expect(404, "not_found")
        })
        .collect();
    check(&app, cases).await;
    let still = app
        .get(&api(&site, &format!("/tickets/{ticket}")), None)
        .await
        .expect(200);
    assert_eq!(still["status"], "waiting");
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_route_is_a_json_405() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let service = &site.services[0];
    let counter = &site.counters[0];
    let cases = vec![
        Case::get("GET login", "/api/v1/auth/login"),
        Case::new("PUT login", Method::PUT, "/api/v1/auth/login")
            .json(json!({ "tenant": "clinic" })),
        Case::new("DELETE services", Method::DELETE, api(&site, "/services")).token(&site.admin),
        Case::new(
            "PUT a service",
            Method::PUT,
            api(&site, &format!("/services/{service}")),
        )
        .token(&site.admin)
        .json(json!({ "name": "x" })),
        Case::post("POST the queue", api(&site, "/queue")).json(json!({})),
        Case::new(
            "DELETE a ticket",
            Method::DELETE,
            api(&site, &format!("/tickets/{ticket}")),
        )
        .token(&site.operator),
        Case::get(
            "GET an action",
            api(&site, &format!("/tickets/{ticket}/start")),
        )
        .token(&site.operator),
        Case::get(
            "GET call-next",
            api(&site, &format!("/counters/{counter}/call")),
        )
        .token(&site.operator),
        Case::new("PATCH counters", Method::PATCH, api(&site, "/counters"))
            .token(&site.admin)
            .json(json!({ "name": "x" })),
        Case::new("DELETE users", Method::DELETE, api(&site, "/users")).token(&site.admin),
    ];
    let cases = cases.into_iter().map(|c| c.expect_status(405)).collect();
    check(&app, cases).await;
    let still = app
        .get(&api(&site, &format!("/tickets/{ticket}")), None)
        .await
        .expect(200);
    assert_eq!(still["status"], "waiting");
}

#[actix_web::test]
async fn a_body_over_64_kib_is_413_payload_too_large() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let service = &site.services[0];
    // Valid JSON of the right shape, only too big.
    let filler = "x".repeat(65 * 1024);
    let cases = vec![
        Case::post("public issue", api(&site, "/tickets"))
            .json(json!({ "service_id": service, "padding": filler })),
        Case::post("operator issue", api(&site, "/tickets"))
            .token(&site.operator)
            .json(json!({ "service_id": service, "customer_name": filler })),
        Case::post("login", "/api/v1/auth/login")
            .json(json!({ "tenant": site.slug, "username": "boss", "password": filler })),
        Case::post("admin create service", api(&site, "/services"))
            .token(&site.admin)
            .json(json!({ "code": "C", "name": filler })),
        Case::post("admin create user", api(&site, "/users"))
            .token(&site.admin)
            .json(json!({ "username": "zed", "password": filler, "role": "operator" })),
        Case::post(
            "an action",
            api(&site, &format!("/tickets/{ticket}/cancel")),
        )
        .token(&site.operator)
        .json(json!({ "padding": filler })),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(413, "payload_too_large"))
        .collect();
    check(&app, cases).await;
    // None of them did anything.
    let queue = app.queue(&site).await;
    assert_eq!(queue["waiting"].as_array().unwrap().len(), 1);
    assert_eq!(queue["waiting"][0]["id"], json!(ticket));
    let services = app.get(&api(&site, "/services"), None).await.expect(200);
    assert_eq!(services["services"].as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn a_malformed_query_string_is_400_invalid_query() {
    let app = TestApp::spawn().await;
    let (site, _ticket) = site_with_ticket(&app).await;
    let cases = vec![
        Case::get("unknown status", api(&site, "/tickets?status=bogus")).token(&site.operator),
        Case::get(
            "status in the wrong case",
            api(&site, "/tickets?status=WAITING"),
        )
        .token(&site.operator),
        Case::get("service_id not a uuid", api(&site, "/tickets?service_id=A"))
            .token(&site.operator),
        Case::get("since not a number", api(&site, "/events?since=abc")),
        Case::get("since a fraction", api(&site, "/events?since=1.5")),
        Case::get("since missing", api(&site, "/events")),
        Case::get("since empty", api(&site, "/events?since=")),
        Case::get(
            "since with an operator token",
            api(&site, "/events?since=abc"),
        )
        .token(&site.operator),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(400, "invalid_query"))
        .collect();
    check(&app, cases).await;
}

#[actix_web::test]
async fn an_invalid_idempotency_key_is_400_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (site, ticket) = site_with_ticket(&app).await;
    let service = &site.services[0];
    let counter = &site.counters[0];
    let bad_keys = [
        ("an empty key", String::new()),
        ("a key of 256 characters", "k".repeat(256)),
        ("a key with a tab", "key\twith-tab".to_owned()),
    ];
    let mut cases = Vec::new();
    for (what, key) in bad_keys {
        cases.extend([
            Case::post(what, api(&site, "/tickets"))
                .header("Idempotency-Key", key.clone())
                .json(json!({ "service_id": service })),
            Case::post(what, api(&site, "/tickets"))
                .token(&site.operator)
                .header("Idempotency-Key", key.clone())
                .json(json!({ "service_id": service })),
            Case::post(what, api(&site, &format!("/counters/{counter}/call")))
                .token(&site.operator)
                .header("Idempotency-Key", key.clone())
                .json(json!({})),
            Case::post(what, api(&site, &format!("/tickets/{ticket}/cancel")))
                .token(&site.operator)
                .header("Idempotency-Key", key.clone())
                .json(json!({})),
        ]);
    }
    let cases = cases
        .into_iter()
        .map(|c| c.expect(400, "invalid_idempotency_key"))
        .collect();
    check(&app, cases).await;
    let queue = app.queue(&site).await;
    assert_eq!(queue["waiting"].as_array().unwrap().len(), 1, "{queue}");
    assert_eq!(queue["called"].as_array().unwrap().len(), 0, "{queue}");

    // The longest valid key is accepted.
    let reply = app
        .send(
            Method::POST,
            &api(&site, "/tickets"),
            None,
            &[("Idempotency-Key", &"k".repeat(255))],
            Some(json!({ "service_id": service }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
}

#[actix_web::test]
async fn an_unknown_tenant_is_404_tenant_not_found() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let service = &site.services[0];
    let ticket = random_id();
    let cases = vec![
        Case::get("services", "/api/v1/tenants/nowhere/services"),
        Case::get("queue", "/api/v1/tenants/nowhere/queue"),
        Case::get("events", "/api/v1/tenants/nowhere/events?since=0"),
        Case::get(
            "a ticket",
            format!("/api/v1/tenants/nowhere/tickets/{ticket}"),
        ),
        Case::post("issue", "/api/v1/tenants/nowhere/tickets")
            .json(json!({ "service_id": service })),
        Case::get("totem page", "/t/nowhere/totem"),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expect(404, "tenant_not_found"))
        .collect();
    check(&app, cases).await;

    // Login to an unknown tenant is a plain bad-credentials 401 (no tenant enumeration).
    app.post(
        "/api/v1/auth/login",
        None,
        json!({ "tenant": "nowhere", "username": "boss", "password": "boss-password" }),
    )
    .await
    .expect_error(401, "invalid_credentials");
}

#[actix_web::test]
async fn unknown_tickets_counters_and_services_are_specific_404s() {
    let app = TestApp::spawn().await;
    let (site, first) = site_with_ticket(&app).await;
    // The first ticket is called (so that it may be transferred), the second waits.
    app.call_next(&site, 0).await.expect(200);
    let ticket = app.issue(&site, 0).await["id"].as_str().unwrap().to_owned();
    let counter = &site.counters[0];
    let service = &site.services[1];
    let unknown = random_id();
    let mut cases = vec![
        Case::get("public ticket", api(&site, &format!("/tickets/{unknown}")))
            .expect(404, "ticket_not_found"),
        Case::post(
            "call a ticket",
            api(&site, &format!("/tickets/{unknown}/call")),
        )
        .token(&site.operator)
        .json(json!({ "counter_id": counter }))
        .expect(404, "ticket_not_found"),
        Case::post(
            "transfer",
            api(&site, &format!("/tickets/{unknown}/transfer")),
        )
        .token(&site.operator)
        .json(json!({ "service_id": service }))
        .expect(404, "ticket_not_found"),
        Case::post("issue to an unknown service", api(&site, "/tickets"))
            .json(json!({ "service_id": unknown }))
            .expect(404, "service_not_found"),
        Case::post(
            "call-next to an unknown counter",
            api(&site, &format!("/counters/{unknown}/call")),
        )
        .token(&site.operator)
        .json(json!({}))
        .expect(404, "counter_not_found"),
        Case::post(
            "call to an unknown counter",
            api(&site, &format!("/tickets/{ticket}/call")),
        )
        .token(&site.operator)
        .json(json!({ "counter_id": unknown }))
        .expect(404, "counter_not_found"),
        Case::post(
            "transfer to an unknown service",
            api(&site, &format!("/tickets/{first}/transfer")),
        )
        .token(&site.operator)
        .json(json!({ "service_id": unknown }))
        .expect(404, "service_not_found"),
        Case::patch(
            "update an unknown service",
            api(&site, &format!("/services/{unknown}")),
        )
        .token(&site.admin)
        .json(json!({ "name": "Renamed" }))
        .expect(404, "service_not_found"),
    ];
    for action in [
        "recall",
        "start",
        "finish",
        "no-show",
        "cancel",
        "reactivate",
    ] {
        cases.push(
            Case::post(
                "an action",
                api(&site, &format!("/tickets/{unknown}/{action}")),
            )
            .token(&site.operator)
            .json(json!({}))
            .expect(404, "ticket_not_found"),
        );
    }
    check(&app, cases).await;
}

#[actix_web::test]
async fn invalid_codes_and_names_are_422_invalid_input() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 0).await;
    let service = &site.services[0];
    let long = "n".repeat(101);
    let mut cases = Vec::new();
    for code in ["", "1", "A1", "TOOLONG", "Ä", "A B"] {
        cases.push(
            Case::post("a bad service code", api(&site, "/services"))
                .token(&site.admin)
                .json(json!({ "code": code, "name": "Some service" })),
        );
    }
    for name in ["", "   ", long.as_str(), "line\nbreak"] {
        cases.extend([
            Case::post("a bad service name", api(&site, "/services"))
                .token(&site.admin)
                .json(json!({ "code": "Z", "name": name })),
            Case::post("a bad counter name", api(&site, "/counters"))
                .token(&site.admin)
                .json(json!({ "name": name })),
            Case::patch(
                "a bad new service name",
                api(&site, &format!("/services/{service}")),
            )
            .token(&site.admin)
            .json(json!({ "name": name })),
        ]);
    }
    for username in ["", "with space", "semi;colon"] {
        cases.push(
            Case::post("a bad username", api(&site, "/users"))
                .token(&site.admin)
                .json(
                    json!({ "username": username, "password": "long-enough", "role": "operator" }),
                ),
        );
    }
    cases.push(
        Case::post("a password too short", api(&site, "/users"))
            .token(&site.admin)
            .json(json!({ "username": "zed", "password": "short", "role": "operator" })),
    );
    cases.push(
        Case::post("a customer name too long", api(&site, "/tickets"))
            .token(&site.operator)
            .json(json!({ "service_id": service, "customer_name": "c".repeat(201) })),
    );
    let cases = cases
        .into_iter()
        .map(|c| c.expect(422, "invalid_input"))
        .collect();
    check(&app, cases).await;

    // None of them created anything.
    let services = app.get(&api(&site, "/services"), None).await.expect(200);
    assert_eq!(
        services["services"].as_array().unwrap().len(),
        1,
        "{services}"
    );
    assert_eq!(services["services"][0]["name"], "Service A");
    let counters = app
        .get(&api(&site, "/counters"), Some(&site.operator))
        .await
        .expect(200);
    assert_eq!(counters["counters"], json!([]));
    assert_eq!(app.queue(&site).await["waiting"], json!([]));
}

#[actix_web::test]
async fn a_public_request_cannot_store_a_customer_name() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let issued = app
        .post(
            &api(&site, "/tickets"),
            None,
            json!({ "service_id": site.services[0], "customer_name": "Maria Silva" }),
        )
        .await
        .expect(201);
    assert!(
        !issued.to_string().contains("Maria"),
        "the public answer shows the name: {issued}"
    );

    // An operator ticket in the same queue does keep its name, so the field is read.
    let named = app
        .post(
            &api(&site, "/tickets"),
            Some(&site.operator),
            json!({ "service_id": site.services[0], "customer_name": "João Souza" }),
        )
        .await
        .expect(201);
    assert_eq!(named["customer_name"], "João Souza");

    let list = app
        .get(&api(&site, "/tickets"), Some(&site.operator))
        .await
        .expect(200);
    let tickets = list["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2, "{list}");
    let anonymous = tickets
        .iter()
        .find(|t| t["id"] == issued["id"])
        .expect("the anonymous ticket is listed");
    assert_eq!(anonymous["customer_name"], Value::Null, "{anonymous}");
    let stored: Option<String> =
        sqlx::query_scalar("select customer_name from tickets where id = $1")
            .bind(Uuid::parse_str(issued["id"].as_str().unwrap()).unwrap())
            .fetch_one(&app.pool)
            .await
            .expect("the ticket row");
    assert_eq!(stored, None);
}
