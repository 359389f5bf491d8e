//! Faults: the database going away and coming back.

use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::proxy::CuttingProxy;
use crate::ws::WsClient;

/// Reads that need the database answer 503 `database_unavailable` with `Retry-After`,
/// each within `bound`.
async fn reads_fail_fast_with_503(app: &TestApp, bound: Duration) {
    for path in [
        "/api/v1/tenants/clinic/queue",
        "/api/v1/tenants/clinic/services",
    ] {
        let started = Instant::now();
        let reply = app.get(path, None).await;
        assert!(
            started.elapsed() < bound,
            "{path} took {:?}",
            started.elapsed()
        );
        assert!(reply.header("Retry-After").is_some(), "{path}");
        reply.expect_error(503, "database_unavailable");
    }
}

#[actix_web::test]
async fn a_database_outage_fails_fast_keeps_sessions_and_recovers_by_itself() {
    let (database, proxied) = CuttingProxy::in_front_of_postgres().await;
    let app = TestApp::spawn_through(&proxied, |_| {}).await;
    let site = app.site("clinic", 1, 1).await;
    let mut kiosk = WsClient::connect(&app, "/ws/clinic/totem").await;
    kiosk.start().await;
    app.wait_for_sessions("clinic", (1, 0)).await;

    database.cut(true);
    reads_fail_fast_with_503(&app, Duration::from_secs(6)).await;
    let issue = app
        .post(
            "/api/v1/tenants/clinic/tickets",
            None,
            serde_json::json!({ "service_id": site.services[0] }),
        )
        .await;
    issue.expect_error(503, "database_unavailable");
    app.get("/readyz", None)
        .await
        .expect_error(503, "database_unavailable");
    app.get("/healthz", None).await.expect(200);
    // The session is still open: the hub never needed the database.
    assert_eq!(app.session_counts("clinic").await, (1, 0));

    database.cut(false);
    app.get("/readyz", None).await.expect(200);
    let ticket = app.issue(&site, 0).await;
    assert_eq!(ticket["code"], "A001", "the refused issue changed nothing");
    let update = kiosk.next_event().await;
    assert_eq!(update["type"], "ticket_update");
    assert_eq!(update["seq"], 1);
    assert_eq!(update["data"]["ticket"]["code"], "A001");
}

#[actix_web::test]
async fn a_database_link_that_drops_packets_fails_fast_and_sessions_get_every_change_made_meanwhile()
 {
    // Two instances on one database; the second reaches it through a link that will stall.
    let direct = TestApp::spawn().await;
    let site = direct.site("clinic", 1, 1).await;
    let (link, server_through_link) = CuttingProxy::in_front_of_postgres().await;
    let through_link = format!("{server_through_link}/{}", direct.db_name);
    let app = direct
        .spawn_sibling_with(|c| c.database_url = through_link)
        .await;
    app.wait_for_listener().await;
    let mut display = WsClient::connect(&app, "/ws/clinic/totem").await;
    display.start().await;
    app.wait_for_sessions("clinic", (1, 0)).await;

    link.stall(true);
    reads_fail_fast_with_503(&app, Duration::from_secs(7)).await;
    app.get("/readyz", None)
        .await
        .expect_error(503, "database_unavailable");
    // The other instance goes on; its changes must reach this instance's sessions later.
    let first = direct.issue(&site, 0).await;
    let second = direct.issue(&site, 0).await;
    assert_eq!(app.session_counts("clinic").await, (1, 0), "session kept");

    link.stall(false);
    for (seq, ticket) in [(1, &first), (2, &second)] {
        let update = display.next_event().await;
        assert_eq!(update["type"], "ticket_update", "{update}");
        assert_eq!(update["seq"], seq, "{update}");
        assert_eq!(update["data"]["ticket"]["id"], ticket["id"]);
        let queue = display.next_event().await;
        assert_eq!(
            (&queue["type"], &queue["seq"]),
            (&"queue_update".into(), &seq.into())
        );
    }
    // Healed: this instance serves again, and its own change follows, once.
    let third = app.issue(&site, 0).await;
    let update = display.next_event().await;
    assert_eq!(update["seq"], 3, "{update}");
    assert_eq!(update["data"]["ticket"]["id"], third["id"]);
    app.get("/readyz", None).await.expect(200);
}

#[actix_web::test]
async fn conditional_polls_are_answered_from_memory_and_never_hide_another_process_change() {
    let direct = TestApp::spawn().await;
    let site = direct.site("clinic", 1, 1).await;
    let (link, server_through_link) = CuttingProxy::in_front_of_postgres().await;
    let through_link = format!("{server_through_link}/{}", direct.db_name);
    let app = direct
        .spawn_sibling_with(|c| c.database_url = through_link)
        .await;
    app.wait_for_listener().await;
    direct.issue(&site, 0).await;
    let poll = |tag: String| {
        let app = &app;
        async move {
            app.send(
                actix_web::http::Method::GET,
                "/api/v1/tenants/clinic/queue",
                None,
                &[("If-None-Match", tag.as_str())],
                None,
            )
            .await
        }
    };
    let first = app.get("/api/v1/tenants/clinic/queue", None).await;
    assert_eq!(first.header("ETag"), Some("\"1\""), "{}", first.raw);

    // With the database silent, an unchanged queue is still answered, from memory.
    link.stall(true);
    let started = Instant::now();
    let unchanged = poll("\"1\"".into()).await;
    assert_eq!(unchanged.status, 304, "{}", unchanged.raw);
    assert!(started.elapsed() < Duration::from_secs(1));
    link.stall(false);

    // A change made through the other process is announced, and the old tag stops matching.
    direct.issue(&site, 0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = poll("\"1\"".into()).await;
        if reply.status == 200 {
            assert_eq!(reply.header("ETag"), Some("\"2\""));
            assert_eq!(reply.body["services"][0]["waiting"], 2);
            break;
        }
        assert_eq!(reply.status, 304, "{}", reply.raw);
        assert!(Instant::now() < deadline, "the change never showed");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(poll("\"2\"".into()).await.status, 304);
}

#[actix_web::test]
async fn a_request_held_up_in_the_database_is_answered_503_by_its_deadline_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    // Another connection holds the tenant's seq row, so the issue below waits in the
    // database, as it would on a link that stopped answering.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("select last_seq from event_sequences for update")
        .execute(&mut *blocker)
        .await
        .unwrap();

    let started = Instant::now();
    let reply = app
        .post(
            "/api/v1/tenants/clinic/tickets",
            None,
            serde_json::json!({ "service_id": site.services[0] }),
        )
        .await;
    let took = started.elapsed();
    // Its batch gives up a little before the handler's deadline, so that the answer is
    // known to be the outcome: nothing commits after a 503.
    let deadline = nextup::http::deadline::HANDLER_DEADLINE;
    assert!(
        (deadline - Duration::from_millis(500)..deadline + Duration::from_secs(3)).contains(&took),
        "answered after {took:?}"
    );
    assert_eq!(reply.header("Retry-After"), Some("5"));
    reply.expect_error(503, "database_unavailable");

    blocker.rollback().await.unwrap();
    // The abandoned transaction was rolled back: nothing was issued, the seq is unchanged.
    let queue = app.queue(&site).await;
    assert_eq!(queue["seq"], 0);
    assert_eq!(queue["services"][0]["waiting"], 0);
    assert_eq!(app.issue(&site, 0).await["code"], "A001");
}

#[actix_web::test]
async fn changes_right_after_the_database_dropped_every_connection_succeed() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let mut kiosk = WsClient::connect(&app, "/ws/clinic/totem").await;
    kiosk.start().await;
    app.wait_for_sessions("clinic", (1, 0)).await;
    // Changes at once leave idle connections in the pool of the thread that writes them.
    futures_util::future::join_all((0..8).map(|_| app.issue(&site, 0))).await;

    // As in a quick restart of PostgreSQL: the server ends every connection of the app
    // (waiting until each backend is gone), and the app has not used them since.
    let ended: i64 = sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid, 5000)) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(ended >= 2, "ended {ended} connections");

    // A dead pooled connection is replaced before the change runs: none of these fails.
    assert_eq!(app.issue(&site, 0).await["code"], "A009");
    assert_eq!(app.issue(&site, 0).await["code"], "A010");
    let together = futures_util::future::join_all((0..6).map(|_| app.issue(&site, 0))).await;
    assert_eq!(together.len(), 6);

    // The screen missed nothing, once each, in order.
    let mut seen = Vec::new();
    while seen.len() < 16 {
        let event = kiosk.next_event().await;
        if event["type"] == "ticket_update" {
            seen.push(event["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(seen, (1..=16).collect::<Vec<_>>());
}
