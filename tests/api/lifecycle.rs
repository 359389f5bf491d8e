use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn a_ticket_goes_from_issue_to_done() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;

    let issued = app.issue(&site, 0).await;
    assert_eq!(issued["code"], "A001");
    assert_eq!(issued["status"], "waiting");
    assert_eq!(issued["call_count"], 0);
    assert_eq!(issued["ahead"], 0);
    assert!(issued["estimated_wait_secs"].is_u64());
    assert_eq!(issued["counter"], json!(null));

    let called = app.call_next(&site, 0).await.expect(200);
    assert_eq!(called["id"], issued["id"]);
    assert_eq!(called["status"], "called");
    assert_eq!(called["call_count"], 1);
    assert_eq!(called["counter"]["name"], "Desk 1");
    assert_eq!(called["operator"]["username"], "olga");
    assert!(called["called_at"].is_string());
    assert_eq!(called["ahead"], json!(null));
    assert_eq!(called["estimated_wait_secs"], json!(null));

    let recalled = app.act(&site, &issued, "recall").await.expect(200);
    assert_eq!(recalled["status"], "called");
    assert_eq!(recalled["call_count"], 2);

    let started = app.act(&site, &issued, "start").await.expect(200);
    assert_eq!(started["status"], "serving");
    assert!(started["started_at"].is_string());

    let finished = app.act(&site, &issued, "finish").await.expect(200);
    assert_eq!(finished["status"], "done");
    assert!(finished["finished_at"].is_string());
    assert_eq!(finished["created_at"], issued["created_at"]);
}

/// Brings a fresh ticket to `status` through the API and returns it.
async fn ticket_in(app: &TestApp, site: &Site, status: &str) -> serde_json::Value {
    let ticket = app.issue(site, 0).await;
    let counter = &site.counters[0];
    let id = ticket["id"].as_str().unwrap();
    let call = || async {
        app.post(
            &format!("/api/v1/tenants/{}/tickets/{id}/call", site.slug),
            Some(&site.operator),
            json!({ "counter_id": counter }),
        )
        .await
        .expect(200)
    };
    let path: &[&str] = match status {
        "waiting" => &[],
        "called" => &["call"],
        "serving" => &["call", "start"],
        "done" => &["call", "start", "finish"],
        "no_show" => &["call", "no-show"],
        "cancelled" => &["cancel"],
        other => panic!("no path to {other}"),
    };
    let mut current = ticket.clone();
    for step in path {
        current = match *step {
            "call" => call().await,
            action => app.act(site, &ticket, action).await.expect(200),
        };
    }
    assert_eq!(current["status"], status);
    current
}

#[actix_web::test]
async fn every_forbidden_transition_is_an_invalid_transition_conflict() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    // Contract §2: the actions allowed from each status; all others must be refused.
    let allowed: &[(&str, &[&str])] = &[
        ("waiting", &["call", "cancel"]),
        (
            "called",
            &["recall", "start", "no-show", "cancel", "transfer"],
        ),
        ("serving", &["finish", "transfer"]),
        ("done", &[]),
        ("no_show", &["reactivate"]),
        ("cancelled", &["reactivate"]),
    ];
    let actions = [
        "call",
        "recall",
        "start",
        "finish",
        "no-show",
        "cancel",
        "transfer",
        "reactivate",
    ];
    for (status, ok) in allowed {
        for action in actions.iter().filter(|a| !ok.contains(a)) {
            let ticket = ticket_in(&app, &site, status).await;
            let id = ticket["id"].as_str().unwrap();
            let path = format!("/api/v1/tenants/{}/tickets/{id}/{action}", site.slug);
            let body = match *action {
                "call" => json!({ "counter_id": site.counters[0] }),
                "transfer" => json!({ "service_id": site.services[1] }),
                _ => json!({}),
            };
            let reply = app.post(&path, Some(&site.operator), body).await;
            assert_eq!(reply.status, 409, "{action} from {status}: {}", reply.raw);
            assert_eq!(
                reply.body["error"]["code"], "invalid_transition",
                "{action} from {status}"
            );
            // Nothing changed.
            let after = app
                .get(&format!("/api/v1/tenants/{}/tickets/{id}", site.slug), None)
                .await
                .expect(200);
            assert_eq!(
                after["status"], *status,
                "{action} from {status} changed the ticket"
            );
            // Free the counter for the next case.
            if *status == "called" || *status == "serving" {
                let finish = if *status == "called" {
                    "cancel"
                } else {
                    "finish"
                };
                app.act(&site, &ticket, finish).await.expect(200);
            }
        }
    }
}

#[actix_web::test]
async fn reactivated_tickets_regain_their_place() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let first = app.issue(&site, 0).await;
    let second = app.issue(&site, 0).await;

    // First is called, does not show up; then comes back.
    app.call_next(&site, 0).await.expect(200);
    let gone = app.act(&site, &first, "no-show").await.expect(200);
    assert_eq!(gone["status"], "no_show");
    assert_eq!(
        app.get(
            &format!(
                "/api/v1/tenants/{}/tickets/{}",
                site.slug,
                second["id"].as_str().unwrap()
            ),
            None
        )
        .await
        .expect(200)["ahead"],
        0
    );

    let back = app.act(&site, &first, "reactivate").await.expect(200);
    assert_eq!(back["status"], "waiting");
    assert_eq!(
        back["created_at"], first["created_at"],
        "original issue time kept"
    );
    assert_eq!(back["call_count"], 0);
    assert_eq!(back["counter"], json!(null));
    assert_eq!(back["ahead"], 0, "it is first again");

    let next = app.call_next(&site, 0).await.expect(200);
    assert_eq!(
        next["id"], first["id"],
        "the reactivated ticket is called before later ones"
    );

    // A cancelled ticket can come back too.
    let cancelled = app.act(&site, &second, "cancel").await.expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    let again = app.act(&site, &second, "reactivate").await.expect(200);
    assert_eq!(again["status"], "waiting");
}

#[actix_web::test]
async fn a_transferred_ticket_waits_in_the_target_service_with_its_code_and_time() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 2).await;
    let early_b = app.issue(&site, 1).await; // B001, issued before the A ticket
    let a = app.issue(&site, 0).await; // A001
    let late_b = app.issue(&site, 1).await; // B002

    // Serve A001 at desk 1, then send it to service B.
    let path = |t: &serde_json::Value| {
        format!(
            "/api/v1/tenants/{}/tickets/{}/call",
            site.slug,
            t["id"].as_str().unwrap()
        )
    };
    app.post(
        &path(&a),
        Some(&site.operator),
        json!({ "counter_id": site.counters[0] }),
    )
    .await
    .expect(200);
    app.act(&site, &a, "start").await.expect(200);
    let transferred = app
        .post(
            &format!(
                "/api/v1/tenants/{}/tickets/{}/transfer",
                site.slug,
                a["id"].as_str().unwrap()
            ),
            Some(&site.operator),
            json!({ "service_id": site.services[1] }),
        )
        .await
        .expect(200);
    assert_eq!(transferred["status"], "waiting");
    assert_eq!(transferred["code"], "A001");
    assert_eq!(transferred["service"]["code"], "B");
    assert_eq!(transferred["created_at"], a["created_at"]);
    assert_eq!(transferred["counter"], json!(null));
    assert_eq!(
        transferred["ahead"], 1,
        "only B001, issued earlier, is ahead"
    );

    // The counter is free again, and B is served in issue order: B001, A001, B002.
    let mut called = Vec::new();
    for _ in 0..3 {
        let ticket = app.call_next(&site, 0).await.expect(200);
        called.push(ticket["code"].as_str().unwrap().to_owned());
        app.act(&site, &ticket, "no-show").await.expect(200);
    }
    assert_eq!(
        called,
        vec![
            early_b["code"].as_str().unwrap(),
            "A001",
            late_b["code"].as_str().unwrap()
        ]
    );
    assert_eq!(called[0], "B001");

    // Transfer rules: same service or unknown service refused.
    let t = app.issue(&site, 0).await;
    app.post(
        &path(&t),
        Some(&site.operator),
        json!({ "counter_id": site.counters[1] }),
    )
    .await
    .expect(200);
    let transfer = |service: serde_json::Value| {
        let url = format!(
            "/api/v1/tenants/{}/tickets/{}/transfer",
            site.slug,
            t["id"].as_str().unwrap()
        );
        let token = site.operator.clone();
        let app = &app;
        async move {
            app.post(&url, Some(&token), json!({ "service_id": service }))
                .await
        }
    };
    transfer(json!(site.services[0]))
        .await
        .expect_error(422, "same_service");
    transfer(json!(uuid::Uuid::new_v4()))
        .await
        .expect_error(404, "service_not_found");
}

#[actix_web::test]
async fn public_views_never_contain_a_customer_name() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let secret_name = "Maria Secret-Surname";
    let ticket = app
        .post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            Some(&site.operator),
            json!({ "service_id": site.services[0], "customer_name": secret_name }),
        )
        .await
        .expect(201);
    assert_eq!(
        ticket["customer_name"], secret_name,
        "operators see the name"
    );
    app.call_next(&site, 0).await.expect(200);
    let id = ticket["id"].as_str().unwrap();

    let public_reads = [
        format!("/api/v1/tenants/{}/tickets/{id}", site.slug),
        format!("/api/v1/tenants/{}/queue", site.slug),
        format!("/api/v1/tenants/{}/events?since=0", site.slug),
    ];
    for path in &public_reads {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            !reply.raw.contains("Secret-Surname"),
            "{path} leaked: {}",
            reply.raw
        );
        assert!(
            !reply.raw.contains("customer_name"),
            "{path}: {}",
            reply.raw
        );
        assert!(
            !reply.raw.contains("olga"),
            "{path} leaked the operator: {}",
            reply.raw
        );
    }
    // The operator's view of the same events has it.
    let events = app
        .get(
            &format!("/api/v1/tenants/{}/events?since=0", site.slug),
            Some(&site.operator),
        )
        .await;
    assert!(events.raw.contains("Secret-Surname"));
}
