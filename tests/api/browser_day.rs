//! The pages and the business day (contract §6 and §8), in a real headless Chromium against
//! the real server. Screenshots go to `target/screenshots/`.

use std::time::{Duration, Instant};

use actix_web::http::Method;
use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};

use crate::browser::{Page, WAIT, launch, operator_console};
use crate::helpers::*;

/// The codes the display has announced (chime and speech), in order.
const ANNOUNCED: &str = "window.nextupAnnouncements.map((a) => a.code)";

/// The codes of the display's "last calls", top to bottom.
const RECENT: &str = "[...document.querySelectorAll('[data-testid=recent-calls] [data-code]')].map((e) => e.dataset.code)";

/// Call-next to a counter, from the given services only.
async fn call_from(app: &TestApp, site: &Site, counter: usize, service: usize) -> Value {
    app.post(
        &format!(
            "/api/v1/tenants/{}/counters/{}/call",
            site.slug, site.counters[counter]
        ),
        Some(&site.operator),
        json!({ "service_ids": [site.services[service]] }),
    )
    .await
    .expect(200)
}

async fn patch_settings(app: &TestApp, site: &Site, body: Value) -> Value {
    app.send(
        Method::PATCH,
        &format!("/api/v1/tenants/{}/settings", site.slug),
        Some(&site.admin),
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
    .expect(200)
}

fn visible(testid: &str) -> String {
    format!("!!document.querySelector('[data-testid={testid}]')?.checkVisibility()")
}

#[actix_web::test]
async fn the_phone_page_of_an_expired_ticket_says_the_day_closed() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let ticket = app.issue(&site, 0).await;
    let id = ticket["id"].as_str().unwrap().to_owned();
    let path = format!("/t/clinic/ticket/{id}?lang=en");
    let browser = launch().await;
    let phone = Page::open(&browser, app.url(&path), (390, 844)).await;
    phone
        .wait_for(
            "document.querySelector('[data-testid=ticket-status]')?.dataset.status === 'waiting'",
            WAIT,
            "the waiting ticket",
        )
        .await;

    // Close the day: the phone page follows the ticket live.
    let close = app
        .post(
            "/api/v1/tenants/clinic/day/close",
            Some(&site.admin),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(close["expired"], 1);
    phone
        .wait_for(
            "document.querySelector('[data-testid=ticket-status]')?.dataset.status === 'expired'",
            WAIT,
            "the expired ticket",
        )
        .await;
    let finished = phone
        .eval("document.getElementById('finished').textContent")
        .await;
    assert!(
        finished
            .as_str()
            .unwrap()
            .starts_with("The day closed before your ticket was called"),
        "{finished}"
    );
    assert_eq!(phone.eval(&visible("ticket-ahead")).await, false);
    phone.screenshot("ticket-phone-expired").await;
    phone
        .eval("(document.querySelector('.lang-button[lang=\"pt-BR\"]').click(), true)")
        .await;
    let finished = phone
        .eval("document.getElementById('finished').textContent")
        .await;
    assert!(
        finished.as_str().unwrap().contains("expediente"),
        "{finished}"
    );
}

#[actix_web::test]
async fn a_closed_kiosk_says_when_the_site_opens_and_comes_back_by_itself() {
    const ZONE: &str = "America/Sao_Paulo";
    let app = TestApp::spawn().await;
    let site = app.site_in("clinic", ZONE, 2, 1).await;
    let browser = launch().await;
    // One kiosk asks every second whether the site is open; the other only every hour, so it
    // learns of the closing from its next ticket.
    let kiosk = Page::open_in_zone(
        &browser,
        app.url("/t/clinic/totem?lang=pt-BR&open_check_secs=1"),
        (1080, 1920),
        Some(ZONE),
    )
    .await;
    let late = Page::open_in_zone(
        &browser,
        app.url("/t/clinic/totem?lang=en&open_check_secs=3600"),
        (1080, 1920),
        Some(ZONE),
    )
    .await;
    let display = Page::open_in_zone(
        &browser,
        app.url("/t/clinic/display?lang=en&open_check_secs=1"),
        (1920, 1080),
        Some(ZONE),
    )
    .await;
    for page in [&kiosk, &late] {
        page.wait_for(&visible("service-A"), WAIT, "the services")
            .await;
    }
    display.wait_for_state("live", WAIT).await;
    assert_eq!(display.eval(&visible("closed-state")).await, false);

    // Open one hour a day, starting two hours from now (local time): closed now.
    let local = Utc::now().with_timezone(&chrono_tz::America::Sao_Paulo);
    let start = (local.hour() + 2) % 24;
    let end = if start == 23 {
        "24:00".to_owned()
    } else {
        format!("{:02}:00", start + 1)
    };
    let range = json!([[format!("{start:02}:00"), end]]);
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let hours: serde_json::Map<String, Value> = days
        .iter()
        .map(|day| ((*day).to_owned(), range.clone()))
        .collect();
    patch_settings(&app, &site, json!({ "opening_hours": hours })).await;
    let services = app
        .get("/api/v1/tenants/clinic/services", None)
        .await
        .expect(200);
    assert_eq!(services["open"], false);
    let opens_at: DateTime<Utc> = services["opens_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        opens_at
            .with_timezone(&chrono_tz::America::Sao_Paulo)
            .hour(),
        start
    );

    kiosk
        .wait_for(&visible("closed"), WAIT, "the closed kiosk")
        .await;
    assert_eq!(kiosk.eval(&visible("services")).await, false);
    let opens = kiosk.text("closed-opens").await;
    assert!(
        opens.starts_with("Abre") && opens.contains(&format!("{start:02}:00")),
        "the opening in Portuguese, local time: {opens}"
    );
    assert!(kiosk.text("closed").await.contains("Fechado"));
    kiosk.screenshot("totem-closed").await;
    display
        .wait_for(&visible("closed-state"), WAIT, "the display's closed note")
        .await;
    let note = display.text("closed-state").await;
    assert!(
        note.starts_with("Closed") && note.contains("Opens"),
        "{note}"
    );
    display.screenshot("display-closed").await;

    // The late kiosk still offers services; a ticket taken there is refused as closed and
    // the kiosk says when the site opens.
    assert_eq!(late.eval(&visible("services")).await, true);
    late.click("service-A").await;
    late.wait_for(&visible("closed"), WAIT, "closed after a refused ticket")
        .await;
    assert!(late.text("closed-opens").await.starts_with("Opens"));
    assert_eq!(late.eval(&visible("ticket-view")).await, false);
    assert_eq!(app.queue(&site).await["waiting"], json!([]));

    // Always open again: the kiosk and the display come back by themselves; the late kiosk
    // when its connection comes back.
    patch_settings(&app, &site, json!({ "opening_hours": null })).await;
    kiosk
        .wait_for(&visible("service-A"), WAIT, "the services again")
        .await;
    assert_eq!(kiosk.eval(&visible("closed")).await, false);
    display
        .wait_for(
            &format!("!{}", visible("closed-state")),
            WAIT,
            "the display open again",
        )
        .await;
    late.eval("(window.nextupLive.reconnectNow(), true)").await;
    late.wait_for(
        &visible("service-A"),
        WAIT,
        "the services after reconnecting",
    )
    .await;
    kiosk.click("service-A").await;
    kiosk
        .wait_for(
            "document.querySelector('[data-testid=ticket-code]')?.textContent.trim() === 'A001'",
            WAIT,
            "a ticket once open",
        )
        .await;
}

#[actix_web::test]
async fn a_room_display_shows_and_announces_only_its_services_calls() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 3).await;
    // Before the screen opens: B001 is called (so in its first snapshot), A001 and B002 wait.
    app.issue(&site, 1).await;
    let b001 = call_from(&app, &site, 0, 1).await;
    assert_eq!(b001["code"], "B001");
    app.issue(&site, 0).await;
    app.issue(&site, 1).await;

    let browser = launch().await;
    let display = Page::open(
        &browser,
        app.url("/t/clinic/display?services=A&lang=en"),
        (1920, 1080),
    )
    .await;
    display.wait_for_state("live", WAIT).await;
    display.click("enable-sound").await;
    display
        .wait_for(
            "document.querySelector('[data-testid=waiting-A]')?.dataset.count === '1'",
            WAIT,
            "service A's queue",
        )
        .await;
    assert_eq!(
        display
            .eval("!!document.querySelector('[data-testid=waiting-B]')")
            .await,
        false,
        "service B's queue is another room's"
    );
    assert_eq!(
        display.text("current-code").await,
        "—",
        "B001's call is not this room's"
    );
    let filter = display.text("display-filter").await;
    assert!(
        filter.contains("A · Service A") && !filter.contains("Service B"),
        "{filter}"
    );

    // Live: B002 is called, then A001. Only A001 shows and sounds, within 2 s.
    let b002 = call_from(&app, &site, 1, 1).await;
    assert_eq!(b002["code"], "B002");
    let a001 = call_from(&app, &site, 2, 0).await;
    let called_at = Instant::now();
    display
        .wait_for(
            "document.querySelector('[data-testid=current-code]')?.textContent.trim() === 'A001'",
            Duration::from_secs(2),
            "A001 on the display within 2 s",
        )
        .await;
    assert!(called_at.elapsed() <= Duration::from_secs(2));
    assert_eq!(display.text("current-counter").await, "Desk 3");
    display
        .wait_for(
            "window.nextupAnnouncements.length > 0",
            Duration::from_secs(2),
            "A001 announced",
        )
        .await;
    // B002's change came first (seq order), so it was handled before A001's.
    assert_eq!(display.eval(ANNOUNCED).await, json!(["A001"]));
    assert_eq!(display.eval(RECENT).await, json!([]));

    // Recalls: B002's is not announced here, A001's is.
    app.act(&site, &b002, "recall").await.expect(200);
    app.act(&site, &a001, "recall").await.expect(200);
    display
        .wait_for(
            "window.nextupAnnouncements.length >= 2",
            WAIT,
            "the second announcement",
        )
        .await;
    assert_eq!(display.eval(ANNOUNCED).await, json!(["A001", "A001"]));

    // A plain display still shows every room's calls.
    let hall = Page::open(&browser, app.url("/t/clinic/display?lang=en"), (1920, 1080)).await;
    hall.wait_for_state("live", WAIT).await;
    hall.wait_for(
        &format!("{RECENT}.includes('B002') && {RECENT}.includes('B001')"),
        WAIT,
        "every service's calls",
    )
    .await;
    assert_eq!(
        hall.eval("document.querySelector('[data-testid=display-notes]').hidden")
            .await,
        true,
        "no filter, nothing to say"
    );
    display.screenshot("display-room-a").await;
}

#[actix_web::test]
async fn the_console_lists_the_days_missed_tickets_and_reactivates_one() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await; // A001
    let a002 = app.issue(&site, 0).await;
    let a001 = app.call_next(&site, 0).await.expect(200);
    assert_eq!(a001["code"], "A001");
    app.act(&site, &a001, "no-show").await.expect(200);

    let browser = launch().await;
    let console = operator_console(&app.base, &browser, &site, 0).await;
    let missed = |code: &str, status: &str| {
        format!(
            "!!document.querySelector('[data-testid=missed-list] [data-code={code}][data-status={status}]')"
        )
    };
    console
        .wait_for(&missed("A001", "no_show"), WAIT, "A001 missed")
        .await;

    // Live: A002 is cancelled while the console watches.
    app.act(&site, &a002, "cancel").await.expect(200);
    console
        .wait_for(&missed("A002", "cancelled"), WAIT, "A002 cancelled")
        .await;
    assert_eq!(
        console
            .eval("document.querySelectorAll('[data-testid=waiting-list] [data-code]').length")
            .await,
        0
    );
    console.screenshot("operator-console-missed").await;

    console.click("reactivate-A001").await;
    console
        .wait_for(
            "!!document.querySelector('[data-testid=waiting-list] [data-code=A001]')",
            WAIT,
            "A001 waiting again",
        )
        .await;
    assert_eq!(console.eval(&missed("A001", "no_show")).await, false);
    assert_eq!(console.eval(&missed("A002", "cancelled")).await, true);
    let queue = app.queue(&site).await;
    assert_eq!(queue["waiting"][0]["code"], "A001");
    assert_eq!(queue["waiting"][0]["created_at"], a001["created_at"]);

    // Which ticket call-next would take: shown when the server answers the preview
    // (GET …/counters/{id}/next), hidden otherwise.
    let preview = console
        .wait_for(
            "['shown', 'unavailable'].includes(document.querySelector('[data-testid=next-preview]').dataset.state) \
             && document.querySelector('[data-testid=next-preview]').dataset.state",
            WAIT,
            "the call-next preview to answer",
        )
        .await;
    if preview == "shown" {
        console
            .wait_for(
                "document.querySelector('[data-testid=next-preview]').dataset.code === 'A001'",
                WAIT,
                "A001 as the next ticket",
            )
            .await;
        // With one call allowed, the recall button warns that it is the last call, and the
        // recall marks the ticket missed again.
        patch_settings(&app, &site, json!({ "max_calls": 1 })).await;
    } else {
        assert_eq!(
            console
                .eval("document.querySelector('[data-testid=next-preview]').hidden")
                .await,
            true
        );
    }
    console.click("call-next").await;
    console
        .wait_for(
            "document.querySelector('[data-testid=current-ticket]')?.dataset.code === 'A001'",
            WAIT,
            "A001 called",
        )
        .await;
    if preview == "shown" {
        console
            .wait_for(
                "document.querySelector('[data-testid=recall]').dataset.lastCall === 'true'",
                WAIT,
                "the last-call warning",
            )
            .await;
        console.screenshot("operator-console-last-call").await;
        console.click("recall").await;
        console
            .wait_for(
                &missed("A001", "no_show"),
                WAIT,
                "A001 missed after its last call",
            )
            .await;
    }
}
