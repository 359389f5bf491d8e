//! Issue 18: tickets issued from other sites' pages (415 for bodies that are not JSON),
//! kiosks locked out by a flood of anonymous requests (kiosk keys), and per-address limits
//! counting an IPv6 client by its /64.

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
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let mut request = client.post(app.url(path));
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

/// The tenant's kiosk key, as `nextup tenant kiosk-key` shows it.
async fn kiosk_key(app: &TestApp, slug: &str) -> String {
    let mut conn = app.pool.acquire().await.unwrap();
    nextup::db::kiosk_keys::kiosk_key(&mut conn, slug)
        .await
        .unwrap()
        .expect("a tenant has a kiosk key")
}

#[actix_web::test]
async fn a_kiosk_with_its_key_is_served_while_a_flood_exhausts_the_anonymous_quota() {
    let app = TestApp::spawn_with(|c| {
        trust_local_proxy(c);
        // The default bursts; the rates are slowed to one a minute, so that no allowance
        // refills while the test runs.
        c.issue_rate_per_minute = 1;
        c.issue_burst = 10;
        c.issue_tenant_rate_per_minute = 1;
        c.issue_tenant_burst = 100;
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let key = kiosk_key(&app, "clinic").await;
    let body = json!({ "service_id": site.services[0] }).to_string();
    let issue = |address: String, key: Option<&str>| {
        let mut headers = vec![("X-Forwarded-For", address)];
        if let Some(key) = key {
            headers.push(("X-Kiosk-Key", key.to_owned()));
        }
        let body = body.clone();
        let app = &app;
        let path = tickets_path(&site);
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            post_typed(app, &path, Some("application/json"), &headers, body).await
        }
    };

    // The flood: 12 addresses, 10 tickets each, until the tenant's quota is spent.
    let mut refused = 0;
    for a in 0..12 {
        for _ in 0..10 {
            let reply = issue(format!("198.51.100.{a}"), None).await;
            match reply.status {
                201 => {}
                429 => refused += 1,
                other => panic!("unexpected {other}: {}", reply.raw),
            }
        }
    }
    assert_eq!(refused, 20, "the flood spends the tenant's burst of 100");
    issue("203.0.113.50".into(), None)
        .await
        .expect_error(429, "rate_limited");

    // The kiosk, with its key, from an address of the flood and from its own.
    issue("198.51.100.0".into(), Some(&key)).await.expect(201);
    for _ in 0..12 {
        issue("192.0.2.10".into(), Some(&key)).await.expect(201);
    }
    // A wrong key is refused, not served as anonymous.
    let wrong = issue("192.0.2.11".into(), Some("not-the-key")).await;
    wrong.expect_error(401, "invalid_kiosk_key");
    let empty = issue("192.0.2.11".into(), Some("")).await;
    empty.expect_error(401, "invalid_kiosk_key");
    // Wrong keys are never refused for their number (from one address or many): that
    // would let anyone at a kiosk's address lock it out again. The right key still works.
    for _ in 0..20 {
        issue("192.0.2.10".into(), Some("guess"))
            .await
            .expect_error(401, "invalid_kiosk_key");
    }
    issue("192.0.2.10".into(), Some(&key)).await.expect(201);
    // Another tenant's key is a wrong key here.
    app.site("office", 1, 1).await;
    let office_key = kiosk_key(&app, "office").await;
    assert_ne!(office_key, key);
    issue("192.0.2.12".into(), Some(&office_key))
        .await
        .expect_error(401, "invalid_kiosk_key");
    // Without the key the tenant is still limited.
    issue("203.0.113.51".into(), None)
        .await
        .expect_error(429, "rate_limited");
}

#[actix_web::test]
async fn a_rotated_kiosk_key_replaces_the_old_one_at_once() {
    let app = TestApp::spawn_with(|c| {
        c.issue_tenant_rate_per_minute = 1;
        c.issue_tenant_burst = 1;
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let old = kiosk_key(&app, "clinic").await;
    assert_eq!(old.len(), 64, "{old}");
    assert!(old.bytes().all(|b| b.is_ascii_hexdigit()), "{old}");
    let body = json!({ "service_id": site.services[0] }).to_string();
    let issue = |key: String| {
        let (app, path, body) = (&app, tickets_path(&site), body.clone());
        async move {
            post_typed(
                app,
                &path,
                Some("application/json"),
                &[("X-Kiosk-Key", &key)],
                body,
            )
            .await
        }
    };
    issue(old.clone()).await.expect(201);

    let mut conn = app.pool.acquire().await.unwrap();
    let new = nextup::db::kiosk_keys::rotate_kiosk_key(&mut conn, "clinic")
        .await
        .unwrap()
        .expect("the tenant exists");
    assert_ne!(new, old);
    issue(old).await.expect_error(401, "invalid_kiosk_key");
    // The kiosks' own quota (here one ticket a minute) applies to keyed requests.
    issue(new.clone()).await.expect_error(429, "rate_limited");
    // A key for an unknown tenant finds no tenant.
    post_typed(
        &app,
        "/api/v1/tenants/nowhere/tickets",
        Some("application/json"),
        &[("X-Kiosk-Key", &new)],
        body.clone(),
    )
    .await
    .expect_error(404, "tenant_not_found");
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

#[test]
fn the_cli_shows_and_rotates_a_tenants_kiosk_key() {
    let sandbox = crate::cli::Sandbox::new();
    let run = |args: &[&str]| {
        let output = sandbox.nextup(args).output().expect("nextup runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.success(), stdout, stderr)
    };
    let (ok, _, stderr) = run(&["tenant", "create", "--slug", "clinic", "--name", "Clinic"]);
    assert!(ok, "{stderr}");
    // The key, and the kiosk page that hands it to a kiosk.
    let shown = |args: &[&str]| -> String {
        let (ok, stdout, stderr) = run(args);
        assert!(ok, "{args:?}: {stderr}");
        let lines: Vec<&str> = stdout.lines().collect();
        let key = lines[0].rsplit(": ").next().unwrap().to_owned();
        assert_eq!(key.len(), 64, "{stdout}");
        assert_eq!(
            lines[1],
            format!("kiosk page: /t/clinic/totem#kiosk_key={key}"),
            "{stdout}"
        );
        key
    };
    let key = shown(&["tenant", "kiosk-key", "--slug", "clinic"]);
    assert_eq!(shown(&["tenant", "kiosk-key", "--slug", "clinic"]), key);
    let rotated = shown(&["tenant", "kiosk-key", "--slug", "clinic", "--rotate"]);
    assert_ne!(rotated, key);
    assert_eq!(shown(&["tenant", "kiosk-key", "--slug", "clinic"]), rotated);

    let (ok, _, stderr) = run(&["tenant", "kiosk-key", "--slug", "nowhere", "--rotate"]);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknown tenant 'nowhere'"), "{stderr}");
}

#[actix_web::test]
async fn the_demo_prints_its_kiosk_page_with_a_working_key() {
    use crate::cli::{START_TIMEOUT, Sandbox, Server, listening_url};
    let sandbox = Sandbox::new();
    let mut command = sandbox.nextup(&["serve", "--demo"]);
    // One anonymous ticket per address and per tenant.
    for name in ["ISSUE_BURST", "ISSUE_RATE_PER_MINUTE"] {
        command.env(name, "1");
    }
    let server = Server::start(command);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let lines = server.read_until(deadline, |l| l.contains("/t/demo/operator"));
    let base = listening_url(
        lines
            .iter()
            .find(|l| l.contains("listening on"))
            .expect("the listening line"),
    );
    let kiosk = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("kiosk"))
        .expect("a kiosk line")
        .trim();
    let key = kiosk
        .strip_prefix(&format!("{base}/t/demo/totem#kiosk_key="))
        .unwrap_or_else(|| panic!("the kiosk page with its key: {kiosk}"));

    let client = awc::Client::new();
    let mut services = client
        .get(format!("{base}/api/v1/tenants/demo/services"))
        .send()
        .await
        .expect("services");
    let services: Value = services.json().await.expect("services JSON");
    let body = json!({ "service_id": services["services"][0]["id"] });
    let issue = |key: Option<&str>| {
        let mut request = client.post(format!("{base}/api/v1/tenants/demo/tickets"));
        if let Some(key) = key {
            request = request.insert_header(("X-Kiosk-Key", key));
        }
        request.send_json(&body)
    };
    assert_eq!(issue(None).await.expect("issue").status().as_u16(), 201);
    assert_eq!(issue(None).await.expect("issue").status().as_u16(), 429);
    assert_eq!(
        issue(Some(key)).await.expect("issue").status().as_u16(),
        201
    );
}

/// The kiosk page in a real headless Chromium: it takes the key from the URL fragment,
/// keeps it, and issues with it.
mod kiosk_page {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use headless_chrome::{Browser, LaunchOptions, Tab};
    use serde_json::Value;

    use super::*;

    const WAIT: Duration = Duration::from_secs(15);

    async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        actix_web::rt::task::spawn_blocking(work)
            .await
            .expect("browser work panicked")
    }

    async fn open(browser: &Arc<Browser>, url: String) -> Arc<Tab> {
        let browser = browser.clone();
        blocking(move || {
            let tab = browser.new_tab().expect("a tab");
            tab.navigate_to(&url)
                .expect("navigation")
                .wait_until_navigated()
                .expect("page loads");
            tab
        })
        .await
    }

    /// Waits until the expression is truthy; returns its value.
    async fn wait_for(tab: &Arc<Tab>, expression: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let (tab, script) = (tab.clone(), format!("JSON.stringify({expression})"));
            let value = blocking(move || match tab.evaluate(&script, false) {
                Ok(result) => match result.value {
                    Some(Value::String(json)) => serde_json::from_str(&json).unwrap_or(Value::Null),
                    _ => Value::Null,
                },
                Err(_) => Value::Null,
            })
            .await;
            if !matches!(&value, Value::Null | Value::Bool(false)) && value != "" {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {expression}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes a ticket of service A; returns the code shown, or the error shown.
    async fn take_ticket(tab: &Arc<Tab>) -> Result<String, String> {
        wait_for(
            tab,
            "(b => (b ? (b.click(), true) : false))(document.querySelector('[data-testid=\"service-A\"]:not([disabled])'))",
        )
        .await;
        let shown = wait_for(
            tab,
            "document.getElementById('ticket').hidden
                ? (document.getElementById('error').hidden ? null : {error: document.getElementById('error').textContent})
                : {code: document.getElementById('ticket-code').textContent}",
        )
        .await;
        match shown["code"].as_str() {
            Some(code) => Ok(code.to_owned()),
            None => Err(shown["error"].as_str().unwrap_or_default().to_owned()),
        }
    }

    #[actix_web::test]
    async fn the_kiosk_page_keeps_its_key_and_issues_with_it() {
        // One anonymous ticket per address: the test's own issue spends it.
        let app = TestApp::spawn_with(|c| {
            c.issue_rate_per_minute = 1;
            c.issue_burst = 1;
        })
        .await;
        let site = app.site("clinic", 1, 1).await;
        app.issue(&site, 0).await;
        let key = kiosk_key(&app, "clinic").await;
        let browser = Arc::new(
            blocking(|| {
                let options = LaunchOptions::default_builder()
                    .path(Some(
                        std::env::var_os("CHROMIUM_PATH")
                            .unwrap_or_else(|| "/usr/bin/chromium".into())
                            .into(),
                    ))
                    .headless(true)
                    .sandbox(false)
                    .args(vec![std::ffi::OsStr::new("--disable-gpu")])
                    .build()
                    .expect("launch options");
                Browser::new(options).expect("Chromium starts (install Debian's `chromium`)")
            })
            .await,
        );
        let page = app.url("/t/clinic/totem?lang=en");

        // Without the key the page is an anonymous client, over its quota.
        let anonymous = open(&browser, page.clone()).await;
        let refused = take_ticket(&anonymous)
            .await
            .expect_err("no ticket without the key");
        assert!(refused.contains("Please wait"), "{refused}");

        // Opened once with the key: the key leaves the address bar, stays in storage,
        // and the ticket is issued.
        let provisioned = open(&browser, format!("{page}#kiosk_key={key}")).await;
        let stored = wait_for(
            &provisioned,
            "location.hash === '' && localStorage.getItem('nextup.totem.kiosk_key.clinic')",
        )
        .await;
        assert_eq!(stored, Value::String(key.clone()));
        assert!(
            !provisioned.get_url().contains(&key),
            "{}",
            provisioned.get_url()
        );
        assert_eq!(take_ticket(&provisioned).await, Ok("A002".to_owned()));

        // Later visits use the kept key.
        let later = open(&browser, page.clone()).await;
        assert_eq!(take_ticket(&later).await, Ok("A003".to_owned()));

        // A rotated key is shown as such, and nothing is issued without it.
        let mut conn = app.pool.acquire().await.unwrap();
        nextup::db::kiosk_keys::rotate_kiosk_key(&mut conn, "clinic")
            .await
            .unwrap();
        let stale = open(&browser, page).await;
        let refused = take_ticket(&stale)
            .await
            .expect_err("a stale key issues nothing");
        assert!(refused.contains("key is no longer valid"), "{refused}");
        assert_eq!(
            app.queue(&site).await["waiting"].as_array().unwrap().len(),
            3
        );
    }
}
