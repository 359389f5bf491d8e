//! Issue 18, item 5: anonymous issuing cannot grow a service's queue without bound
//! (contract §4: 409 `queue_full` at `PUBLIC_QUEUE_LIMIT` waiting tickets). Operators may
//! still issue.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;

fn tickets(site: &Site) -> String {
    format!("/api/v1/tenants/{}/tickets", site.slug)
}

async fn anonymous_issue(app: &TestApp, site: &Site, service: usize) -> Reply {
    app.post(
        &tickets(site),
        None,
        json!({ "service_id": site.services[service] }),
    )
    .await
}

async fn waiting_in(app: &TestApp, service: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from tickets where service_id = $1::uuid and status = 'waiting'",
    )
    .bind(service)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn anonymous_issuing_stops_at_the_limit_per_service_and_operators_still_issue() {
    let app = TestApp::spawn_with(|c| c.public_queue_limit = 3).await;
    let site = app.site("clinic", 2, 1).await;
    for _ in 0..3 {
        anonymous_issue(&app, &site, 0).await.expect(201);
    }
    let full = anonymous_issue(&app, &site, 0).await;
    assert!(
        full.raw.contains("3"),
        "the message names the limit: {}",
        full.raw
    );
    full.expect_error(409, "queue_full");
    // Refused means nothing happened: no ticket, no number, no change.
    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], 3);
    assert_eq!(queue["services"][0]["waiting"], 3);

    // Another service has a queue of its own.
    anonymous_issue(&app, &site, 1).await.expect(201);

    // A call frees a place, and the next anonymous ticket takes it, with the next number.
    app.call_next(&site, 0).await.expect(200);
    let taken = anonymous_issue(&app, &site, 0).await.expect(201);
    assert_eq!(taken["code"], "A004");
    anonymous_issue(&app, &site, 0)
        .await
        .expect_error(409, "queue_full");

    // Operators are not held to the limit.
    let by_operator = app
        .post(
            &tickets(&site),
            Some(&site.operator),
            json!({ "service_id": site.services[0] }),
        )
        .await
        .expect(201);
    assert_eq!(by_operator["code"], "A005");
    assert_eq!(waiting_in(&app, &site.services[0]).await, 4);
    anonymous_issue(&app, &site, 0)
        .await
        .expect_error(409, "queue_full");
}

#[actix_web::test]
async fn concurrent_anonymous_issues_never_pass_the_limit() {
    let app = TestApp::spawn_with(|c| c.public_queue_limit = 5).await;
    let site = app.site("clinic", 1, 1).await;
    let replies = join_all((0..20).map(|_| anonymous_issue(&app, &site, 0))).await;
    let mut issued = 0;
    for reply in replies {
        match reply.status {
            201 => issued += 1,
            _ => reply.expect_error(409, "queue_full"),
        }
    }
    assert_eq!(issued, 5);
    assert_eq!(waiting_in(&app, &site.services[0]).await, 5);
    assert_eq!(app.queue(&site).await["services"][0]["waiting"], 5);
}

#[actix_web::test]
async fn a_refused_issue_with_an_idempotency_key_is_answered_the_same_again() {
    let app = TestApp::spawn_with(|c| c.public_queue_limit = 1).await;
    let site = app.site("clinic", 1, 1).await;
    anonymous_issue(&app, &site, 0).await.expect(201);
    let path = tickets(&site);
    let keyed = || {
        app.send(
            actix_web::http::Method::POST,
            &path,
            None,
            &[("Idempotency-Key", "kiosk-1-press-2")],
            Some(
                json!({ "service_id": site.services[0] })
                    .to_string()
                    .into_bytes(),
            ),
        )
    };
    keyed().await.expect_error(409, "queue_full");
    let again = keyed().await;
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    again.expect_error(409, "queue_full");
}
