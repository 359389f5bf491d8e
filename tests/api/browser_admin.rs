//! The admin page (contract §6 and §9) and the console's change of password, in a real
//! headless Chromium against the real server. Screenshots go to `target/screenshots/`.

use headless_chrome::Browser;
use serde_json::{Value, json};

use crate::browser::{Page, WAIT, launch, operator_console};
use crate::helpers::*;

fn visible(testid: &str) -> String {
    format!("!!document.querySelector('[data-testid={testid}]:not([hidden])')")
}

/// The admin page of `slug`, signed in as the site's admin.
async fn admin_page(app: &TestApp, browser: &Browser, slug: &str) -> Page {
    let page = Page::open(
        browser,
        app.url(&format!("/t/{slug}/admin?lang=en")),
        (1366, 1000),
    )
    .await;
    page.type_into("login-username", "boss").await;
    page.type_into("login-password", "boss-password").await;
    page.eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    page.wait_for(&visible("admin"), WAIT, "the admin page")
        .await;
    page
}

/// The console of `slug` signed in as `username`, at the counter with this id.
async fn console_as(
    app: &TestApp,
    browser: &Browser,
    slug: &str,
    (username, password): (&str, &str),
    counter_id: &str,
) -> Page {
    let console = Page::open(
        browser,
        app.url(&format!("/t/{slug}/operator?lang=en")),
        (1366, 900),
    )
    .await;
    console.type_into("login-username", username).await;
    console.type_into("login-password", password).await;
    console
        .eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    console
        .wait_for(&visible("console"), WAIT, "the console")
        .await;
    console
        .wait_for(
            &format!("!!document.querySelector('[data-testid=counter-select] option[value=\"{counter_id}\"]')"),
            WAIT,
            "the new desk in the console",
        )
        .await;
    console
        .eval(&format!(
            "(() => {{ const s = document.querySelector('[data-testid=counter-select]'); \
             s.value = '{counter_id}'; s.dispatchEvent(new Event('change', {{bubbles: true}})); return true; }})()"
        ))
        .await;
    console.wait_for_state("live", WAIT).await;
    console
}

/// Waits until the row with this test id says `attr` is `value`.
async fn wait_row(page: &Page, testid: &str, attr: &str, value: &str) {
    page.wait_for(
        &format!(
            "document.querySelector('[data-testid=\"{testid}\"]')?.dataset.{attr} === '{value}'"
        ),
        WAIT,
        &format!("{testid} with {attr} {value}"),
    )
    .await;
}

async fn users_of(app: &TestApp, site: &Site) -> Value {
    app.get(
        &format!("/api/v1/tenants/{}/users", site.slug),
        Some(&site.admin),
    )
    .await
    .expect(200)
}

#[actix_web::test]
async fn an_admin_creates_a_desk_and_an_operator_who_then_calls_a_ticket() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 0).await;
    let browser = launch().await;
    // The page is for admins: an operator's login is refused there.
    let refused = Page::open(&browser, app.url("/t/clinic/admin?lang=en"), (1366, 1000)).await;
    refused.type_into("login-username", "olga").await;
    refused.type_into("login-password", "olga-password").await;
    refused
        .eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    refused
        .wait_for(
            "document.querySelector('[data-testid=login-error]').dataset.code === 'admin_required'",
            WAIT,
            "an operator refused",
        )
        .await;
    assert_eq!(refused.eval(&visible("admin")).await, false);

    let admin = admin_page(&app, &browser, "clinic").await;

    // Services, the first tab: listed with their state.
    wait_row(&admin, "service-row-A", "active", "true").await;
    assert_eq!(
        admin
            .eval(
                "document.querySelector('[data-testid=tab-services]').getAttribute('aria-selected')"
            )
            .await,
        "true"
    );
    admin.screenshot("admin-services").await;

    admin.click("tab-counters").await;
    admin.type_into("new-counter-name", "Desk 9").await;
    admin.click("new-counter-submit").await;
    wait_row(&admin, "counter-row-Desk 9", "active", "true").await;
    admin.screenshot("admin-counters").await;

    admin.click("tab-users").await;
    wait_row(&admin, "user-row-olga", "role", "operator").await;
    admin.type_into("new-user-username", "rita").await;
    admin.type_into("new-user-password", "rita-password").await;
    admin.click("new-user-submit").await;
    wait_row(&admin, "user-row-rita", "active", "true").await;
    assert_eq!(
        admin
            .eval("document.querySelector('[data-testid=\"user-row-rita\"]').dataset.role")
            .await,
        "operator"
    );
    admin.screenshot("admin-users").await;

    // What the page made is what the API holds.
    let counters = app
        .get("/api/v1/tenants/clinic/counters", Some(&site.operator))
        .await
        .expect(200);
    let desk = counters["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Desk 9")
        .expect("Desk 9 created");
    let desk_id = desk["id"].as_str().unwrap().to_owned();
    let users = users_of(&app, &site).await;
    assert!(
        users["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "rita" && u["role"] == "operator" && u["active"] == true),
        "{users}"
    );

    app.issue(&site, 0).await;
    let console = console_as(
        &app,
        &browser,
        "clinic",
        ("rita", "rita-password"),
        &desk_id,
    )
    .await;
    console.click("call-next").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.code === 'A001'",
            WAIT,
            "rita's call of A001",
        )
        .await;
    let queue = app.queue(&site).await;
    assert_eq!(queue["called"][0]["code"], "A001");
    assert_eq!(queue["called"][0]["counter"]["name"], "Desk 9");

    // The settings and the audit log, for the screenshots, with what was just done.
    admin.click("tab-settings").await;
    admin
        .wait_for(
            "document.querySelector('[data-testid=setting-timezone]').value === 'UTC'",
            WAIT,
            "the settings",
        )
        .await;
    admin.screenshot("admin-settings").await;
    admin.click("tab-audit").await;
    admin
        .wait_for(
            "!!document.querySelector('[data-testid=audit-table] tr[data-action=counter_created]')",
            WAIT,
            "the desk's creation in the audit log",
        )
        .await;
    admin.screenshot("admin-audit").await;
}

#[actix_web::test]
async fn a_deactivated_operator_is_sent_back_to_the_login_screen() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let browser = launch().await;
    let console = operator_console(&app.base, &browser, &site, 0).await;
    let admin = admin_page(&app, &browser, "clinic").await;

    // Through the WebSocket: the console is idle, so only the session's close (4001) tells.
    admin.click("tab-users").await;
    wait_row(&admin, "user-row-olga", "active", "true").await;
    admin.click("user-toggle-olga").await;
    wait_row(&admin, "user-row-olga", "active", "false").await;
    console
        .wait_for(&visible("login"), WAIT, "the console's login screen")
        .await;
    assert_eq!(
        console
            .eval("document.querySelector('[data-testid=login-error]').dataset.code")
            .await,
        "token_revoked"
    );
    assert_eq!(console.eval(&visible("console")).await, false);
    console.screenshot("operator-console-revoked").await;
    app.get("/api/v1/tenants/clinic/counters", Some(&site.operator))
        .await
        .expect_error(401, "token_revoked");

    // A deactivated operator cannot sign in; activated again, they can.
    app.post(
        "/api/v1/auth/login",
        None,
        json!({ "tenant": "clinic", "username": "olga", "password": "olga-password" }),
    )
    .await
    .expect_error(401, "invalid_credentials");
    admin.click("user-toggle-olga").await;
    wait_row(&admin, "user-row-olga", "active", "true").await;
    let console = operator_console(&app.base, &browser, &site, 0).await;

    // Through REST: with the WebSocket closed by the page itself, the next call is refused.
    console.eval("(window.nextupLive.close(), true)").await;
    let olga = users_of(&app, &site).await["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "olga")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.send(
        actix_web::http::Method::PATCH,
        &format!("/api/v1/tenants/clinic/users/{olga}"),
        Some(&site.admin),
        &[],
        Some(json!({ "active": false }).to_string().into_bytes()),
    )
    .await
    .expect(200);
    console.click("call-next").await;
    console
        .wait_for(&visible("login"), WAIT, "the login screen after a 401")
        .await;
    assert_eq!(
        console
            .eval("document.querySelector('[data-testid=login-error]').dataset.code")
            .await,
        "token_revoked"
    );
}

/// The marks of one chart: (series, category) → the value it carries (None: no sample).
async fn chart_marks(page: &Page, testid: &str) -> Vec<(String, String, Option<f64>)> {
    let marks = page
        .eval(&format!(
            "[...document.querySelectorAll('[data-testid={testid}] svg [data-series]')]\
             .map((m) => [m.dataset.series, m.dataset.category, m.dataset.value, m.querySelector('title')?.textContent ?? ''])"
        ))
        .await;
    marks
        .as_array()
        .expect("marks")
        .iter()
        .map(|mark| {
            let title = mark[3].as_str().unwrap();
            assert!(!title.is_empty(), "every mark says its value in words");
            let value = mark[2].as_str().unwrap();
            (
                mark[0].as_str().unwrap().to_owned(),
                mark[1].as_str().unwrap().to_owned(),
                (!value.is_empty()).then(|| value.parse::<f64>().expect("a number")),
            )
        })
        .collect()
}

fn mark(marks: &[(String, String, Option<f64>)], series: &str, category: &str) -> Option<f64> {
    marks
        .iter()
        .find(|(s, c, _)| s == series && c == category)
        .unwrap_or_else(|| panic!("a mark for {series} {category}"))
        .2
}

#[actix_web::test]
async fn the_report_charts_carry_the_numbers_of_the_stats_api() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    // A: two served, one missed; B: one waiting, one cancelled.
    for _ in 0..3 {
        app.issue(&site, 0).await;
    }
    app.issue(&site, 1).await;
    let b002 = app.issue(&site, 1).await;
    app.act(&site, &b002, "cancel").await.expect(200);
    for _ in 0..2 {
        let ticket = app.call_next(&site, 0).await.expect(200);
        app.act(&site, &ticket, "start").await.expect(200);
        app.act(&site, &ticket, "finish").await.expect(200);
    }
    let missed = app.call_next(&site, 0).await.expect(200);
    app.act(&site, &missed, "no-show").await.expect(200);

    let browser = launch().await;
    let admin = admin_page(&app, &browser, "clinic").await;
    let from = admin
        .eval("document.querySelector('[data-testid=report-from]').value")
        .await;
    let to = admin
        .eval("document.querySelector('[data-testid=report-to]').value")
        .await;
    let stats = app
        .get(
            &format!(
                "/api/v1/tenants/clinic/stats?from={}&to={}",
                from.as_str().unwrap(),
                to.as_str().unwrap()
            ),
            Some(&site.admin),
        )
        .await;
    admin.click("tab-reports").await;
    let stats = stats.expect(200);
    admin
        .wait_for(
            "document.querySelectorAll('[data-testid=chart-arrivals] svg [data-series]').length === 24",
            WAIT,
            "the report's charts",
        )
        .await;
    assert_eq!(stats["totals"]["issued"], 5, "{stats}");

    let services = chart_marks(&admin, "chart-services").await;
    let listed = stats["services"].as_array().unwrap();
    assert_eq!(services.len(), listed.len() * 2);
    for service in listed {
        let code = service["code"].as_str().unwrap();
        assert_eq!(
            mark(&services, "wait_mean", code),
            service["wait_secs"]["mean"].as_f64(),
            "{code} wait"
        );
        assert_eq!(
            mark(&services, "service_mean", code),
            service["service_secs"]["mean"].as_f64(),
            "{code} service"
        );
    }
    assert!(mark(&services, "service_mean", "A").is_some());

    let arrivals = chart_marks(&admin, "chart-arrivals").await;
    let waits = chart_marks(&admin, "chart-hour-wait").await;
    let hours = stats["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    for hour in hours {
        let label = format!("{:02}", hour["hour"].as_u64().unwrap());
        assert_eq!(
            mark(&arrivals, "arrivals", &label),
            hour["arrivals"].as_f64(),
            "arrivals at {label}"
        );
        assert_eq!(
            mark(&waits, "mean_wait", &label),
            hour["mean_wait_secs"].as_f64(),
            "wait at {label}"
        );
    }
    let arrived: f64 = arrivals.iter().filter_map(|m| m.2).sum();
    assert_eq!(arrived, 5.0);

    assert_eq!(
        admin
            .eval("document.querySelector('[data-testid=total-issued]').dataset.value")
            .await,
        "5"
    );
    let operator = &stats["operators"].as_array().unwrap()[0];
    assert_eq!(operator["username"], "olga");
    assert_eq!(
        admin
            .eval("document.querySelector('[data-testid=report-operator-olga]').dataset.served")
            .await,
        operator["served"].to_string()
    );
    // The page loads nothing from elsewhere: every resource is of this server.
    let foreign = admin
        .eval(&format!(
            "performance.getEntriesByType('resource').map((r) => r.name).filter((n) => !n.startsWith('{}'))",
            app.base
        ))
        .await;
    assert_eq!(foreign, json!([]));
    admin.screenshot("admin-report").await;

    // In Portuguese, the same numbers.
    admin
        .eval("(document.querySelector('.lang-button[lang=pt-BR]').click(), true)")
        .await;
    let again = chart_marks(&admin, "chart-services").await;
    assert_eq!(again, services);
    admin.screenshot("admin-report-pt-br").await;
}

#[actix_web::test]
async fn the_console_changes_the_password_and_signs_in_again_with_it() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let browser = launch().await;
    let console = operator_console(&app.base, &browser, &site, 0).await;
    let old_token = console
        .eval("sessionStorage.getItem('nextup.operator.token.clinic')")
        .await;

    console.click("change-password").await;
    console
        .wait_for(&visible("password-panel"), WAIT, "the form")
        .await;
    // A wrong current password: said so, and the console stays signed in.
    console
        .type_into("password-current", "not-my-password")
        .await;
    console.type_into("password-new", "olga-new-password").await;
    console
        .type_into("password-repeat", "olga-new-password")
        .await;
    console.click("password-submit").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=password-error]').dataset.code === 'invalid_credentials'",
            WAIT,
            "the wrong current password",
        )
        .await;
    assert_eq!(console.eval(&visible("console")).await, true);
    console.screenshot("operator-console-password").await;

    console
        .eval("(document.querySelector('[data-testid=password-current]').value = '', true)")
        .await;
    console.type_into("password-current", "olga-password").await;
    console.click("password-submit").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=message]').dataset.code === 'password_changed'",
            WAIT,
            "the change of password",
        )
        .await;
    console.wait_for_state("live", WAIT).await;
    assert_eq!(console.eval(&visible("console")).await, true);
    assert_eq!(console.eval(&visible("password-panel")).await, false);
    let new_token = console
        .eval("sessionStorage.getItem('nextup.operator.token.clinic')")
        .await;
    assert_ne!(new_token, old_token);
    assert!(new_token.is_string());
    app.get("/api/v1/tenants/clinic/counters", Some(&site.operator))
        .await
        .expect_error(401, "token_revoked");

    // The new session works: a call, with the token the console signed in with by itself.
    app.issue(&site, 0).await;
    console
        .wait_for(
            "!!document.querySelector('[data-testid=waiting-list] [data-code=A001]')",
            WAIT,
            "A001 live in the console",
        )
        .await;
    console.click("call-next").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.code === 'A001'",
            WAIT,
            "A001 called",
        )
        .await;

    // Signed out, the old password is refused and the new one lets olga in.
    console
        .eval("(document.getElementById('logout').click(), true)")
        .await;
    console
        .eval("(document.querySelector('[data-testid=login-username]').value = '', true)")
        .await;
    console.type_into("login-username", "olga").await;
    console.type_into("login-password", "olga-password").await;
    console
        .eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    console
        .wait_for(
            "document.querySelector('[data-testid=login-error]').dataset.code === 'invalid_credentials'",
            WAIT,
            "the old password refused",
        )
        .await;
    console
        .eval("(document.querySelector('[data-testid=login-password]').value = '', true)")
        .await;
    console
        .type_into("login-password", "olga-new-password")
        .await;
    console
        .eval("(document.querySelector('[data-testid=login-submit]').requestSubmit(), true)")
        .await;
    console
        .wait_for(
            &visible("console"),
            WAIT,
            "the console with the new password",
        )
        .await;
}
