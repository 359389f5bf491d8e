//! The business day (contract §8): settings, opening hours, closing the day by hand and by
//! itself, with one process or several.

use std::time::Duration;

use actix_web::http::Method;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::WsClient;

const WAIT: Duration = Duration::from_secs(10);

fn settings_path(site: &Site) -> String {
    format!("/api/v1/tenants/{}/settings", site.slug)
}

fn close_path(site: &Site) -> String {
    format!("/api/v1/tenants/{}/day/close", site.slug)
}

async fn patch_settings(app: &TestApp, site: &Site, body: Value) -> Reply {
    app.send(
        Method::PATCH,
        &settings_path(site),
        Some(&site.admin),
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn ticket(app: &TestApp, site: &Site, ticket: &Value) -> Value {
    let id = ticket["id"].as_str().unwrap();
    app.get(
        &format!("/api/v1/tenants/{}/tickets/{id}", site.slug),
        Some(&site.operator),
    )
    .await
    .expect(200)
}

/// Waits until the ticket has this status (the closer runs every second).
async fn wait_for_status(app: &TestApp, site: &Site, issued: &Value, status: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = ticket(app, site, issued).await;
        if now["status"] == status {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ticket {} is still {} after {WAIT:?}, expected {status}",
            issued["code"],
            now["status"]
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[actix_web::test]
async fn closing_the_day_expires_the_queue_finishes_service_and_frees_the_counters() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 3).await;
    let served = app.issue(&site, 0).await;
    let called = app.issue(&site, 0).await;
    let waiting = [app.issue(&site, 0).await, app.issue(&site, 0).await];
    app.call_next(&site, 0).await.expect(200);
    app.act(&site, &served, "start").await.expect(200);
    app.call_next(&site, 1).await.expect(200);
    let mut session = WsClient::connect(
        &app,
        &format!("/ws/{}/operator?token={}", site.slug, site.operator),
    )
    .await;
    session.start().await;

    app.post(&close_path(&site), Some(&site.operator), json!({}))
        .await
        .expect_error(403, "admin_required");
    app.post(&close_path(&site), None, json!({}))
        .await
        .expect_error(401, "missing_token");
    let closed = app
        .post(&close_path(&site), Some(&site.admin), json!({}))
        .await
        .expect(200);
    assert_eq!(closed, json!({"expired": 3, "finished": 1, "seq": 11}));

    // Each ticket is a change of its own, in issue order, with the next seqs.
    let expected = [
        (&served, "finished", "serving", "done"),
        (&called, "expired", "called", "expired"),
        (&waiting[0], "expired", "waiting", "expired"),
        (&waiting[1], "expired", "waiting", "expired"),
    ];
    for (seq, (ticket, action, previous, status)) in (8..).zip(expected) {
        let update = session.next_event().await;
        let queue = session.next_event().await;
        assert_eq!(update["type"], "ticket_update", "{update}");
        assert_eq!(update["seq"], seq);
        assert_eq!(update["data"]["action"], action);
        assert_eq!(update["data"]["previous_status"], previous);
        assert_eq!(update["data"]["ticket"]["id"], ticket["id"]);
        assert_eq!(update["data"]["ticket"]["status"], status);
        assert_eq!(queue["type"], "queue_update");
        assert_eq!(queue["seq"], seq);
    }
    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], 11);
    assert_eq!(queue["services"][0]["waiting"], 0, "{queue}");

    // The counters are free, and issuing goes on with the day's numbering.
    assert_eq!(app.call_next(&site, 0).await.status, 204);
    let later = app.issue(&site, 0).await;
    assert_eq!(later["code"], "A005");
    let later_called = app.call_next(&site, 1).await.expect(200);
    assert_eq!(later_called["id"], later["id"]);

    let again = app
        .post(&close_path(&site), Some(&site.admin), json!({}))
        .await
        .expect(200);
    assert_eq!(again, json!({"expired": 1, "finished": 0, "seq": 14}));
    // An empty day: nothing changes, the current seq.
    let empty = app
        .post(&close_path(&site), Some(&site.admin), json!({}))
        .await
        .expect(200);
    assert_eq!(empty, json!({"expired": 0, "finished": 0, "seq": 14}));
    let log = app.public_event_log(&site).await;
    assert_eq!(log["seq"], 14);
}

#[actix_web::test]
async fn settings_belong_to_admins_and_a_patch_changes_only_its_fields() {
    let app = TestApp::spawn().await;
    let site = app.site_in("clinic", "America/Sao_Paulo", 1, 1).await;
    let fresh = app
        .get(&settings_path(&site), Some(&site.admin))
        .await
        .expect(200);
    assert_eq!(
        fresh,
        json!({"timezone": "America/Sao_Paulo", "opening_hours": null, "max_calls": null, "priority_ratio": null})
    );
    app.get(&settings_path(&site), Some(&site.operator))
        .await
        .expect_error(403, "admin_required");
    app.get(&settings_path(&site), None)
        .await
        .expect_error(401, "missing_token");

    let changed = patch_settings(&app, &site, json!({"max_calls": 3}))
        .await
        .expect(200);
    assert_eq!(changed["max_calls"], 3);
    assert_eq!(changed["timezone"], "America/Sao_Paulo");
    let changed = patch_settings(
        &app,
        &site,
        json!({"opening_hours": {"mon": [["13:00", "18:00"], ["08:00", "12:00"]], "sat": [["09:00", "24:00"]]}, "priority_ratio": 2}),
    )
    .await
    .expect(200);
    assert_eq!(
        changed,
        json!({
            "timezone": "America/Sao_Paulo",
            "opening_hours": {
                "mon": [["08:00", "12:00"], ["13:00", "18:00"]],
                "tue": [], "wed": [], "thu": [], "fri": [],
                "sat": [["09:00", "24:00"]], "sun": []
            },
            "max_calls": 3,
            "priority_ratio": 2
        })
    );
    assert_eq!(
        app.get(&settings_path(&site), Some(&site.admin))
            .await
            .expect(200),
        changed
    );

    let invalid = [
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"timezone": 7}), "timezone"),
        (json!({"max_calls": 0}), "max_calls"),
        (json!({"max_calls": "3"}), "max_calls"),
        (json!({"priority_ratio": -2}), "priority_ratio"),
        (
            json!({"opening_hours": {"mon": [["18:00", "08:00"]]}}),
            "opening_hours.mon[0]",
        ),
        (
            json!({"opening_hours": {"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}}),
            "opening_hours.mon",
        ),
        (
            json!({"opening_hours": {"funday": []}}),
            "opening_hours.funday",
        ),
        (json!({"opening_hours": "always"}), "opening_hours"),
        (json!({"max_call": 3}), "max_call"),
        (json!([1]), "body"),
    ];
    for (body, field) in invalid {
        let reply = patch_settings(&app, &site, body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.raw);
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{body}: {message}"
        );
    }
    let malformed = app
        .send(
            Method::PATCH,
            &settings_path(&site),
            Some(&site.admin),
            &[],
            Some(b"{\"max_calls\":".to_vec()),
        )
        .await;
    malformed.expect_error(400, "malformed_json");
    // Nothing invalid was stored; null clears a setting.
    let cleared = patch_settings(
        &app,
        &site,
        json!({"opening_hours": null, "max_calls": null}),
    )
    .await
    .expect(200);
    assert_eq!(
        cleared,
        json!({"timezone": "America/Sao_Paulo", "opening_hours": null, "max_calls": null, "priority_ratio": 2})
    );
}

#[actix_web::test]
async fn outside_opening_hours_public_issuing_is_closed_and_operators_may_still_issue() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let day = [["08:00", "12:00"], ["13:00", "18:00"]];
    patch_settings(
        &app,
        &site,
        json!({"opening_hours": {"mon": day, "tue": day, "wed": day, "thu": day, "fri": day}}),
    )
    .await
    .expect(200);
    let services = format!("/api/v1/tenants/{}/services", site.slug);
    let tickets = format!("/api/v1/tenants/{}/tickets", site.slug);

    // Monday 2026-12-07, 20:00 UTC: closed until Tuesday 08:00.
    app.clock.jump_to(utc("2026-12-07T20:00:00Z"));
    let listed = app.get(&services, None).await.expect(200);
    assert_eq!(listed["open"], false);
    assert_eq!(
        utc(listed["opens_at"].as_str().unwrap()),
        utc("2026-12-08T08:00:00Z")
    );
    assert_eq!(listed["services"].as_array().unwrap().len(), 1);
    let refused = app
        .post(&tickets, None, json!({"service_id": site.services[0]}))
        .await;
    assert_eq!(refused.status, 409, "{}", refused.raw);
    assert_eq!(refused.body["error"]["code"], "closed");
    let by_operator = app
        .post(
            &tickets,
            Some(&site.operator),
            json!({"service_id": site.services[0]}),
        )
        .await
        .expect(201);
    assert_eq!(by_operator["status"], "waiting");

    // Lunch break: closed until 13:00 the same day.
    app.clock.jump_to(utc("2026-12-08T12:30:00Z"));
    let listed = app.get(&services, None).await.expect(200);
    assert_eq!(listed["open"], false);
    assert_eq!(
        utc(listed["opens_at"].as_str().unwrap()),
        utc("2026-12-08T13:00:00Z")
    );

    app.clock.jump_to(utc("2026-12-08T09:00:00Z"));
    let listed = app.get(&services, None).await.expect(200);
    assert_eq!(listed["open"], true);
    assert_eq!(listed["opens_at"], Value::Null);
    app.post(&tickets, None, json!({"service_id": site.services[0]}))
        .await
        .expect(201);

    // A site that never opens: closed, with no opening ahead.
    patch_settings(&app, &site, json!({"opening_hours": {}}))
        .await
        .expect(200);
    let listed = app.get(&services, None).await.expect(200);
    assert_eq!(
        (&listed["open"], &listed["opens_at"]),
        (&json!(false), &Value::Null)
    );
    app.post(&tickets, None, json!({"service_id": site.services[0]}))
        .await
        .expect_error(409, "closed");
}

#[actix_web::test]
async fn the_day_closes_by_itself_at_local_midnight_but_not_for_a_ticket_issued_after() {
    let app = TestApp::spawn().await;
    let site = app.site_in("clinic", "America/Sao_Paulo", 1, 1).await;
    // 23:59:58 in São Paulo (UTC-3).
    let midnight = utc("2026-12-08T03:00:00Z");
    app.clock.jump_to(midnight - chrono::Duration::seconds(2));
    let before = app.issue(&site, 0).await;
    app.clock.jump_to(midnight);
    let after = app.issue(&site, 0).await;
    assert_eq!(after["code"], "A001", "a new day, a new numbering");

    let expired = wait_for_status(&app, &site, &before, "expired").await;
    assert_eq!(expired["code"], "A001");
    // It ended with its day, whenever the close ran.
    let finished_at: DateTime<Utc> =
        sqlx::query_scalar("select finished_at from tickets where id = $1::uuid")
            .bind(expired["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(finished_at, midnight);
    assert_eq!(ticket(&app, &site, &after).await["status"], "waiting");
    let log = app.public_event_log(&site).await;
    let actions: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "ticket_update")
        .map(|m| m["data"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issued", "issued", "expired"]);
    // The new day's ticket is the one called.
    let next = app.call_next(&site, 0).await.expect(200);
    assert_eq!(next["id"], after["id"]);
}

#[actix_web::test]
async fn the_day_closes_by_itself_when_the_opening_hours_end() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 2).await;
    patch_settings(
        &app,
        &site,
        json!({"opening_hours": {"mon": [["08:00", "18:00"]]}}),
    )
    .await
    .expect(200);
    let end = utc("2026-12-07T18:00:00Z"); // a Monday
    app.clock.jump_to(end - chrono::Duration::seconds(3));
    let called = app.issue(&site, 0).await;
    let waiting = app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    app.clock.jump_to(end);
    // After hours an operator may still issue; that ticket waits for midnight.
    let late = app
        .post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            Some(&site.operator),
            json!({"service_id": site.services[0]}),
        )
        .await
        .expect(201);

    wait_for_status(&app, &site, &called, "expired").await;
    wait_for_status(&app, &site, &waiting, "expired").await;
    assert_eq!(ticket(&app, &site, &late).await["status"], "waiting");
    // Desk 1 is free again, and takes the late ticket.
    let next = app.call_next(&site, 0).await.expect(200);
    assert_eq!(next["id"], late["id"]);

    app.clock
        .jump_to(Utc.with_ymd_and_hms(2026, 12, 8, 0, 0, 0).unwrap());
    wait_for_status(&app, &site, &late, "expired").await;
}

#[actix_web::test]
async fn a_process_started_after_a_day_ended_closes_that_day_at_start_up() {
    let first = TestApp::spawn().await;
    // The first process lives yesterday (UTC), from before the tenant exists: for it, that
    // day has not ended, and no process has seen today yet.
    first.clock.jump_to(Utc::now() - chrono::Duration::days(1));
    let site = first.site("clinic", 1, 1).await;
    let left_over = first.issue(&site, 0).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ticket(&first, &site, &left_over).await["status"],
        "waiting",
        "the first process's clock is still on that day"
    );

    let second = first.spawn_sibling().await;
    wait_for_status(&second, &site, &left_over, "expired").await;
    // And that day's ticket is never called, whoever calls.
    assert_eq!(first.call_next(&site, 0).await.status, 204);
}

#[actix_web::test]
async fn two_processes_close_a_day_once() {
    let first = TestApp::spawn().await;
    let second = first.spawn_sibling().await;
    let site = first.site("clinic", 2, 1).await;
    let midnight = utc("2026-12-08T00:00:00Z");
    first.clock.jump_to(midnight - chrono::Duration::minutes(5));
    second
        .clock
        .jump_to(midnight - chrono::Duration::minutes(5));
    let mut issued = Vec::new();
    for i in 0..10 {
        issued.push(first.issue(&site, i % 2).await);
    }
    first.clock.jump_to(midnight);
    second.clock.jump_to(midnight);
    for ticket in &issued {
        wait_for_status(&first, &site, ticket, "expired").await;
    }
    let log = first.public_event_log(&site).await;
    let updates: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "ticket_update")
        .collect();
    let seqs: Vec<i64> = updates.iter().map(|u| u["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "gapless, one change each"
    );
    let expired = updates
        .iter()
        .filter(|u| u["data"]["action"] == "expired")
        .count();
    assert_eq!(expired, 10, "each ticket expired once");
    let closes: i64 = sqlx::query_scalar(
        "select count(*) from day_closes d join tenants t on t.id = d.tenant_id
          where t.slug = $1 and d.due_at = $2",
    )
    .bind(&site.slug)
    .bind(midnight)
    .fetch_one(&first.pool)
    .await
    .unwrap();
    assert_eq!(closes, 1);
}

#[actix_web::test]
async fn hours_changed_on_one_process_move_the_close_on_every_process() {
    let first = TestApp::spawn().await;
    let second = first.spawn_sibling().await;
    let site = first.site("clinic", 1, 1).await;
    patch_settings(
        &first,
        &site,
        json!({"opening_hours": {"mon": [["08:00", "18:00"]]}}),
    )
    .await
    .expect(200);
    let end = utc("2026-12-07T18:00:00Z"); // a Monday
    first.clock.jump_to(end - chrono::Duration::seconds(30));
    second.clock.jump_to(end - chrono::Duration::seconds(30));
    let waiting = first.issue(&site, 0).await;
    // Past the closer's refresh: the second process has read the 18:00 end by now.
    actix_web::rt::time::sleep(nextup::changes::TENANTS_REFRESH + Duration::from_secs(1)).await;

    // The first process extends the day; the second reaches 18:00 at once.
    patch_settings(
        &first,
        &site,
        json!({"opening_hours": {"mon": [["08:00", "20:00"]]}}),
    )
    .await
    .expect(200);
    first.clock.jump_to(end + chrono::Duration::seconds(1));
    second.clock.jump_to(end + chrono::Duration::seconds(1));
    // Two ticks of both closers: neither closes at the old end.
    actix_web::rt::time::sleep(2 * nextup::changes::CLOSE_TICK + Duration::from_millis(500)).await;
    assert_eq!(ticket(&first, &site, &waiting).await["status"], "waiting");

    second
        .clock
        .jump_to(utc("2026-12-07T20:00:00Z") + chrono::Duration::seconds(1));
    wait_for_status(&second, &site, &waiting, "expired").await;
}
