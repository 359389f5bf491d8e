//! Contract §7: health, readiness and metrics.

use crate::helpers::*;
use crate::ws::WsClient;

/// The value of one sample line of the Prometheus text, e.g. `name{label="x"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[actix_web::test]
async fn health_and_readiness_answer_while_the_database_does() {
    let app = TestApp::spawn().await;
    app.get("/healthz", None).await.expect(200);
    let ready = app.get("/readyz", None).await.expect(200);
    assert_eq!(ready["status"], "ready");
}

#[actix_web::test]
async fn a_pool_of_one_connection_serves_logins_reads_and_changes() {
    // The event listener has a connection of its own, outside DATABASE_POOL_SIZE.
    let app = TestApp::spawn_with(|c| c.database_pool_size = 1).await;
    app.wait_for_listener().await;
    let site = app.site("clinic", 1, 1).await;
    app.issue(&site, 0).await;
    assert_eq!(app.queue(&site).await["services"][0]["waiting"], 1);
    app.get("/readyz", None).await.expect(200);
}

#[actix_web::test]
async fn metrics_count_sessions_broadcasts_latency_and_requests() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let mut kiosk = WsClient::connect(&app, "/ws/clinic/totem").await;
    kiosk.start().await;
    let mut desk = WsClient::connect(
        &app,
        &format!("/ws/clinic/operator?token={}", site.operator),
    )
    .await;
    desk.start().await;
    app.wait_for_sessions("clinic", (1, 1)).await;
    app.issue(&site, 0).await;
    app.call_next(&site, 0).await.expect(200);
    for _ in 0..4 {
        kiosk.next_event().await; // two changes: a ticket_update and a queue_update each
    }
    // A round trip to the hub: it has finished handling both broadcasts.
    app.wait_for_sessions("clinic", (1, 1)).await;

    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = reply.raw;
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_ws_sessions{audience="totem",tenant="clinic"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_ws_sessions{audience="operator",tenant="clinic"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_events_broadcast_total{tenant="clinic"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, "nextup_broadcast_latency_seconds_count"),
        Some(2.0)
    );
    assert!(sample(&metrics, "nextup_broadcast_latency_seconds_sum").unwrap() >= 0.0);
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_http_requests_total{route="/api/v1/tenants/{slug}/tickets",status="201"}"#
        ),
        Some(1.0),
        "requests are counted by route pattern, not raw path"
    );
    assert!(sample(&metrics, r#"nextup_db_pool_connections{state="in_use"}"#).is_some());
    assert_eq!(
        sample(&metrics, "nextup_hub_log_reads_total"),
        Some(0.0),
        "changes made through this process reach its hub directly, not through the log"
    );

    // A session that goes away is counted down, with its reason.
    drop(desk);
    app.wait_for_sessions("clinic", (1, 0)).await;
    let metrics = app.get("/metrics", None).await.raw;
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_ws_sessions{audience="operator",tenant="clinic"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"nextup_ws_sessions_closed_total{reason="client_closed"}"#
        ),
        Some(1.0)
    );
}

/// `nextup_change_batch_size` observes each committed transaction of ticket changes with
/// the number of requests it answered: it agrees with the transactions in the event log.
#[actix_web::test]
async fn the_batch_size_metric_counts_each_committed_transaction_and_its_requests() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let path = format!("/api/v1/tenants/{}/tickets", site.slug);
    let issued = 40;
    let replies = futures_util::future::join_all((0..issued).map(|_| {
        app.post(
            &path,
            Some(&site.operator),
            serde_json::json!({ "service_id": site.services[0] }),
        )
    }))
    .await;
    for reply in replies {
        reply.expect(201);
    }
    // Events are never updated, so each row's xmin is the transaction that appended it.
    let transactions: i64 = sqlx::query_scalar("select count(distinct xmin::text) from events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let metrics = app.get("/metrics", None).await.raw;
    assert_eq!(
        sample(&metrics, "nextup_change_batch_size_sum"),
        Some(f64::from(issued)),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "nextup_change_batch_size_count"),
        Some(transactions as f64)
    );
}

#[actix_web::test]
async fn pages_carry_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    app.site("clinic", 1, 1).await;
    for path in [
        "/",
        "/t/clinic/display",
        "/t/clinic/totem",
        "/t/clinic/operator",
        "/static/js/live.js",
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, 200, "{path}");
        let csp = reply
            .header("Content-Security-Policy")
            .unwrap_or_default()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(
            reply.header("X-Content-Type-Options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("X-Frame-Options"), Some("DENY"), "{path}");
    }
}

#[actix_web::test]
async fn static_files_cannot_escape_the_static_directory() {
    let app = TestApp::spawn().await;
    for path in [
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/..%2fCargo.toml",
        "/static/js/../../Cargo.toml",
        "/static/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let reply = app.get(path, None).await;
        assert!(reply.status >= 400, "{path} answered {}", reply.status);
        assert!(
            !reply.raw.contains("[package]") && !reply.raw.contains("root:"),
            "{path} leaked a file"
        );
    }
}
