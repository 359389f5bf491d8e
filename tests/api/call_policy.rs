//! The call policy of contract §8: the fair call order (`priority_ratio`), the recall limit
//! (`max_calls`), no earlier day's ticket ever called, and the next-call preview
//! (`GET …/counters/{id}/next`) that agrees with call-next.

use std::collections::HashSet;

use actix_web::http::Method;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::join_all;
use nextup::domain::call_order::{CallOrder, Turn, streak_after};
use nextup::domain::ticket::Priority;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::ws::WsClient;

/// Which statement a call-next goes through: the batched one (no `service_ids`) or the
/// single one (`service_ids` naming every service of the site).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    AllServices,
    NamedServices,
}

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

async fn call_by(app: &TestApp, site: &Site, counter: usize, path: Path) -> Reply {
    let body = match path {
        Path::AllServices => json!({}),
        Path::NamedServices => json!({ "service_ids": site.services }),
    };
    app.post(
        &format!(
            "/api/v1/tenants/{}/counters/{}/call",
            site.slug, site.counters[counter]
        ),
        Some(&site.operator),
        body,
    )
    .await
}

async fn call_ticket(app: &TestApp, site: &Site, ticket: &Value, counter: usize) -> Value {
    app.post(
        &format!(
            "/api/v1/tenants/{}/tickets/{}/call",
            site.slug,
            ticket["id"].as_str().unwrap()
        ),
        Some(&site.operator),
        json!({ "counter_id": site.counters[counter] }),
    )
    .await
    .expect(200)
}

/// `GET …/counters/{id}/next`, with `query` appended as is.
async fn preview(app: &TestApp, site: &Site, counter: usize, query: &str) -> Reply {
    app.get(
        &format!(
            "/api/v1/tenants/{}/counters/{}/next{query}",
            site.slug, site.counters[counter]
        ),
        Some(&site.operator),
    )
    .await
}

/// Issues tickets of service A in the order of `classes` (`P` priority, `N` normal).
async fn issue_classes(app: &TestApp, site: &Site, classes: &str) -> Vec<Value> {
    let mut tickets = Vec::new();
    for class in classes.chars() {
        tickets.push(match class {
            'P' => app.issue_priority(site, 0).await,
            _ => app.issue(site, 0).await,
        });
    }
    tickets
}

fn class_of(ticket: &Value) -> char {
    match ticket["priority"].as_str().unwrap() {
        "priority" => 'P',
        _ => 'N',
    }
}

/// Calls at the counter until nobody waits, finishing each ticket; the classes called.
async fn call_until_empty(app: &TestApp, site: &Site, counter: usize, path: Path) -> String {
    let mut classes = String::new();
    loop {
        let reply = call_by(app, site, counter, path).await;
        if reply.status == 204 {
            return classes;
        }
        let ticket = reply.expect(200);
        classes.push(class_of(&ticket));
        app.act(site, &ticket, "cancel").await.expect(200);
    }
}

/// SQL states the fair turn, the streak and the turn's order as functions that both
/// call-next statements and the preview use; the domain states them in Rust.
#[actix_web::test]
async fn the_database_and_the_domain_agree_on_fair_turns() {
    let app = TestApp::spawn().await;
    for streak in [0u32, 1, 2, 3, 7, i32::MAX as u32] {
        for ratio in [None, Some(1u32), Some(2), Some(3), Some(i32::MAX as u32)] {
            let fair: bool = sqlx::query_scalar("select fair_turn($1, $2)")
                .bind(streak as i32)
                .bind(ratio.map(|r| r as i32))
                .fetch_one(&app.pool)
                .await
                .unwrap();
            assert_eq!(
                fair,
                Turn::of(streak, ratio) == Turn::Fair,
                "streak {streak}, ratio {ratio:?}"
            );
            for priority in Priority::ALL {
                let after: i32 = sqlx::query_scalar("select streak_after($1, $2)")
                    .bind(streak as i32)
                    .bind(priority.as_str())
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
                assert_eq!(
                    after as u32,
                    streak_after(streak, priority),
                    "{streak} {priority:?}"
                );
            }
        }
    }

    // Tickets of both classes on few instants, so that ties are broken by the id.
    let base = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
    let places: Vec<CallOrder<Uuid>> = (0..24u32)
        .map(|i| {
            let priority = if i % 3 == 0 {
                Priority::Priority
            } else {
                Priority::Normal
            };
            let at = base + chrono::Duration::seconds(i64::from(i % 4));
            CallOrder::new(priority, at, Uuid::new_v4())
        })
        .collect();
    for turn in [Turn::Usual, Turn::Fair] {
        let mut expected = places.clone();
        expected.sort_by_key(|p| p.turn_key(turn));
        let expected: Vec<Uuid> = expected.iter().map(|p| p.id).collect();
        let sql: Vec<Uuid> = sqlx::query_scalar(
            "select id from unnest($1::uuid[], $2::text[], $3::timestamptz[]) as t(id, priority, created_at)
              order by turn_key(priority, created_at, $4), id",
        )
        .bind(places.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind(places.iter().map(|p| p.priority.as_str()).collect::<Vec<_>>())
        .bind(places.iter().map(|p| p.created_at).collect::<Vec<_>>())
        .bind(turn == Turn::Fair)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert_eq!(sql, expected, "{turn:?}");
    }
}

#[actix_web::test]
async fn a_ratio_of_two_calls_two_priority_tickets_then_a_normal_one_on_both_paths() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 2).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 2 })).await;
    for (counter, path) in [(0, Path::AllServices), (1, Path::NamedServices)] {
        issue_classes(&app, &site, "NNNNPPPPPP").await;
        assert_eq!(
            call_until_empty(&app, &site, counter, path).await,
            "PPNPPNPPNN",
            "{path:?}"
        );
    }
}

#[actix_web::test]
async fn a_fair_turn_takes_the_oldest_normal_ticket_of_the_requested_services() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 1 })).await;
    let old_b = app.issue(&site, 1).await; // B001, the oldest normal ticket
    let old_a = app.issue(&site, 0).await; // A001
    app.issue_priority(&site, 0).await; // A002
    app.issue_priority(&site, 0).await; // A003
    let first = call_by(&app, &site, 0, Path::AllServices).await.expect(200);
    assert_eq!(first["code"], "A002");
    app.act(&site, &first, "cancel").await.expect(200);
    // A fair turn from service A only: its oldest normal ticket, not B's.
    let fair = app
        .post(
            &format!(
                "/api/v1/tenants/{}/counters/{}/call",
                site.slug, site.counters[0]
            ),
            Some(&site.operator),
            json!({ "service_ids": [site.services[0]] }),
        )
        .await
        .expect(200);
    assert_eq!(fair["id"], old_a["id"]);
    app.act(&site, &fair, "cancel").await.expect(200);
    // The streak is 0 again: priority first.
    let next = call_by(&app, &site, 0, Path::AllServices).await.expect(200);
    assert_eq!(next["code"], "A003");
    app.act(&site, &next, "cancel").await.expect(200);
    let next = call_by(&app, &site, 0, Path::AllServices).await.expect(200);
    assert_eq!(next["id"], old_b["id"]);
}

#[actix_web::test]
async fn without_a_ratio_priority_tickets_always_come_first() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    issue_classes(&app, &site, "NNPPPPN").await;
    assert_eq!(
        call_until_empty(&app, &site, 0, Path::AllServices).await,
        "PPPPNNN"
    );
    // A ratio set and taken back leaves the strict order.
    patch_settings(&app, &site, json!({ "priority_ratio": 1 })).await;
    patch_settings(&app, &site, json!({ "priority_ratio": null })).await;
    issue_classes(&app, &site, "NNPPPPN").await;
    assert_eq!(
        call_until_empty(&app, &site, 0, Path::NamedServices).await,
        "PPPPNNN"
    );
}

#[actix_web::test]
async fn a_fair_turn_with_no_normal_ticket_waiting_takes_a_priority_one() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 1 })).await;
    issue_classes(&app, &site, "PPP").await;
    assert_eq!(
        call_until_empty(&app, &site, 0, Path::AllServices).await,
        "PPP"
    );
    // The streak went on growing, so the next normal ticket comes first.
    assert_eq!(
        preview(&app, &site, 0, "").await.expect(200)["priority_streak"],
        3
    );
    issue_classes(&app, &site, "PN").await;
    assert_eq!(
        call_until_empty(&app, &site, 0, Path::NamedServices).await,
        "NP"
    );
}

#[actix_web::test]
async fn each_counter_keeps_its_own_streak() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 2).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 2 })).await;
    issue_classes(&app, &site, "PPPPPPPPNNNN").await;
    let mut called = [String::new(), String::new()];
    'calling: loop {
        for (counter, calls) in called.iter_mut().enumerate() {
            let path = [Path::AllServices, Path::NamedServices][counter];
            let reply = call_by(&app, &site, counter, path).await;
            if reply.status == 204 {
                break 'calling;
            }
            let ticket = reply.expect(200);
            calls.push(class_of(&ticket));
            app.act(&site, &ticket, "cancel").await.expect(200);
        }
    }
    assert_eq!(called, ["PPNPPN", "PPNPPN"]);
}

#[actix_web::test]
async fn calling_a_specific_ticket_counts_in_the_streak() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 2 })).await;
    let tickets = issue_classes(&app, &site, "PPPNN").await;
    for ticket in &tickets[..2] {
        let called = call_ticket(&app, &site, ticket, 0).await;
        app.act(&site, &called, "cancel").await.expect(200);
    }
    let next = preview(&app, &site, 0, "").await.expect(200);
    assert_eq!(next["priority_streak"], 2);
    assert_eq!(next["reason"], "fair_turn");
    assert_eq!(next["ticket"]["id"], tickets[3]["id"]);
    // Calling a normal ticket out of order ends the streak.
    let called = call_ticket(&app, &site, &tickets[4], 0).await;
    app.act(&site, &called, "cancel").await.expect(200);
    let next = preview(&app, &site, 0, "").await.expect(200);
    assert_eq!(next["priority_streak"], 0);
    assert_eq!(next["reason"], "priority");
    assert_eq!(next["ticket"]["id"], tickets[2]["id"]);
}

/// The call-nexts of one batch are one statement: the desks on a fair turn take the oldest
/// normal tickets (a priority one when no normal one is left), the others the first in the
/// call order, each desk's streak moving with its ticket.
#[actix_web::test]
async fn call_nexts_of_one_batch_give_each_desk_its_turn() {
    use crate::concurrency::{apply_in_one_batch, outcomes};
    use nextup::domain::ids::{CounterId, UserId};
    use nextup::ticketing::batch::Command;

    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 4).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 2 })).await;
    let operator: Uuid = sqlx::query_scalar("select id from users where username = 'olga'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let desk = |k: usize| CounterId::from(site.counters[k].parse::<Uuid>().unwrap());
    let calls: Vec<Command> = (0..4)
        .map(|k| Command::CallNext {
            counter: desk(k),
            services: None,
            operator: UserId::from(operator),
        })
        .collect();
    let streaks = |streaks: [i32; 4]| {
        let (app, site) = (&app, &site);
        async move {
            for (k, streak) in streaks.into_iter().enumerate() {
                sqlx::query("update counters set priority_streak = $1 where id = $2::uuid")
                    .bind(streak)
                    .bind(&site.counters[k])
                    .execute(&app.pool)
                    .await
                    .unwrap();
            }
        }
    };
    let stored_streaks = || async {
        let mut streaks = Vec::new();
        for counter in &site.counters {
            let streak: i32 =
                sqlx::query_scalar("select priority_streak from counters where id = $1::uuid")
                    .bind(counter)
                    .fetch_one(&app.pool)
                    .await
                    .unwrap();
            streaks.push(streak);
        }
        streaks
    };
    let code = |change: &nextup::ticketing::commands::Change| change.ticket.public.code.clone();
    // Each call's ticket code and the order of its seq among the batch's changes.
    let codes = |answers: &[_], before: i64| -> Vec<String> {
        outcomes(answers, code)
            .into_iter()
            .map(|outcome| {
                outcome.map_or_else(
                    |e| e.to_owned(),
                    |(code, seq)| format!("{code}@{}", seq - before),
                )
            })
            .collect()
    };
    let seq = || async { app.queue(&site).await["seq"].as_i64().unwrap() };

    // Desks 1 and 3 are on a fair turn: served first, their changes logged first.
    issue_classes(&app, &site, "PPNN").await; // A001 to A004
    streaks([0, 2, 1, 5]).await;
    let before = seq().await;
    let answers = apply_in_one_batch(&app, &site.slug, &calls).await;
    assert_eq!(
        codes(&answers, before),
        ["A001@3", "A003@1", "A002@4", "A004@2"]
    );
    assert_eq!(stored_streaks().await, [1, 0, 2, 0]);
    for answer in &answers {
        let Ok(nextup::ticketing::batch::CommandOutcome::Changed(change)) = answer else {
            panic!("each call changed a ticket");
        };
        let ticket = serde_json::to_value(&change.ticket).unwrap();
        app.act(&site, &ticket, "cancel").await.expect(200);
    }

    // One normal ticket for two fair turns: the second takes a priority ticket, and the
    // usual turns what is left in the call order.
    issue_classes(&app, &site, "PPN").await; // A005 to A007
    streaks([2, 0, 2, 0]).await;
    let before = seq().await;
    let answers = apply_in_one_batch(&app, &site.slug, &calls).await;
    assert_eq!(
        codes(&answers, before),
        ["A007@1", "A006@3", "A005@2", "nobody waiting"]
    );
    assert_eq!(stored_streaks().await, [0, 1, 3, 0]);
}

/// One desk's work: call, finish, until nobody waits; the tickets it called.
async fn serve_until_empty(app: &TestApp, site: &Site, counter: usize) -> Vec<Value> {
    let path = if counter.is_multiple_of(2) {
        Path::AllServices
    } else {
        Path::NamedServices
    };
    let mut served = Vec::new();
    loop {
        let reply = call_by(app, site, counter, path).await;
        if reply.status == 204 {
            return served;
        }
        let ticket = reply.expect(200);
        assert_eq!(ticket["counter"]["id"], site.counters[counter].as_str());
        app.act(site, &ticket, "start").await.expect(200);
        app.act(site, &ticket, "finish").await.expect(200);
        served.push(ticket);
    }
}

/// Eight desks calling in parallel, half through each call-next statement: every ticket is
/// called once, and each desk's classes follow `allowed`.
async fn eight_desks_at_once(ratio: Option<u32>, allowed: fn(&str) -> bool) {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 8).await;
    patch_settings(&app, &site, json!({ "priority_ratio": ratio })).await;
    // As many normal tickets as priority ones: while priority tickets wait, normal ones do
    // too (a desk takes a normal one at most every other call), so every fair turn finds one.
    for i in 0..96 {
        if i % 2 == 0 {
            app.issue_priority(&site, i % 4 / 2).await;
        } else {
            app.issue(&site, i % 4 / 2).await;
        }
    }
    let served: Vec<Vec<Value>> = join_all((0..8).map(|k| serve_until_empty(&app, &site, k))).await;
    let ids: Vec<&str> = served
        .iter()
        .flatten()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 96, "every ticket was called");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 96, "none twice");
    assert!(
        served.iter().filter(|s| !s.is_empty()).count() > 1,
        "the desks really ran in parallel"
    );
    for (counter, tickets) in served.iter().enumerate() {
        let classes: String = tickets.iter().map(class_of).collect();
        assert!(allowed(&classes), "desk {counter} called {classes}");
    }
}

#[actix_web::test]
async fn eight_desks_calling_at_once_keep_the_ratio_each() {
    // Two priority tickets, then a normal one, over and over; once the priority tickets
    // are gone, normal ones only.
    eight_desks_at_once(Some(2), |classes| {
        let cycle = b"PPN";
        let normal_only_from = classes
            .bytes()
            .enumerate()
            .position(|(i, class)| class != cycle[i % 3])
            .unwrap_or(classes.len());
        classes[normal_only_from..].chars().all(|c| c == 'N')
    })
    .await;
}

#[actix_web::test]
async fn eight_desks_calling_at_once_without_a_ratio_take_priority_first() {
    eight_desks_at_once(None, |classes| !classes.contains("NP")).await;
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

/// The preview, then the call it predicts: the same ticket.
async fn preview_then_call(app: &TestApp, site: &Site, counter: usize) -> (Value, Reply) {
    let next = preview(app, site, counter, "").await.expect(200);
    let call = app.call_next(site, counter).await;
    match &next["ticket"] {
        Value::Null => assert_eq!(call.status, 204, "{}", call.raw),
        ticket => {
            assert_eq!(call.status, 200, "{}", call.raw);
            assert_eq!(call.body["id"], ticket["id"], "the preview named the call");
        }
    }
    (next, call)
}

#[actix_web::test]
async fn the_preview_names_the_ticket_call_next_takes_and_why() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    patch_settings(&app, &site, json!({ "priority_ratio": 1, "max_calls": 4 })).await;
    let first_normal = app.issue(&site, 0).await;
    app.post(
        &format!("/api/v1/tenants/{}/tickets", site.slug),
        Some(&site.operator),
        json!({ "service_id": site.services[0], "priority": "priority", "customer_name": "Ana" }),
    )
    .await
    .expect(201);
    issue_classes(&app, &site, "PN").await;

    let expectations = [
        ("priority", 0, 'P'),
        ("fair_turn", 1, 'N'),
        ("priority", 0, 'P'),
        // A fair turn, but no priority ticket waits any more.
        ("waited_longest", 1, 'N'),
    ];
    for (i, (reason, streak, class)) in expectations.into_iter().enumerate() {
        let (next, call) = preview_then_call(&app, &site, 0).await;
        assert_eq!(next["reason"], reason, "call {i}: {next}");
        assert_eq!(next["priority_streak"], streak, "call {i}");
        assert_eq!(next["priority_ratio"], 1);
        assert_eq!(next["max_calls"], 4);
        assert_eq!(class_of(&next["ticket"]), class, "call {i}");
        // The operator projection, as a waiting ticket: with its place and estimate.
        assert_eq!(next["ticket"]["status"], "waiting");
        assert!(next["ticket"]["ahead"].is_number());
        assert!(next["ticket"]["estimated_wait_secs"].is_number());
        assert!(next["ticket"]["call_order_key"].is_string());
        assert!(next["ticket"].get("customer_name").is_some());
        if i == 0 {
            assert_eq!(next["ticket"]["customer_name"], "Ana");
        }
        if i == 1 {
            assert_eq!(next["ticket"]["id"], first_normal["id"]);
        }
        app.act(&site, &call.body, "cancel").await.expect(200);
    }

    // Normal tickets only, on a usual turn: the one that waited longest.
    let (next, held) = {
        let waiting = issue_classes(&app, &site, "NN").await;
        let (next, call) = preview_then_call(&app, &site, 0).await;
        assert_eq!(next["ticket"]["id"], waiting[0]["id"]);
        (next, call.body)
    };
    assert_eq!(next["reason"], "waited_longest");
    assert_eq!(next["priority_streak"], 0);

    // A busy counter: the preview still names what it would take once free.
    let next = preview(&app, &site, 0, "").await.expect(200);
    assert_eq!(next["reason"], "waited_longest");
    app.call_next(&site, 0)
        .await
        .expect_error(409, "counter_busy");
    app.act(&site, &held, "cancel").await.expect(200);
    let (again, call) = preview_then_call(&app, &site, 0).await;
    assert_eq!(again["ticket"]["id"], next["ticket"]["id"]);
    app.act(&site, &call.body, "cancel").await.expect(200);

    // Nobody waits: no ticket and no reason, and call-next answers 204.
    let (next, _) = preview_then_call(&app, &site, 0).await;
    assert_eq!(next["ticket"], Value::Null);
    assert_eq!(next["reason"], Value::Null);
    assert_eq!(next["priority_streak"], 0);
}

#[actix_web::test]
async fn the_preview_limited_to_services_agrees_with_call_next_limited_to_them() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 2, 1).await;
    let a = app.issue(&site, 0).await;
    let b = app.issue_priority(&site, 1).await;
    let query = format!("?service_ids={}", site.services[0]);
    let next = preview(&app, &site, 0, &query).await.expect(200);
    assert_eq!(next["ticket"]["id"], a["id"]);
    assert_eq!(next["reason"], "waited_longest", "no priority waits in A");
    let both = format!("?service_ids={},{}", site.services[0], site.services[1]);
    let next = preview(&app, &site, 0, &both).await.expect(200);
    assert_eq!(next["ticket"]["id"], b["id"]);
    assert_eq!(next["reason"], "priority");
    assert_eq!(next["priority_ratio"], Value::Null);
    assert_eq!(next["max_calls"], Value::Null);
    let called = app
        .post(
            &format!(
                "/api/v1/tenants/{}/counters/{}/call",
                site.slug, site.counters[0]
            ),
            Some(&site.operator),
            json!({ "service_ids": [site.services[0]] }),
        )
        .await
        .expect(200);
    assert_eq!(called["id"], a["id"]);
    // Nothing was called by the previews.
    assert_eq!(app.queue(&site).await["waiting"][0]["id"], b["id"]);
}

#[actix_web::test]
async fn the_preview_refuses_bad_queries_counters_and_services() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let elsewhere = app.site("office", 1, 1).await;
    let service = &site.services[0];
    let cases = [
        ("?service_ids=".to_owned(), 400, "invalid_query"),
        ("?service_ids=nope".to_owned(), 400, "invalid_query"),
        ("?service_ids=,".to_owned(), 400, "invalid_query"),
        (format!("?service_ids={service},"), 400, "invalid_query"),
        (
            format!("?service_ids={service}&service_ids={service}"),
            400,
            "invalid_query",
        ),
        (
            format!("?service_ids={}", Uuid::new_v4()),
            404,
            "service_not_found",
        ),
        (
            format!("?service_ids={}", elsewhere.services[0]),
            404,
            "service_not_found",
        ),
    ];
    for (query, status, code) in cases {
        let reply = preview(&app, &site, 0, &query).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.raw);
        reply.expect_error(status, code);
    }
    let next = preview(&app, &site, 0, &format!("?service_ids={service}"))
        .await
        .expect(200);
    assert_eq!(next["ticket"], Value::Null);
    let path = |counter: &str| format!("/api/v1/tenants/{}/counters/{counter}/next", site.slug);
    app.get(&path(&Uuid::new_v4().to_string()), Some(&site.operator))
        .await
        .expect_error(404, "counter_not_found");
    app.get(&path(&elsewhere.counters[0]), Some(&site.operator))
        .await
        .expect_error(404, "counter_not_found");
    app.get(&path("desk-1"), Some(&site.operator))
        .await
        .expect_error(400, "invalid_path");
    app.get(&path(&site.counters[0]), None)
        .await
        .expect_error(401, "missing_token");
    app.get(&path(&site.counters[0]), Some(&elsewhere.operator))
        .await
        .expect_error(403, "wrong_tenant");
}

/// Asserts the ticket is still waiting, as nobody called it.
async fn assert_waiting(app: &TestApp, site: &Site, ticket: &Value) {
    let now = app
        .get(
            &format!(
                "/api/v1/tenants/{}/tickets/{}",
                site.slug,
                ticket["id"].as_str().unwrap()
            ),
            None,
        )
        .await
        .expect(200);
    assert_eq!(now["status"], "waiting", "{now}");
    assert_eq!(now["call_count"], 0);
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[actix_web::test]
async fn no_ticket_of_an_earlier_day_is_called_after_local_midnight() {
    let app = TestApp::spawn().await;
    // São Paulo is UTC-3: local midnight is 03:00 UTC.
    let site = app.site_in("clinic", "America/Sao_Paulo", 1, 2).await;
    app.clock.jump_to(at("2026-05-10T02:58:00Z"));
    let yesterday = app.issue_priority(&site, 0).await;
    app.clock.jump_to(at("2026-05-10T03:00:01Z"));
    assert_waiting(&app, &site, &yesterday).await;
    for path in [Path::AllServices, Path::NamedServices] {
        let reply = call_by(&app, &site, 0, path).await;
        assert_eq!(reply.status, 204, "{path:?}: {}", reply.raw);
    }
    let next = preview(&app, &site, 0, "").await.expect(200);
    assert_eq!(next["ticket"], Value::Null);
    assert_waiting(&app, &site, &yesterday).await;

    // Today's tickets are called, even behind an earlier day's priority ticket.
    let today = app.issue(&site, 0).await;
    assert_eq!(today["code"], "A001");
    let next = preview(&app, &site, 0, "").await.expect(200);
    assert_eq!(next["ticket"]["id"], today["id"]);
    let called = call_by(&app, &site, 0, Path::AllServices).await.expect(200);
    assert_eq!(called["id"], today["id"]);
    assert_waiting(&app, &site, &yesterday).await;
}

#[actix_web::test]
async fn no_ticket_is_called_after_the_opening_hours_it_was_issued_in() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 2).await;
    // 2026-05-11 is a Monday.
    patch_settings(
        &app,
        &site,
        json!({ "opening_hours": { "mon": [["08:00", "12:00"]] } }),
    )
    .await;
    app.clock.jump_to(at("2026-05-11T11:59:00Z"));
    let morning = app.issue(&site, 0).await;
    app.clock.jump_to(at("2026-05-11T12:00:30Z"));
    for path in [Path::NamedServices, Path::AllServices] {
        let reply = call_by(&app, &site, 1, path).await;
        assert_eq!(reply.status, 204, "{path:?}: {}", reply.raw);
    }
    assert_waiting(&app, &site, &morning).await;
    // An operator may issue after the hours; that ticket is called (until midnight).
    let late = app
        .post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            Some(&site.operator),
            json!({ "service_id": site.services[0] }),
        )
        .await
        .expect(201);
    let called = call_by(&app, &site, 1, Path::NamedServices)
        .await
        .expect(200);
    assert_eq!(called["id"], late["id"]);
    assert_waiting(&app, &site, &morning).await;
}
