//! The call order and the busy-counter rule are each written once in SQL and once in Rust
//! (`call_key` / `domain::call_order`, `holds_counter` / `Status::holds_counter`): these
//! tests hold the two statements of each rule together on a real database.

use chrono::{DateTime, Duration, TimeZone, Utc};
use nextup::domain::call_order::{CallOrder, ahead_in_service};
use nextup::domain::ids::TicketId;
use nextup::domain::ticket::Status;
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::*;

/// A waiting ticket as the database has it.
struct Waiting {
    id: Uuid,
    service: Uuid,
    place: CallOrder<TicketId>,
}

async fn waiting_tickets(app: &TestApp) -> Vec<Waiting> {
    let rows = sqlx::query(
        "select id, service_id, priority, created_at from tickets where status = 'waiting'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    rows.iter()
        .map(|row| {
            let id: Uuid = row.get("id");
            let priority: String = row.get("priority");
            Waiting {
                id,
                service: row.get("service_id"),
                place: CallOrder::new(
                    priority.parse().unwrap(),
                    row.get::<DateTime<Utc>, _>("created_at"),
                    TicketId::from(id),
                ),
            }
        })
        .collect()
}

/// The waiting tickets in the domain's call order, with each one's `ahead`.
async fn rust_order(app: &TestApp) -> Vec<(Uuid, u32)> {
    let mut waiting = waiting_tickets(app).await;
    waiting.sort_by_key(|w| w.place);
    let ahead = ahead_in_service(waiting.iter().map(|w| w.service));
    waiting.iter().map(|w| w.id).zip(ahead).collect()
}

fn id_of(ticket: &Value) -> Uuid {
    ticket["id"].as_str().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn the_database_and_the_domain_agree_on_the_call_order() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 3, 1).await;

    // A mix of services and priorities, then issue times squeezed onto four instants so
    // that many tickets tie on priority and time and only their ids tell them apart.
    let mut issued = Vec::new();
    for i in 0..36usize {
        let ticket = if i % 3 == 1 || i % 7 == 0 {
            app.issue_priority(&site, i % 3).await
        } else {
            app.issue(&site, (i * 5) % 3).await
        };
        issued.push(ticket);
    }
    // Within today (UTC, the tenant's zone): an earlier day's ticket would be expired.
    let today = Utc::now().date_naive();
    let base = Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 1).unwrap());
    for (i, ticket) in issued.iter().enumerate() {
        let secs = [2, 0, 3, 0, 1, 0][i % 6];
        sqlx::query("update tickets set created_at = $1 where id = $2")
            .bind(base + Duration::seconds(secs))
            .bind(id_of(ticket))
            .execute(&app.pool)
            .await
            .unwrap();
    }
    // The server's business day is the one of those issue times: call-next takes no
    // earlier day's ticket.
    app.clock.jump_to(base + Duration::hours(3));
    let expected = rust_order(&app).await;
    let expected_ids: Vec<Uuid> = expected.iter().map(|(id, _)| *id).collect();
    let tied = waiting_tickets(&app).await;
    assert!(
        tied.iter().any(|a| tied.iter().any(|b| a.id != b.id
            && a.place.priority == b.place.priority
            && a.place.created_at == b.place.created_at)),
        "the mix has ties that only the id breaks"
    );

    // SQL orders by `call_key`, then the id.
    let sql_ids: Vec<Uuid> = sqlx::query_scalar(
        "select id from tickets where status = 'waiting'
          order by call_key(priority, created_at), id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(sql_ids, expected_ids, "call_key orders as CallOrder does");

    // The snapshot lists them in that order, and their sort keys sort the same way.
    let queue = app
        .get(
            &format!("/api/v1/tenants/{}/queue", site.slug),
            Some(&site.operator),
        )
        .await
        .expect(200);
    let listed: Vec<Uuid> = queue["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(listed, expected_ids);
    let mut by_key: Vec<(String, Uuid)> = queue["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["call_order_key"].as_str().unwrap().to_owned(), id_of(t)))
        .collect();
    by_key.sort();
    let by_key: Vec<Uuid> = by_key.into_iter().map(|(_, id)| id).collect();
    assert_eq!(by_key, expected_ids, "sort keys give the call order");

    // `ahead` of each ticket, as counted by SQL (`count_ahead`).
    for (id, ahead) in &expected {
        let ticket = app
            .get(&format!("/api/v1/tenants/{}/tickets/{id}", site.slug), None)
            .await
            .expect(200);
        assert_eq!(ticket["ahead"], *ahead, "ahead of {}", ticket["code"]);
    }

    // Call-next takes them in that order, from all services (the batched statement) and
    // from a list of services (the single one) in turn.
    let all_services = json!({ "service_ids": site.services });
    let call_path = format!(
        "/api/v1/tenants/{}/counters/{}/call",
        site.slug, site.counters[0]
    );
    let mut called = Vec::new();
    for turn in 0..expected.len() {
        let body = if turn % 2 == 0 {
            json!({})
        } else {
            all_services.clone()
        };
        let ticket = app
            .post(&call_path, Some(&site.operator), body)
            .await
            .expect(200);
        called.push(id_of(&ticket));
        app.act(&site, &ticket, "cancel").await.expect(200);
    }
    assert_eq!(called, expected_ids, "call-next follows CallOrder");
    app.call_next(&site, 0).await.expect(204);

    // Reactivated in a scrambled order, each regains its place: its `ahead`, from the
    // waiting counts and the tickets behind it in its class (`count_changes`), is the
    // domain's.
    let mut scrambled = expected_ids.clone();
    scrambled.sort_by_key(|id| id.as_u128().reverse_bits());
    for id in scrambled {
        let ticket = app
            .post(
                &format!("/api/v1/tenants/{}/tickets/{id}/reactivate", site.slug),
                Some(&site.operator),
                json!({}),
            )
            .await
            .expect(200);
        let now = rust_order(&app).await;
        let (_, ahead) = now.iter().find(|(waiting, _)| *waiting == id).unwrap();
        assert_eq!(
            ticket["ahead"], *ahead,
            "ahead of {} when reactivated",
            ticket["code"]
        );
    }
}

#[actix_web::test]
async fn the_database_and_the_domain_agree_on_which_tickets_hold_their_counter() {
    let app = TestApp::spawn().await;
    for status in Status::ALL {
        let holds: bool = sqlx::query_scalar("select holds_counter($1)")
            .bind(status.as_str())
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(holds, status.holds_counter(), "{status}");
    }

    // The view every busy check reads follows the ticket at the counter.
    let site = app.site("clinic", 1, 1).await;
    let counter: Uuid = site.counters[0].parse().unwrap();
    let busy = || async {
        sqlx::query_scalar::<_, bool>(
            "select exists (select 1 from busy_counters where counter_id = $1)",
        )
        .bind(counter)
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    app.issue(&site, 0).await;
    assert!(!busy().await);
    let ticket = app.call_next(&site, 0).await.expect(200);
    assert!(busy().await, "called");
    app.act(&site, &ticket, "start").await.expect(200);
    assert!(busy().await, "serving");
    app.act(&site, &ticket, "finish").await.expect(200);
    assert!(!busy().await, "done");
}
