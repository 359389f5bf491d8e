//! The pages and the business day (contract §6 and §8), in a real headless Chromium against
//! the real server. Screenshots go to `target/screenshots/`.

use serde_json::json;

use crate::browser::{Page, WAIT, launch};
use crate::helpers::*;

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

    // Close the day: with the endpoint, live; on a server without it, by setting the status
    // the close would set, and opening the page again.
    let close = app
        .post(
            "/api/v1/tenants/clinic/day/close",
            Some(&site.admin),
            json!({}),
        )
        .await;
    let phone = if close.status == 200 {
        assert_eq!(close.body["expired"], 1);
        phone
    } else {
        assert_eq!(close.status, 404, "{}", close.raw);
        sqlx::query("update tickets set status = 'expired' where id = $1::uuid")
            .bind(&id)
            .execute(&app.pool)
            .await
            .unwrap();
        // Another change, so that the queue snapshots (kept per seq) are read afresh.
        app.issue(&site, 0).await;
        Page::open(&browser, app.url(&path), (390, 844)).await
    };
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
