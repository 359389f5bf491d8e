use chrono::TimeZone;
use serde_json::{Value, json};

use crate::helpers::*;

fn codes(tickets: &Value) -> Vec<String> {
    tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn priority_tickets_are_called_first_then_the_oldest() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    app.issue(&site, 0).await; // A001
    app.issue(&site, 1).await; // B001
    app.issue_priority(&site, 1).await; // B002 (priority)
    app.issue(&site, 0).await; // A002
    app.issue_priority(&site, 0).await; // A003 (priority)

    let queue = app.queue(&site).await;
    assert_eq!(
        codes(&queue["waiting"]),
        ["B002", "A003", "A001", "B001", "A002"]
    );

    let mut called = Vec::new();
    for _ in 0..5 {
        let ticket = app.call_next(&site, 0).await.expect(200);
        called.push(ticket["code"].as_str().unwrap().to_owned());
        app.act(&site, &ticket, "cancel").await.expect(200);
    }
    assert_eq!(called, ["B002", "A003", "A001", "B001", "A002"]);
    app.call_next(&site, 0).await.expect(204);
}

#[actix_web::test]
async fn call_next_takes_only_the_requested_services() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 3, 1).await;
    app.issue(&site, 0).await; // A001
    app.issue(&site, 1).await; // B001
    app.issue(&site, 2).await; // C001
    let call = |services: Value| {
        let path = format!(
            "/api/v1/tenants/{}/counters/{}/call",
            site.slug, site.counters[0]
        );
        let token = site.operator.clone();
        let app = &app;
        async move {
            app.post(&path, Some(&token), json!({ "service_ids": services }))
                .await
        }
    };
    let ticket = call(json!([site.services[2], site.services[1]]))
        .await
        .expect(200);
    assert_eq!(ticket["code"], "B001");
    app.act(&site, &ticket, "finish")
        .await
        .expect_error(409, "invalid_transition");
    app.act(&site, &ticket, "start").await.expect(200);
    app.act(&site, &ticket, "finish").await.expect(200);
    let ticket = call(json!([site.services[2]])).await.expect(200);
    assert_eq!(ticket["code"], "C001");
    app.act(&site, &ticket, "cancel").await.expect(200);
    // Nothing left in C: 204, and A001 is still waiting.
    let empty = call(json!([site.services[2]])).await;
    assert_eq!(empty.status, 204, "{}", empty.raw);
    assert!(empty.raw.is_empty());
    assert_eq!(codes(&app.queue(&site).await["waiting"]), ["A001"]);
    call(json!([])).await.expect_error(422, "invalid_input");
    call(json!([uuid::Uuid::new_v4()]))
        .await
        .expect_error(404, "service_not_found");
}

#[actix_web::test]
async fn call_next_checks_the_counter_then_its_ticket_then_the_services() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let elsewhere = app.site("office", 1, 1).await;
    let call = |counter: Value, services: Value| {
        let path = format!(
            "/api/v1/tenants/{}/counters/{}/call",
            site.slug,
            counter.as_str().unwrap()
        );
        let token = site.operator.clone();
        let app = &app;
        async move {
            app.post(&path, Some(&token), json!({ "service_ids": services }))
                .await
        }
    };
    let desk = json!(site.counters[0]);
    let unknown = json!([site.services[0], uuid::Uuid::new_v4()]);
    // Another tenant's service is as unknown here as a made-up one.
    let foreign = json!([elsewhere.services[0]]);
    app.issue(&site, 0).await;
    call(json!(uuid::Uuid::new_v4()), unknown.clone())
        .await
        .expect_error(404, "counter_not_found");
    call(desk.clone(), unknown.clone())
        .await
        .expect_error(404, "service_not_found");
    call(desk.clone(), foreign)
        .await
        .expect_error(404, "service_not_found");
    // Nothing was called by the refused calls.
    assert_eq!(
        app.queue(&site).await["waiting"].as_array().unwrap().len(),
        1
    );
    call(desk.clone(), json!([site.services[0], site.services[0]]))
        .await
        .expect(200);
    call(desk.clone(), unknown)
        .await
        .expect_error(409, "counter_busy");
}

#[actix_web::test]
async fn a_busy_counter_refuses_a_second_call_until_its_ticket_is_done() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 2).await;
    let first = app.issue(&site, 0).await;
    let second = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    // A double click: the same counter calls again.
    app.call_next(&site, 0)
        .await
        .expect_error(409, "counter_busy");
    let specific = format!(
        "/api/v1/tenants/{}/tickets/{}/call",
        site.slug,
        second["id"].as_str().unwrap()
    );
    app.post(
        &specific,
        Some(&site.operator),
        json!({ "counter_id": site.counters[0] }),
    )
    .await
    .expect_error(409, "counter_busy");
    // Still busy while serving.
    app.act(&site, &first, "start").await.expect(200);
    app.call_next(&site, 0)
        .await
        .expect_error(409, "counter_busy");
    // The other counter is free.
    assert_eq!(
        app.call_next(&site, 1).await.expect(200)["id"],
        second["id"]
    );
    app.act(&site, &first, "finish").await.expect(200);
    // Free again: nothing waiting now.
    app.call_next(&site, 0).await.expect(204);
}

#[actix_web::test]
async fn a_specific_waiting_ticket_can_be_called_out_of_order() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let first = app.issue(&site, 0).await;
    let third = {
        app.issue(&site, 0).await;
        app.issue(&site, 0).await
    };
    let path = format!(
        "/api/v1/tenants/{}/tickets/{}/call",
        site.slug,
        third["id"].as_str().unwrap()
    );
    let called = app
        .post(
            &path,
            Some(&site.operator),
            json!({ "counter_id": site.counters[0] }),
        )
        .await
        .expect(200);
    assert_eq!(called["code"], "A003");
    assert_eq!(called["status"], "called");
    assert_eq!(called["counter"]["id"], site.counters[0].as_str());
    // The others keep their order.
    assert_eq!(codes(&app.queue(&site).await["waiting"]), ["A001", "A002"]);
    let unknown_counter = app
        .post(
            &format!(
                "/api/v1/tenants/{}/tickets/{}/call",
                site.slug,
                first["id"].as_str().unwrap()
            ),
            Some(&site.operator),
            json!({ "counter_id": uuid::Uuid::new_v4() }),
        )
        .await;
    unknown_counter.expect_error(404, "counter_not_found");
}

#[actix_web::test]
async fn ahead_counts_the_tickets_of_the_same_service_called_before() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let a1 = app.issue(&site, 0).await;
    let b1 = app.issue(&site, 1).await;
    let a2 = app.issue(&site, 0).await;
    let a3 = app.issue_priority(&site, 0).await;
    let a4 = app.issue(&site, 0).await;
    assert_eq!(a1["ahead"], 0);
    assert_eq!(b1["ahead"], 0);
    assert_eq!(a2["ahead"], 1);
    assert_eq!(
        a3["ahead"], 0,
        "a priority ticket goes to the front of its service"
    );

    let ahead_of = |t: &Value| {
        let path = format!(
            "/api/v1/tenants/{}/tickets/{}",
            site.slug,
            t["id"].as_str().unwrap()
        );
        let app = &app;
        async move { app.get(&path, None).await.expect(200)["ahead"].clone() }
    };
    assert_eq!(ahead_of(&a1).await, 1);
    assert_eq!(ahead_of(&a2).await, 2);
    assert_eq!(ahead_of(&a4).await, 3);
    assert_eq!(ahead_of(&b1).await, 0);

    let queue = app.queue(&site).await;
    let aheads: Vec<_> = queue["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["code"].as_str().unwrap().to_owned(),
                t["ahead"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        aheads,
        [
            ("A003".into(), 0),
            ("A001".into(), 1),
            ("B001".into(), 0),
            ("A002".into(), 2),
            ("A004".into(), 3)
        ]
    );
    // Without history, each person ahead counts for the default 300 s at one desk.
    assert_eq!(queue["services"][0]["waiting"], 4);
    assert_eq!(queue["services"][0]["estimated_wait_secs"], 1200);
    for t in queue["waiting"].as_array().unwrap() {
        assert_eq!(
            t["estimated_wait_secs"].as_u64().unwrap(),
            t["ahead"].as_u64().unwrap() * 300
        );
    }
}

#[actix_web::test]
async fn numbers_restart_at_local_midnight_of_the_tenant() {
    let app = TestApp::spawn().await;
    // São Paulo is UTC-3: local midnight is 03:00 UTC.
    let site = app.site_in("clinic", "America/Sao_Paulo", 2, 1).await;
    app.clock
        .jump_to(chrono::Utc.with_ymd_and_hms(2026, 5, 10, 2, 58, 0).unwrap());
    assert_eq!(app.issue(&site, 0).await["code"], "A001");
    assert_eq!(app.issue(&site, 0).await["code"], "A002");
    assert_eq!(app.issue(&site, 1).await["code"], "B001");
    // 02:59:59 UTC is still the 9th in São Paulo even though it is the 10th in UTC.
    app.clock.jump_to(
        chrono::Utc
            .with_ymd_and_hms(2026, 5, 10, 2, 59, 59)
            .unwrap(),
    );
    assert_eq!(app.issue(&site, 0).await["code"], "A003");
    app.clock
        .jump_to(chrono::Utc.with_ymd_and_hms(2026, 5, 10, 3, 0, 1).unwrap());
    assert_eq!(app.issue(&site, 0).await["code"], "A001");
    assert_eq!(app.issue(&site, 1).await["code"], "B001");
    assert_eq!(app.issue(&site, 0).await["code"], "A002");
}
