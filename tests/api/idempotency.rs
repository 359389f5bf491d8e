use actix_web::http::Method;
use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::*;

async fn issue_with_key(app: &TestApp, site: &Site, key: &str, service: usize) -> Reply {
    app.post_keyed(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        None,
        key,
        json!({ "service_id": site.services[service] }),
    )
    .await
}

async fn count_tickets(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from tickets")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_repeated_key_replays_the_first_response_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let first = issue_with_key(&app, &site, "kiosk-1-press-42", 0).await;
    assert_eq!(first.status, 201);
    let again = issue_with_key(&app, &site, "kiosk-1-press-42", 0).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "same body");
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    assert_eq!(count_tickets(&app).await, 1);
    let seq: i64 = sqlx::query_scalar("select last_seq from event_sequences")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(seq, 1, "no second event");
    // Another key is another ticket.
    issue_with_key(&app, &site, "kiosk-1-press-43", 0)
        .await
        .expect(201);
    assert_eq!(count_tickets(&app).await, 2);
}

#[actix_web::test]
async fn a_key_reused_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    issue_with_key(&app, &site, "k1", 0).await.expect(201);
    issue_with_key(&app, &site, "k1", 1)
        .await
        .expect_error(422, "idempotency_key_reused");
    assert_eq!(count_tickets(&app).await, 1);
}

#[actix_web::test]
async fn keys_are_scoped_to_their_tenant() {
    let app = TestApp::spawn().await;
    let one = app.site("one", 1, 1).await;
    let two = app.site("two", 1, 1).await;
    let a = issue_with_key(&app, &one, "shared-key", 0)
        .await
        .expect(201);
    let b = issue_with_key(&app, &two, "shared-key", 0)
        .await
        .expect(201);
    assert_ne!(a["id"], b["id"]);
}

#[actix_web::test]
async fn ten_concurrent_requests_with_one_key_make_one_ticket() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let replies = join_all((0..10).map(|_| issue_with_key(&app, &site, "double-tap", 0))).await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    let in_progress = replies
        .iter()
        .filter(|r| r.status == 409 && r.body["error"]["code"] == "request_in_progress")
        .count();
    assert_eq!(
        created.len() + in_progress,
        10,
        "{:?}",
        replies.iter().map(|r| &r.raw).collect::<Vec<_>>()
    );
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|r| r.body == created[0].body),
        "every 201 is the same ticket"
    );
    assert_eq!(count_tickets(&app).await, 1);
}

#[actix_web::test]
async fn a_client_error_is_the_keys_answer_too() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let ticket = app.issue(&site, 0).await;
    let path = format!(
        "/api/v1/tenants/{}/tickets/{}/start",
        site.slug,
        ticket["id"].as_str().unwrap()
    );
    let start = || {
        app.send(
            Method::POST,
            &path,
            Some(&site.operator),
            &[("Idempotency-Key", "start-1")],
            None,
        )
    };
    start().await.expect_error(409, "invalid_transition");
    // Even once the ticket could start, the key keeps its first answer.
    app.call_next(&site, 0).await.expect(200);
    let replay = start().await;
    assert_eq!(replay.header("Idempotent-Replayed"), Some("true"));
    replay.expect_error(409, "invalid_transition");
    // With a fresh key it starts.
    let fresh = app
        .send(
            Method::POST,
            &path,
            Some(&site.operator),
            &[("Idempotency-Key", "start-2")],
            None,
        )
        .await
        .expect(200);
    assert_eq!(fresh["status"], "serving");
}

#[actix_web::test]
async fn an_operator_answer_is_never_replayed_to_an_anonymous_caller() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let body = json!({ "service_id": site.services[0], "customer_name": "Rita Private" });
    let path = format!("/api/v1/tenants/{}/tickets", site.slug);
    let send = |token: Option<String>| {
        let (app, path, body) = (&app, path.clone(), body.to_string().into_bytes());
        async move {
            app.send(
                Method::POST,
                &path,
                token.as_deref(),
                &[("Idempotency-Key", "desk-7")],
                Some(body),
            )
            .await
        }
    };
    let first = send(Some(site.operator.clone())).await.expect(201);
    assert_eq!(first["customer_name"], "Rita Private");
    let anonymous = send(None).await;
    assert!(!anonymous.raw.contains("Rita"), "{}", anonymous.raw);
    anonymous.expect_error(422, "idempotency_key_reused");
    assert_eq!(send(Some(site.operator.clone())).await.expect(201), first);
}
