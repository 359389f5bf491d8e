//! The call policy of contract §8: the recall limit (`max_calls`).

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::WsClient;

async fn patch_settings(app: &TestApp, site: &Site, settings: Value) -> Value {
    app.send(
        Method::PATCH,
        &format!("/api/v1/tenants/{}/settings", site.slug),
        Some(&site.admin),
        &[],
        Some(settings.to_string().into_bytes()),
    )
    .await
    .expect(200)
}

#[actix_web::test]
async fn recalls_past_max_calls_mark_the_ticket_no_show() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    patch_settings(&app, &site, json!({ "max_calls": 3 })).await;
    let ticket = app.issue(&site, 0).await;
    app.issue(&site, 0).await;
    let mut console = WsClient::connect(
        &app,
        &format!("/ws/{}/operator?token={}", site.slug, site.operator),
    )
    .await;
    let (_, snapshot) = console.start().await;
    let seq = snapshot["seq"].as_i64().unwrap();

    let called = app.call_next(&site, 0).await.expect(200);
    assert_eq!(called["id"], ticket["id"]);
    for call_count in [2, 3] {
        let recalled = app.act(&site, &ticket, "recall").await.expect(200);
        assert_eq!(recalled["status"], "called");
        assert_eq!(recalled["call_count"], call_count);
    }
    // A fourth call would exceed 3: the ticket is a no-show instead.
    let gone = app.act(&site, &ticket, "recall").await.expect(200);
    assert_eq!(gone["status"], "no_show");
    assert_eq!(gone["call_count"], 3);
    assert!(gone["finished_at"].is_string());
    assert_eq!(gone["counter"], Value::Null);

    let mut updates = Vec::new();
    for _ in 0..4 {
        let update = console.next_event().await;
        assert_eq!(update["type"], "ticket_update", "{update}");
        let queue = console.next_event().await;
        assert_eq!(queue["type"], "queue_update", "{queue}");
        updates.push(update);
    }
    let actions: Vec<&Value> = updates.iter().map(|u| &u["data"]["action"]).collect();
    assert_eq!(actions, ["called", "recalled", "recalled", "no_show"]);
    let last = &updates[3];
    assert_eq!(last["seq"], seq + 4);
    assert_eq!(last["data"]["action"], "no_show");
    assert_eq!(last["data"]["previous_status"], "called");
    assert_eq!(last["data"]["ticket"]["status"], "no_show");
    assert_eq!(last["data"]["ticket"]["id"], ticket["id"]);

    // The counter is free again, and a no-show recalled is refused as any no-show is.
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "recall")
        .await
        .expect_error(409, "invalid_transition");
}

#[actix_web::test]
async fn a_max_calls_of_one_makes_the_first_recall_a_no_show_and_null_has_no_limit() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let ticket = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    for call_count in 2..=12 {
        let recalled = app.act(&site, &ticket, "recall").await.expect(200);
        assert_eq!(recalled["call_count"], call_count, "no limit by default");
    }
    // A limit set below the calls already made: the next recall is a no-show.
    patch_settings(&app, &site, json!({ "max_calls": 1 })).await;
    let gone = app.act(&site, &ticket, "recall").await.expect(200);
    assert_eq!(gone["status"], "no_show");

    let ticket = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    let gone = app.act(&site, &ticket, "recall").await.expect(200);
    assert_eq!(gone["status"], "no_show");
    assert_eq!(gone["call_count"], 1);

    patch_settings(&app, &site, json!({ "max_calls": null })).await;
    let ticket = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    let recalled = app.act(&site, &ticket, "recall").await.expect(200);
    assert_eq!(recalled["status"], "called");
    assert_eq!(recalled["call_count"], 2);
}
