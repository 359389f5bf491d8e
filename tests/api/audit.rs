//! The audit log (contract §9): `GET …/audit` lists who did what to what, newest first.

use std::time::{Duration, Instant};

use actix_web::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

async fn audit(app: &TestApp, site: &Site, query: &str) -> Value {
    app.get(
        &format!("/api/v1/tenants/{}/audit{query}", site.slug),
        Some(&site.admin),
    )
    .await
    .expect(200)
}

fn actions(entries: &Value) -> Vec<&str> {
    entries["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> Reply {
    app.send(
        Method::PATCH,
        path,
        Some(token),
        &[],
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn login_reply(app: &TestApp, slug: &str, username: &str, password: &str) -> Reply {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({ "tenant": slug, "username": username, "password": password }),
    )
    .await
}

async fn user_id(app: &TestApp, site: &Site, username: &str) -> String {
    sqlx::query_scalar::<_, uuid::Uuid>(
        "select u.id from users u join tenants t on t.id = u.tenant_id
          where t.slug = $1 and u.username = $2",
    )
    .bind(&site.slug)
    .bind(username)
    .fetch_one(&app.pool)
    .await
    .unwrap()
    .to_string()
}

#[actix_web::test]
async fn every_administrative_action_is_recorded_with_its_user_and_target_newest_first() {
    let app = TestApp::spawn().await;
    // The site's set-up logs in the admin "boss" (made directly in the database, as the
    // CLI does: not audited), creates the operator "olga" and logs her in, then creates a
    // service and a counter.
    let site = app.site("clinic", 1, 1).await;
    let boss = json!({ "id": user_id(&app, &site, "boss").await, "username": "boss" });
    let olga_id = user_id(&app, &site, "olga").await;
    let olga = json!({ "id": olga_id, "username": "olga" });
    let base = format!("/api/v1/tenants/{}", site.slug);

    patch(
        &app,
        &format!("{base}/services/{}", site.services[0]),
        &site.admin,
        json!({ "name": "General" }),
    )
    .await
    .expect(200);
    patch(
        &app,
        &format!("{base}/counters/{}", site.counters[0]),
        &site.admin,
        json!({ "active": false }),
    )
    .await
    .expect(200);
    patch(
        &app,
        &format!("{base}/settings"),
        &site.admin,
        json!({ "max_calls": 3 }),
    )
    .await
    .expect(200);
    app.post(&format!("{base}/day/close"), Some(&site.admin), json!({}))
        .await
        .expect(200);
    login_reply(&app, &site.slug, "olga", "not-her-password")
        .await
        .expect_error(401, "invalid_credentials");
    login_reply(&app, &site.slug, "nobody", "a-guess-at-random")
        .await
        .expect_error(401, "invalid_credentials");

    let log = audit(&app, &site, "").await;
    assert_eq!(
        actions(&log),
        [
            "login_failed",
            "login_failed",
            "day_closed",
            "settings_updated",
            "counter_updated",
            "service_updated",
            "counter_created",
            "service_created",
            "login",
            "user_created",
            "login",
        ],
        "{log}"
    );
    let entries = log["entries"].as_array().unwrap();
    let tenant_id = app.tenant_id(&site.slug).await;
    let tenant = json!({ "type": "tenant", "id": tenant_id, "name": "Tenant clinic" });
    let service = json!({ "type": "service", "id": site.services[0], "name": "General" });
    let counter = json!({ "type": "counter", "id": site.counters[0], "name": "Desk 1" });
    let olga_target = json!({ "type": "user", "id": olga_id, "name": "olga" });
    let expected = [
        // An unknown username: no user, no target, and not what was typed.
        (Value::Null, Value::Null),
        // A known username: that user, who is also the target.
        (olga.clone(), olga_target.clone()),
        (boss.clone(), tenant.clone()),
        (boss.clone(), tenant.clone()),
        (boss.clone(), counter.clone()),
        (boss.clone(), service.clone()),
        (boss.clone(), counter),
        (
            boss.clone(),
            json!({ "type": "service", "id": site.services[0], "name": "Service A" }),
        ),
        (olga.clone(), olga_target.clone()),
        (boss.clone(), olga_target),
        (
            boss.clone(),
            json!({ "type": "user", "id": boss["id"], "name": "boss" }),
        ),
    ];
    for (i, (entry, (user, target))) in entries.iter().zip(expected).enumerate() {
        assert_eq!(entry["user"], user, "entry {i}: {entry}");
        assert_eq!(entry["target"], target, "entry {i}: {entry}");
    }
    // Newest first, by time.
    let times: Vec<DateTime<Utc>> = entries
        .iter()
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    // No password is kept, and the unknown username is not either.
    let stored: Vec<String> = sqlx::query_scalar("select a::text from audit_log a")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    for row in &stored {
        for secret in [
            "not-her-password",
            "a-guess-at-random",
            "nobody",
            "password",
        ] {
            assert!(!row.contains(secret), "{secret} in {row}");
        }
    }

    // The limit takes the newest ones.
    let two = audit(&app, &site, "?limit=2").await;
    assert_eq!(actions(&two), ["login_failed", "login_failed"]);
    assert_eq!(two["entries"][1]["user"], olga);
    let all = audit(&app, &site, "?limit=1000").await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 11);
}

#[actix_web::test]
async fn a_refused_change_records_nothing_and_the_limit_is_bounded() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let base = format!("/api/v1/tenants/{}", site.slug);
    let before = audit(&app, &site, "").await;

    app.post(
        &format!("{base}/services"),
        Some(&site.admin),
        json!({ "code": "A", "name": "Again" }),
    )
    .await
    .expect_error(409, "service_code_taken");
    app.post(
        &format!("{base}/counters"),
        Some(&site.admin),
        json!({ "name": "Desk 1" }),
    )
    .await
    .expect_error(409, "counter_name_taken");
    app.post(
        &format!("{base}/users"),
        Some(&site.admin),
        json!({ "username": "OLGA", "password": "another-password", "role": "operator" }),
    )
    .await
    .expect_error(409, "username_taken");
    app.post(
        &format!("{base}/counters"),
        Some(&site.admin),
        json!({ "name": "Desk 2" }),
    )
    .await
    .expect(201);
    patch(
        &app,
        &format!("{base}/counters/{}", site.counters[0]),
        &site.admin,
        json!({ "name": "Desk 2" }),
    )
    .await
    .expect_error(409, "counter_name_taken");
    patch(
        &app,
        &format!("{base}/settings"),
        &site.admin,
        json!({ "max_calls": "three" }),
    )
    .await
    .expect_error(422, "invalid_input");

    let after = audit(&app, &site, "").await;
    let mut expected = vec!["counter_created"];
    expected.extend(actions(&before));
    assert_eq!(actions(&after), expected, "{after}");

    for bad in ["0", "1001", "-3", "ten", ""] {
        app.get(&format!("{base}/audit?limit={bad}"), Some(&site.admin))
            .await
            .expect_error(400, "invalid_query");
    }
}

#[actix_web::test]
async fn only_the_tenants_admins_read_its_audit_log() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 0, 0).await;
    let other = app.site("garage", 0, 0).await;
    let path = format!("/api/v1/tenants/{}/audit", site.slug);
    app.get(&path, Some(&site.operator))
        .await
        .expect_error(403, "admin_required");
    app.get(&path, Some(&other.admin))
        .await
        .expect_error(403, "wrong_tenant");
    app.get(&path, None)
        .await
        .expect_error(401, "missing_token");
    // Each tenant sees its own entries only: the other's boss is not this one's.
    let theirs = audit(&app, &other, "").await;
    assert_eq!(actions(&theirs), ["login", "user_created", "login"]);
    let boss = user_id(&app, &site, "boss").await;
    let their_boss = user_id(&app, &other, "boss").await;
    assert_eq!(theirs["entries"][2]["user"]["id"], their_boss.as_str());
    for entry in theirs["entries"].as_array().unwrap() {
        assert_ne!(entry["user"]["id"], boss.as_str(), "{entry}");
    }
}

#[actix_web::test]
async fn an_automatic_close_of_the_day_is_recorded_without_a_user() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 0).await;
    let midnight: DateTime<Utc> = "2026-12-09T00:00:00Z".parse().unwrap();
    app.clock.jump_to(midnight - chrono::Duration::seconds(2));
    app.issue(&site, 0).await;
    app.clock.jump_to(midnight);

    let deadline = Instant::now() + Duration::from_secs(20);
    let entry = loop {
        let log = audit(&app, &site, "?limit=1").await;
        if log["entries"][0]["action"] == "day_closed" {
            break log["entries"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no automatic close recorded: {log}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["user"], Value::Null);
    assert_eq!(entry["target"]["type"], "tenant");
    assert_eq!(entry["target"]["name"], "Tenant clinic");
    let at: DateTime<Utc> = entry["at"].as_str().unwrap().parse().unwrap();
    assert!(at >= midnight, "{at}");
}

#[actix_web::test]
async fn entries_older_than_the_retention_are_pruned() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 0, 0).await;
    let now = Utc::now();
    // An entry written 401 days ago, and one 399 days ago.
    sqlx::query(
        "insert into audit_log (tenant_id, at, action)
         select id, $2, 'day_closed' from tenants where slug = $1
         union all
         select id, $3, 'day_closed' from tenants where slug = $1",
    )
    .bind(&site.slug)
    .bind(now - chrono::Duration::days(401))
    .bind(now - chrono::Duration::days(399))
    .execute(&app.pool)
    .await
    .unwrap();
    let retention = Duration::from_secs(400 * 86_400);
    let pruned = nextup::maintenance::prune_audit_once(&app.pool, app.clock.as_ref(), retention)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let log = audit(&app, &site, "?limit=1000").await;
    let oldest = log["entries"].as_array().unwrap().last().unwrap().clone();
    let at: DateTime<Utc> = oldest["at"].as_str().unwrap().parse().unwrap();
    assert!(at > now - chrono::Duration::days(400), "{oldest}");
    assert_eq!(
        actions(&log),
        ["login", "user_created", "login", "day_closed"]
    );
}
