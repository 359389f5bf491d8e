//! Faults by SQLSTATE: PostgreSQL refusing the test database (55000, `ALLOW_CONNECTIONS
//! false`), ending the app's sessions (57P01), refusing sessions over a connection limit
//! (53300) and not finding the database (3D000). Ticket changes answer 503
//! `database_unavailable` with `Retry-After` while it lasts, never 500, and work again by
//! themselves when it is over, with a gapless event log. (57P03, "the database system is
//! starting up", needs a restart of the shared cluster: the classifier's unit test covers it.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::helpers::*;

/// A connection to the server's maintenance database: what is done to the test database
/// does not refuse or end it.
async fn server_admin() -> PgConnection {
    PgConnection::connect(&format!("{}/postgres", postgres_server_url()))
        .await
        .expect("admin connection")
}

async fn alter_database(db_name: &str, change: &str) {
    server_admin()
        .await
        .execute(format!(r#"alter database "{db_name}" {change}"#).as_str())
        .await
        .expect("alter database");
}

/// Ends every session on the database (the app's pools and listener, the test's pool),
/// waiting until each backend is gone, as PostgreSQL does in a restart or fail-over.
async fn end_sessions(db_name: &str) {
    let ended: i64 = sqlx::query_scalar(
        "select count(*) filter (where pg_terminate_backend(pid, 5000)) \
         from pg_stat_activity where datname = $1",
    )
    .bind(db_name)
    .fetch_one(&mut server_admin().await)
    .await
    .expect("terminate backends");
    assert!(ended >= 1, "ended {ended} sessions");
}

/// A new session at `url` is refused with `code`: the fault is the one the test names.
async fn new_sessions_are_refused_with(url: &str, code: &str) {
    let refused = PgConnection::connect(url)
        .await
        .expect_err("PostgreSQL refuses the session");
    let got = refused.as_database_error().and_then(|e| e.code());
    assert_eq!(got.as_deref(), Some(code), "{refused}");
}

/// The test database's URL, as the app's default pools reach it.
fn app_database_url(app: &TestApp) -> String {
    format!("{}/{}", postgres_server_url(), app.db_name)
}

/// Runs `statement` on the maintenance database when dropped, so that a failed test
/// still cleans up the cluster (as `drop_test_database` does, on a runtime of its own).
struct OnDrop(String);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let admin_url = format!("{}/postgres", postgres_server_url());
        let statement = std::mem::take(&mut self.0);
        let done = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let mut conn = PgConnection::connect(&admin_url).await?;
                conn.execute(statement.as_str()).await.map(|_| ())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = done.map_err(|_| sqlx::Error::PoolClosed) {
            eprintln!("clean-up failed: {e}");
        }
    }
}

/// A site with two waiting tickets, the first called to desk 1 (seq 3), and that ticket.
async fn busy_site(app: &TestApp) -> (Site, Value) {
    let site = app.site("clinic", 1, 2).await;
    let first = app.issue(&site, 0).await;
    app.issue(&site, 0).await;
    let called = app.call_next(&site, 0).await.expect(200);
    assert_eq!(called["id"], first["id"]);
    (site, called)
}

const CHANGES_OF_BUSY_SITE: i64 = 3;

/// One change of each kind: an anonymous and an operator issue, a call-next to desk 2 and
/// a recall of the called ticket.
async fn every_kind_of_change(
    app: &TestApp,
    site: &Site,
    called: &Value,
) -> Vec<(&'static str, Reply)> {
    let issue_path = format!("/api/v1/tenants/{}/tickets", site.slug);
    let issue_body = json!({ "service_id": site.services[0] });
    vec![
        (
            "anonymous issue",
            app.post(&issue_path, None, issue_body.clone()).await,
        ),
        (
            "operator issue",
            app.post(&issue_path, Some(&site.operator), issue_body)
                .await,
        ),
        ("call-next", app.call_next(site, 1).await),
        ("recall", app.act(site, called, "recall").await),
    ]
}

#[track_caller]
fn assert_unavailable(kind: &str, reply: Reply) {
    assert_eq!(
        (reply.status, reply.header("Retry-After")),
        (503, Some("5")),
        "{kind}: {}",
        reply.raw
    );
    reply.expect_error(503, "database_unavailable");
}

/// Each kind of change answers 503 `database_unavailable` with `Retry-After`.
async fn changes_answer_503(app: &TestApp, site: &Site, called: &Value) {
    let replies = every_kind_of_change(app, site, called).await;
    let seen: Vec<_> = replies
        .iter()
        .map(|(kind, reply)| {
            let code = reply.body["error"]["code"].as_str().unwrap_or_default();
            (*kind, reply.status, code, reply.header("Retry-After"))
        })
        .collect();
    let expected: Vec<_> = replies
        .iter()
        .map(|(kind, _)| (*kind, 503, "database_unavailable", Some("5")))
        .collect();
    assert_eq!(seen, expected);
    for (kind, reply) in replies {
        assert_unavailable(kind, reply);
    }
}

/// Issues anonymously until it works (each try before answering 503), within 10 s.
async fn issue_once_recovered(app: &TestApp, site: &Site) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app
            .post(
                &format!("/api/v1/tenants/{}/tickets", site.slug),
                None,
                json!({ "service_id": site.services[0] }),
            )
            .await;
        if reply.status == 201 {
            return reply.body;
        }
        assert_unavailable("issue while recovering", reply);
        assert!(Instant::now() < deadline, "changes never worked again");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// After recovery of a busy site whose changes were all refused: the refused changes left
/// nothing behind, every kind works again, and the log is gapless.
async fn every_kind_works_again(app: &TestApp, site: &Site, called: &Value) {
    let issued = issue_once_recovered(app, site).await;
    assert_eq!(issued["code"], "A003", "a refused issue took a number");
    let replies = every_kind_of_change(app, site, called).await;
    let statuses: Vec<(&str, u16)> = replies.iter().map(|(k, r)| (*k, r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("anonymous issue", 201),
            ("operator issue", 201),
            ("call-next", 200),
            ("recall", 200)
        ],
        "{replies:?}"
    );
    assert_log_is_gapless(app, site, CHANGES_OF_BUSY_SITE + 5).await;
}

/// The log holds `changes` changes, seq 1 to `changes` in order, each a `ticket_update`
/// then its `queue_update`, and the tenant's seq is the last of them.
async fn assert_log_is_gapless(app: &TestApp, site: &Site, changes: i64) {
    let log = app.public_event_log(site).await;
    assert_eq!(log["seq"], changes, "{log}");
    let seen: Vec<(i64, &str)> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["seq"].as_i64().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    let expected: Vec<(i64, &str)> = (1..=changes)
        .flat_map(|seq| [(seq, "ticket_update"), (seq, "queue_update")])
        .collect();
    assert_eq!(seen, expected);
}

#[actix_web::test]
async fn changes_answer_503_while_the_database_refuses_connections_then_recover() {
    let app = TestApp::spawn().await;
    let (site, called) = busy_site(&app).await;

    // 55000 "database … is not currently accepting connections" at every new session.
    alter_database(&app.db_name, "allow_connections false").await;
    let _allow_again = OnDrop(format!(
        r#"alter database "{}" allow_connections true"#,
        app.db_name
    ));
    end_sessions(&app.db_name).await;
    new_sessions_are_refused_with(&app_database_url(&app), "55000").await;
    changes_answer_503(&app, &site, &called).await;

    alter_database(&app.db_name, "allow_connections true").await;
    every_kind_works_again(&app, &site, &called).await;
}

#[actix_web::test]
async fn changes_right_after_the_database_ended_every_session_succeed_or_answer_503() {
    let app = TestApp::spawn().await;
    let (site, called) = busy_site(&app).await;

    // 57P01 "terminating connection due to administrator command" on every pooled
    // connection, as on this one; new sessions are allowed.
    let mut witness = PgConnection::connect(&app_database_url(&app))
        .await
        .unwrap();
    end_sessions(&app.db_name).await;
    let ended = witness
        .execute("select 1")
        .await
        .expect_err("session ended");
    let got = ended.as_database_error().and_then(|e| e.code());
    assert_eq!(got.as_deref(), Some("57P01"), "{ended}");
    let mut changed = 0;
    for (kind, reply) in every_kind_of_change(&app, &site, &called).await {
        if reply.status == 503 {
            assert_unavailable(kind, reply);
        } else {
            assert!(
                [200, 201].contains(&reply.status),
                "{kind}: {} {}",
                reply.status,
                reply.raw
            );
            changed += 1;
        }
    }
    issue_once_recovered(&app, &site).await;
    assert_log_is_gapless(&app, &site, CHANGES_OF_BUSY_SITE + changed + 1).await;
}

#[actix_web::test]
async fn changes_answer_503_while_the_database_has_too_many_connections_then_recover() {
    // Superusers ignore a database's CONNECTION LIMIT: the app logs in as a role of its
    // own, which creates (and so owns) the test database. The role goes after the database.
    let role = format!("nextup_app_{}", Uuid::new_v4().simple());
    server_admin()
        .await
        .execute(format!(r#"create role "{role}" login createdb"#).as_str())
        .await
        .expect("create role");
    let _drop_role = OnDrop(format!(r#"drop role if exists "{role}""#));
    let server = postgres_server_url();
    let (_, address) = server.rsplit_once('@').expect("user@host in the URL");
    let app_server = format!("postgres://{role}@{address}");
    let app = TestApp::spawn_through(&app_server, |_| {}).await;
    let (site, called) = busy_site(&app).await;

    // 53300 "too many connections for database" at every new session of the app.
    alter_database(&app.db_name, "connection limit 0").await;
    let _unlimit = OnDrop(format!(
        r#"alter database "{}" connection limit -1"#,
        app.db_name
    ));
    end_sessions(&app.db_name).await;
    new_sessions_are_refused_with(&format!("{app_server}/{}", app.db_name), "53300").await;
    changes_answer_503(&app, &site, &called).await;

    alter_database(&app.db_name, "connection limit -1").await;
    every_kind_works_again(&app, &site, &called).await;
}

#[actix_web::test]
async fn changes_answer_503_while_the_database_is_not_found_then_recover() {
    let app = TestApp::spawn().await;
    let (site, called) = busy_site(&app).await;

    // 3D000 "database … does not exist": the database is renamed away (which needs its
    // sessions gone, so it refuses new ones meanwhile) and back.
    let moved = format!("{}_moved", app.db_name);
    let _drop_moved = OnDrop(format!(r#"drop database if exists "{moved}" with (force)"#));
    alter_database(&app.db_name, "allow_connections false").await;
    end_sessions(&app.db_name).await;
    alter_database(&app.db_name, &format!(r#"rename to "{moved}""#)).await;
    alter_database(&moved, "allow_connections true").await;
    new_sessions_are_refused_with(&app_database_url(&app), "3D000").await;
    changes_answer_503(&app, &site, &called).await;

    alter_database(&moved, &format!(r#"rename to "{}""#, app.db_name)).await;
    every_kind_works_again(&app, &site, &called).await;
}
