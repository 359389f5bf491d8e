use actix_web::http::Method;
use serde_json::Value;

use crate::helpers::*;

fn events_path(site: &Site, since: i64) -> String {
    format!("/api/v1/tenants/{}/events?since={since}", site.slug)
}

#[actix_web::test]
async fn every_change_is_one_event_with_the_next_seq() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let empty = app.get(&events_path(&site, 0), None).await.expect(200);
    assert_eq!(empty["seq"], 0, "a new tenant is at seq 0");
    assert_eq!(empty["events"], Value::Array(vec![]));

    let ticket = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &ticket, "recall").await.expect(200);
    app.act(&site, &ticket, "start").await.expect(200);
    app.act(&site, &ticket, "finish").await.expect(200);
    // A failed action and admin changes take no seq.
    app.act(&site, &ticket, "finish")
        .await
        .expect_error(409, "invalid_transition");
    app.post(
        &format!("/api/v1/tenants/{}/counters", site.slug),
        Some(&site.admin),
        serde_json::json!({ "name": "Desk 9" }),
    )
    .await
    .expect(201);

    let all = app.get(&events_path(&site, 0), None).await.expect(200);
    assert_eq!(all["seq"], 5);
    let messages = all["events"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        10,
        "a ticket_update and a queue_update per change"
    );
    let expected = [
        ("issued", Value::Null, "waiting"),
        ("called", "waiting".into(), "called"),
        ("recalled", "called".into(), "called"),
        ("started", "called".into(), "serving"),
        ("finished", "serving".into(), "done"),
    ];
    for (i, (action, previous, status)) in expected.iter().enumerate() {
        let update = &messages[2 * i];
        let queue = &messages[2 * i + 1];
        let seq = i as u64 + 1;
        assert_eq!(update["type"], "ticket_update");
        assert_eq!(update["seq"], seq);
        assert!(update["ts"].is_string());
        assert_eq!(update["data"]["action"], *action);
        assert_eq!(update["data"]["previous_status"], *previous);
        assert_eq!(update["data"]["ticket"]["status"], *status);
        assert_eq!(update["data"]["ticket"]["id"], ticket["id"]);
        assert_eq!(queue["type"], "queue_update");
        assert_eq!(queue["seq"], seq);
        assert_eq!(queue["data"]["services"][0]["code"], "A");
    }
    assert_eq!(messages[1]["data"]["services"][0]["waiting"], 1);
    assert_eq!(messages[3]["data"]["services"][0]["waiting"], 0);

    // since=N gives exactly what came after N.
    let tail = app.get(&events_path(&site, 3), None).await.expect(200);
    let seqs: Vec<_> = tail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 4, 5, 5]);
    let none = app.get(&events_path(&site, 5), None).await.expect(200);
    assert_eq!(none["events"], Value::Array(vec![]));
}

#[actix_web::test]
async fn since_beyond_the_current_seq_is_gone() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await;
    app.get(&events_path(&site, 2), None)
        .await
        .expect_error(410, "since_unavailable");
    app.get(&events_path(&site, -1), None)
        .await
        .expect_error(410, "since_unavailable");
    app.get(&format!("/api/v1/tenants/{}/events", site.slug), None)
        .await
        .expect_error(400, "invalid_query");
}

#[actix_web::test]
async fn the_queue_etag_changes_exactly_with_the_seq() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let path = format!("/api/v1/tenants/{}/queue", site.slug);
    let first = app.get(&path, None).await;
    assert_eq!(first.status, 200);
    let tag = first.header("ETag").expect("an ETag").to_owned();
    assert_eq!(first.body["seq"], 0);
    assert_eq!(first.body["tenant"]["slug"], "clinic");

    let not_modified = app
        .send(
            Method::GET,
            &path,
            None,
            &[("If-None-Match", tag.as_str())],
            None,
        )
        .await;
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.raw.is_empty());
    assert_eq!(not_modified.header("ETag"), Some(tag.as_str()));

    // Admin changes take no seq: same tag.
    app.post(
        &format!("/api/v1/tenants/{}/counters", site.slug),
        Some(&site.admin),
        serde_json::json!({ "name": "Desk 2" }),
    )
    .await
    .expect(201);
    assert_eq!(
        app.get(&path, None).await.header("ETag"),
        Some(tag.as_str())
    );

    app.issue(&site, 0).await;
    let changed = app
        .send(
            Method::GET,
            &path,
            None,
            &[("If-None-Match", tag.as_str())],
            None,
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("ETag"), Some(tag.as_str()));
    assert_eq!(changed.body["seq"], 1);
    assert_eq!(changed.body["waiting"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn the_queue_lists_called_tickets_most_recent_call_first() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 3).await;
    for _ in 0..4 {
        app.issue(&site, 0).await;
    }
    for counter in 0..3 {
        app.call_next(&site, counter).await.expect(200);
    }
    let queue = app.queue(&site).await;
    let called: Vec<_> = queue["called"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert_eq!(called, ["A003", "A002", "A001"]);
    assert_eq!(queue["called"][0]["counter"]["name"], "Desk 3");
    assert_eq!(queue["waiting"][0]["code"], "A004");
    assert_eq!(queue["services"][0]["waiting"], 1);
}

#[actix_web::test]
async fn a_since_more_than_1000_changes_behind_is_refused_like_a_pruned_one() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await;
    // 1,500 changes in the log, without making them one by one: copies of the first.
    sqlx::query(
        "insert into events (tenant_id, seq, action, previous_status, ticket_id, ticket, queue, created_at)
         select tenant_id, g, action, previous_status, ticket_id, ticket, queue, created_at
           from events, generate_series(2, 1500) g where seq = 1",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("update event_sequences set last_seq = 1500")
        .execute(&app.pool)
        .await
        .unwrap();

    app.get("/api/v1/tenants/clinic/events?since=0", None)
        .await
        .expect_error(410, "since_unavailable");
    let within = app
        .get("/api/v1/tenants/clinic/events?since=500", None)
        .await
        .expect(200);
    assert_eq!(within["seq"], 1500);
    assert_eq!(within["events"].as_array().unwrap().len(), 2 * 1000);
    assert_eq!(within["events"][0]["seq"], 501);
}
