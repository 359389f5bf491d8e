//! Event-log retention: old events are pruned in the background, and clients resuming
//! from before the oldest kept event get a snapshot (WebSocket) or 410 (REST).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use crate::helpers::*;
use crate::ws::WsClient;

const DAY: Duration = Duration::from_secs(86_400);

#[actix_web::test]
async fn events_past_the_horizon_are_pruned_in_the_background_and_resuming_gets_a_snapshot() {
    let app = TestApp::spawn_with(|c| {
        c.event_retention = DAY;
        c.prune_interval = Duration::from_millis(100);
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await;
    app.issue(&site, 0).await;
    // Two days later: the first two events are past the one-day horizon.
    app.clock.jump_to(Utc::now() + chrono::Duration::days(2));
    let recent = app.issue(&site, 0).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app.get("/api/v1/tenants/clinic/events?since=0", None).await;
        if reply.status == 410 {
            reply.expect_error(410, "since_unavailable");
            break;
        }
        assert!(Instant::now() < deadline, "never pruned: {}", reply.raw);
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = app
        .get("/api/v1/tenants/clinic/events?since=2", None)
        .await
        .expect(200);
    assert_eq!(kept["seq"], 3);
    assert_eq!(kept["events"][0]["data"]["ticket"]["id"], recent["id"]);
    let metrics = app.get("/metrics", None).await.raw;
    assert!(
        metrics.contains("nextup_events_pruned_total 2"),
        "{metrics}"
    );

    // A session resuming from a pruned seq gets a fresh snapshot, not a partial replay.
    let mut stale = WsClient::connect(&app, "/ws/clinic/totem?since=1").await;
    let (_, snapshot) = stale.start().await;
    assert_eq!(snapshot["seq"], 3);
    // One resuming from the oldest kept point gets the replay.
    let mut fresh = WsClient::connect(&app, "/ws/clinic/totem?since=2").await;
    assert_eq!(fresh.next().await["type"], "hello");
    let replayed = fresh.next().await;
    assert_eq!(replayed["type"], "ticket_update", "{replayed}");
    assert_eq!(replayed["seq"], 3);
}

#[actix_web::test]
async fn idempotency_keys_are_pruned_after_their_day_and_recent_ones_stay() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    for key in ["old-key", "new-key"] {
        app.send(
            actix_web::http::Method::POST,
            "/api/v1/tenants/clinic/tickets",
            None,
            &[("Idempotency-Key", key)],
            Some(
                json!({ "service_id": site.services[0] })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .expect(201);
    }
    sqlx::query(
        "update idempotency_keys set created_at = now() - interval '25 hours' where key = 'old-key'",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let pruned = nextup::maintenance::prune_once(&app.pool, app.clock.as_ref(), 7 * DAY)
        .await
        .unwrap();
    assert_eq!(pruned, 0, "no event is a week old");
    let keys: Vec<String> = sqlx::query_scalar("select key from idempotency_keys order by key")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, ["new-key"]);
}
