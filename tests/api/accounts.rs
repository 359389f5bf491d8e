//! Accounts administration (contract §9): listing and changing users, the last admin,
//! changing one's own password, and revoked tokens on this process and on another one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::WsClient;

fn users(site: &Site) -> String {
    format!("/api/v1/tenants/{}/users", site.slug)
}

async fn user_id(app: &TestApp, site: &Site, username: &str) -> String {
    user_id_as(app, site, &site.admin, username).await
}

async fn user_id_as(app: &TestApp, site: &Site, admin: &str, username: &str) -> String {
    let list = app.get(&users(site), Some(admin)).await.expect(200);
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("{username} is listed: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn patch_user(app: &TestApp, site: &Site, token: &str, id: &str, body: Value) -> Reply {
    app.patch(&format!("{}/{id}", users(site)), Some(token), body)
        .await
}

/// A request any operator may make, to tell whether a token is still accepted.
async fn counters_with(app: &TestApp, site: &Site, token: &str) -> Reply {
    app.get(
        &format!("/api/v1/tenants/{}/counters", site.slug),
        Some(token),
    )
    .await
}

async fn login_reply(app: &TestApp, site: &Site, username: &str, password: &str) -> Reply {
    app.post(
        "/api/v1/auth/login",
        None,
        json!({ "tenant": site.slug, "username": username, "password": password }),
    )
    .await
}

async fn audit_actions(app: &TestApp, site: &Site) -> Vec<(String, Option<String>)> {
    let log = app
        .get(
            &format!("/api/v1/tenants/{}/audit", site.slug),
            Some(&site.admin),
        )
        .await
        .expect(200);
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"]["name"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Polls until the token is refused with 401 `token_revoked`; panics after 5 s.
async fn until_revoked(app: &TestApp, site: &Site, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        let reply = counters_with(app, site, token).await;
        if reply.status == 401 {
            reply.expect_error(401, "token_revoked");
            return start.elapsed();
        }
        assert_eq!(reply.status, 200, "{}", reply.raw);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the token is still accepted"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn admins_list_users_with_their_role_access_and_last_login() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let list = app.get(&users(&site), Some(&site.admin)).await.expect(200);
    let listed = list["users"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{list}");
    let names: Vec<&str> = listed
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boss", "olga"], "by username");
    for user in listed {
        let mut keys: Vec<&str> = user.as_object().unwrap().keys().map(|k| &**k).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["active", "id", "last_login_at", "role", "username"],
            "never the password: {user}"
        );
        assert_eq!(user["active"], true);
        // Both logged in when the site was made.
        let at = user["last_login_at"].as_str().expect("a login time");
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    }
    assert_eq!(listed[0]["role"], "admin");
    assert_eq!(listed[1]["role"], "operator");

    // A user who never logged in has none.
    app.post(
        &users(&site),
        Some(&site.admin),
        json!({ "username": "newbie", "password": "newbie-password", "role": "operator" }),
    )
    .await
    .expect(201);
    let newbie = user_id(&app, &site, "newbie").await;
    let list = app.get(&users(&site), Some(&site.admin)).await.expect(200);
    let entry = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == newbie.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["last_login_at"], Value::Null);

    app.get(&users(&site), Some(&site.operator))
        .await
        .expect_error(403, "admin_required");
    app.get(&users(&site), None)
        .await
        .expect_error(401, "missing_token");
}

#[actix_web::test]
async fn a_deactivated_user_cannot_log_in_and_their_tokens_are_refused_at_once() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let olga = user_id(&app, &site, "olga").await;
    counters_with(&app, &site, &site.operator).await.expect(200);

    let changed = patch_user(&app, &site, &site.admin, &olga, json!({ "active": false }))
        .await
        .expect(200);
    assert_eq!(changed["active"], false);
    assert_eq!(changed["role"], "operator");
    // At once on the process that made the change: no waiting.
    counters_with(&app, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");
    // The same answer as a wrong password.
    login_reply(&app, &site, "olga", "olga-password")
        .await
        .expect_error(401, "invalid_credentials");
    login_reply(&app, &site, "olga", "wrong-password")
        .await
        .expect_error(401, "invalid_credentials");

    // Back again: a new login works, the old token stays refused.
    patch_user(&app, &site, &site.admin, &olga, json!({ "active": true }))
        .await
        .expect(200);
    let fresh = app.login(&site.slug, "olga", "olga-password").await;
    counters_with(&app, &site, &fresh).await.expect(200);
    counters_with(&app, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");

    let actions = audit_actions(&app, &site).await;
    assert_eq!(
        actions[..3],
        [
            ("login".to_owned(), Some("olga".to_owned())),
            ("user_updated".to_owned(), Some("olga".to_owned())),
            ("login_failed".to_owned(), Some("olga".to_owned())),
        ],
        "newest first: {actions:?}"
    );
}

#[actix_web::test]
async fn a_role_or_password_change_revokes_tokens_and_takes_effect() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let olga = user_id(&app, &site, "olga").await;

    let promoted = patch_user(&app, &site, &site.admin, &olga, json!({ "role": "admin" }))
        .await
        .expect(200);
    assert_eq!(promoted["role"], "admin");
    counters_with(&app, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");
    let as_admin = app.login(&site.slug, "olga", "olga-password").await;
    app.get(&users(&site), Some(&as_admin)).await.expect(200);

    patch_user(
        &app,
        &site,
        &site.admin,
        &olga,
        json!({ "password": "a-new-password" }),
    )
    .await
    .expect(200);
    counters_with(&app, &site, &as_admin)
        .await
        .expect_error(401, "token_revoked");
    login_reply(&app, &site, "olga", "olga-password")
        .await
        .expect_error(401, "invalid_credentials");
    app.login(&site.slug, "olga", "a-new-password").await;

    // A change that changes nothing revokes nothing and is not recorded.
    let token = app.login(&site.slug, "olga", "a-new-password").await;
    let before = audit_actions(&app, &site).await.len();
    patch_user(&app, &site, &site.admin, &olga, json!({ "role": "admin" }))
        .await
        .expect(200);
    patch_user(&app, &site, &site.admin, &olga, json!({}))
        .await
        .expect(200);
    counters_with(&app, &site, &token).await.expect(200);
    let actions = audit_actions(&app, &site).await;
    // The role "change" to the same role is recorded as an update, the empty one is not.
    assert_eq!(actions.len(), before + 1, "{actions:?}");
}

#[actix_web::test]
async fn bad_user_changes_get_the_error_body() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let olga = user_id(&app, &site, "olga").await;
    for (body, status, code) in [
        (json!({ "role": "boss" }), 422, "invalid_body"),
        (json!({ "active": "no" }), 422, "invalid_body"),
        (json!({ "password": "short" }), 422, "invalid_input"),
        (json!({ "username": "renamed" }), 422, "invalid_body"),
    ] {
        patch_user(&app, &site, &site.admin, &olga, body.clone())
            .await
            .expect_error(status, code);
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    patch_user(
        &app,
        &site,
        &site.admin,
        &unknown,
        json!({ "active": false }),
    )
    .await
    .expect_error(404, "user_not_found");
    patch_user(&app, &site, &site.admin, "not-a-uuid", json!({}))
        .await
        .expect_error(400, "invalid_path");
    patch_user(
        &app,
        &site,
        &site.operator,
        &olga,
        json!({ "active": false }),
    )
    .await
    .expect_error(403, "admin_required");
    // A user of another tenant is not found through this one.
    let other = app.site("other", 1, 1).await;
    let foreign = user_id(&app, &other, "olga").await;
    patch_user(
        &app,
        &site,
        &site.admin,
        &foreign,
        json!({ "active": false }),
    )
    .await
    .expect_error(404, "user_not_found");
    counters_with(&app, &other, &other.operator)
        .await
        .expect(200);
}

#[actix_web::test]
async fn the_last_active_admin_cannot_be_demoted_or_deactivated() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let boss = user_id(&app, &site, "boss").await;
    for body in [json!({ "role": "operator" }), json!({ "active": false })] {
        patch_user(&app, &site, &site.admin, &boss, body)
            .await
            .expect_error(409, "last_admin");
    }
    // Refused changes revoke nothing.
    app.get(&users(&site), Some(&site.admin)).await.expect(200);
    // An inactive admin is no admin either.
    let olga = user_id(&app, &site, "olga").await;
    patch_user(
        &app,
        &site,
        &site.admin,
        &olga,
        json!({ "role": "admin", "active": false }),
    )
    .await
    .expect(200);
    patch_user(
        &app,
        &site,
        &site.admin,
        &boss,
        json!({ "role": "operator" }),
    )
    .await
    .expect_error(409, "last_admin");
}

#[actix_web::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let boss = user_id(&app, &site, "boss").await;
    // Each round the boss logs in again: a round may demote and restore them.
    for round in 0..5 {
        let name = format!("second{round}");
        let boss_token = app.login(&site.slug, "boss", "boss-password").await;
        app.post(
            &users(&site),
            Some(&boss_token),
            json!({ "username": name, "password": "second-password", "role": "admin" }),
        )
        .await
        .expect(201);
        let second = user_id_as(&app, &site, &boss_token, &name).await;
        let second_token = app.login(&site.slug, &name, "second-password").await;
        let (a, b) = futures_util::future::join(
            patch_user(
                &app,
                &site,
                &boss_token,
                &second,
                json!({ "role": "operator" }),
            ),
            patch_user(
                &app,
                &site,
                &second_token,
                &boss,
                json!({ "role": "operator" }),
            ),
        )
        .await;
        let statuses = [a.status, b.status];
        // One wins; the other finds itself the last admin (409) or, if the winner's change
        // came first, its own token already revoked (401).
        assert!(
            statuses.iter().filter(|&&s| s == 200).count() == 1
                && statuses.iter().all(|s| [200, 401, 409].contains(s)),
            "round {round}: {statuses:?} {} {}",
            a.raw,
            b.raw
        );
        let admins: i64 = sqlx::query_scalar(
            "select count(*) from users where role = 'admin' and active
               and tenant_id = (select id from tenants where slug = 'clinic')",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(admins, 1, "round {round}");
        // Make boss the one admin again for the next round.
        if b.status == 200 {
            let token = app.login(&site.slug, &name, "second-password").await;
            patch_user(&app, &site, &token, &boss, json!({ "role": "admin" }))
                .await
                .expect(200);
        }
        let boss_token = app.login(&site.slug, "boss", "boss-password").await;
        patch_user(
            &app,
            &site,
            &boss_token,
            &second,
            json!({ "active": false, "role": "operator" }),
        )
        .await
        .expect(200);
    }
}

#[actix_web::test]
async fn users_change_their_own_password() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let path = "/api/v1/auth/password";
    app.post(
        path,
        Some(&site.operator),
        json!({ "current_password": "wrong-password", "new_password": "olga-new-password" }),
    )
    .await
    .expect_error(401, "invalid_credentials");
    app.post(
        path,
        Some(&site.operator),
        json!({ "current_password": "olga-password", "new_password": "short" }),
    )
    .await
    .expect_error(422, "invalid_input");
    app.post(
        path,
        Some(&site.operator),
        json!({ "current_password": "x" }),
    )
    .await
    .expect_error(422, "invalid_body");
    app.post(
        path,
        None,
        json!({ "current_password": "olga-password", "new_password": "olga-new-password" }),
    )
    .await
    .expect_error(401, "missing_token");
    // Nothing was changed by the refused attempts.
    counters_with(&app, &site, &site.operator).await.expect(200);

    let reply = app
        .post(
            path,
            Some(&site.operator),
            json!({ "current_password": "olga-password", "new_password": "olga-new-password" }),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.raw);
    assert!(reply.raw.is_empty());
    // Their own change included: the token used is refused from now on.
    counters_with(&app, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");
    login_reply(&app, &site, "olga", "olga-password")
        .await
        .expect_error(401, "invalid_credentials");
    let fresh = app.login(&site.slug, "olga", "olga-new-password").await;
    counters_with(&app, &site, &fresh).await.expect(200);
    // Admins too.
    let reply = app
        .post(
            path,
            Some(&site.admin),
            json!({ "current_password": "boss-password", "new_password": "boss-new-password" }),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.raw);
    let admin = app.login(&site.slug, "boss", "boss-new-password").await;
    let actions = audit_actions(&app, &Site { admin, ..site }).await;
    let entry = |action: &str, name: &str| (action.to_owned(), Some(name.to_owned()));
    assert_eq!(
        actions[..5],
        [
            entry("login", "boss"),
            entry("user_updated", "boss"),
            entry("login", "olga"),
            entry("login_failed", "olga"),
            entry("user_updated", "olga"),
        ],
        "newest first: {actions:?}"
    );
}

/// Two processes A and B on one database, a site, and olga's id; B has checked olga's token
/// once, so from then on it answers from memory.
async fn two_processes() -> (TestApp, TestApp, Site, String) {
    let a = TestApp::spawn().await;
    let b = a.spawn_sibling().await;
    let site = a.site("clinic", 1, 1).await;
    b.wait_for_listener().await;
    let olga = user_id(&a, &site, "olga").await;
    counters_with(&b, &site, &site.operator).await.expect(200);
    (a, b, site, olga)
}

fn operator_path(site: &Site, token: &str) -> String {
    format!("/ws/{}/operator?token={token}", site.slug)
}

#[actix_web::test]
async fn a_revocation_reaches_another_process_and_closes_sessions_on_both() {
    let (a, b, site, olga) = two_processes().await;
    let path = operator_path(&site, &site.operator);
    let mut on_a = WsClient::connect(&a, &path).await;
    on_a.start().await;
    let mut on_b = WsClient::connect(&b, &path).await;
    on_b.start().await;
    // A totem and the admin's own session are not touched.
    let mut totem = WsClient::connect(&b, &format!("/ws/{}/totem", site.slug)).await;
    totem.start().await;
    let mut admin_on_b = WsClient::connect(&b, &operator_path(&site, &site.admin)).await;
    admin_on_b.start().await;
    b.wait_for_sessions(&site.slug, (1, 2)).await;

    patch_user(&a, &site, &site.admin, &olga, json!({ "active": false }))
        .await
        .expect(200);
    counters_with(&a, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");
    let took = until_revoked(&b, &site, &site.operator).await;
    println!("the other process refused the token after {took:?}");
    assert_eq!(on_a.closed().await, Some(4001));
    assert_eq!(on_b.closed().await, Some(4001));
    b.wait_for_sessions(&site.slug, (1, 1)).await;
    // The revoked token cannot open a new session either.
    let refused = b.get(&path, None).await;
    refused.expect_error(401, "token_revoked");
    // The others still get events.
    a.issue(&site, 0).await;
    assert_eq!(totem.next_event().await["type"], "ticket_update");
    assert_eq!(admin_on_b.next_event().await["type"], "ticket_update");
}

#[actix_web::test]
async fn a_revocation_missed_while_not_listening_is_read_when_listening_again() {
    let (a, b, site, olga) = two_processes().await;
    let mut on_b = WsClient::connect(&b, &operator_path(&site, &site.operator)).await;
    on_b.start().await;
    b.wait_for_sessions(&site.slug, (0, 1)).await;

    // B's listener is gone (waited for) before the change: its notification is lost.
    let pid = b.hubs.listener_backend_pid();
    let killed: bool = sqlx::query_scalar("select pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert!(killed);
    patch_user(&a, &site, &site.admin, &olga, json!({ "active": false }))
        .await
        .expect(200);
    // B no longer trusts what it kept: the token is refused whether or not it listens yet.
    counters_with(&b, &site, &site.operator)
        .await
        .expect_error(401, "token_revoked");
    // Once it listens again it reads what it missed and closes the session.
    assert_eq!(on_b.closed().await, Some(4001));
    assert_ne!(b.hubs.listener_backend_pid(), pid);
}
