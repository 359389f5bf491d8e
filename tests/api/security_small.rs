//! Issue 18, item 6: the small holes. Each test replays what the probe did.

use actix_web::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

const WS_UPGRADE: [(&str, &str); 4] = [
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[actix_web::test]
async fn a_slug_that_cannot_exist_is_tenant_not_found_everywhere_never_a_500() {
    let app = TestApp::spawn().await;
    let site = app.site("demo", 1, 1).await;
    let ticket = app.issue(&site, 0).await;
    let id = ticket["id"].as_str().unwrap();
    let service = &site.services[0];
    let too_long = "x".repeat(65);
    for slug in ["demo%00", "de%00mo", "demo%01", "Demo", too_long.as_str()] {
        let reads = [
            format!("/api/v1/tenants/{slug}/queue"),
            format!("/api/v1/tenants/{slug}/services"),
            format!("/api/v1/tenants/{slug}/events?since=0"),
            format!("/api/v1/tenants/{slug}/tickets/{id}"),
            format!("/t/{slug}/totem"),
            format!("/t/{slug}/ticket/{id}"),
            format!("/t/{slug}/ticket/{id}/qr.svg"),
        ];
        for path in reads {
            app.get(&path, None)
                .await
                .expect_error(404, "tenant_not_found");
        }
        app.post(
            &format!("/api/v1/tenants/{slug}/tickets"),
            None,
            json!({ "service_id": service }),
        )
        .await
        .expect_error(404, "tenant_not_found");
        app.send(
            Method::GET,
            &format!("/ws/{slug}/totem"),
            None,
            &WS_UPGRADE,
            None,
        )
        .await
        .expect_error(404, "tenant_not_found");
    }
    // Login names the tenant in its body: an impossible one is the usual 401, as for any
    // unknown tenant; so is a NUL in the username.
    for (tenant, username) in [("demo\0", "boss"), ("demo", "bo\0ss")] {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": tenant, "username": username, "password": "boss-password" }),
        )
        .await
        .expect_error(401, "invalid_credentials");
    }
    // The real tenant still answers.
    app.get("/api/v1/tenants/demo/queue", None)
        .await
        .expect(200);
}

/// The ticket's QR code, fetched with these extra headers.
async fn ticket_qr(app: &TestApp, site: &Site, id: &str, headers: &[(&str, &str)]) -> Reply {
    app.send(
        Method::GET,
        &format!("/t/{}/ticket/{id}/qr.svg", site.slug),
        None,
        headers,
        None,
    )
    .await
}

const FORGED: [(&str, &str); 3] = [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "host=evil.example;proto=https"),
];

#[actix_web::test]
async fn the_qr_code_ignores_forwarded_headers_from_clients_that_are_not_trusted_proxies() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let id = app.issue(&site, 0).await["id"].as_str().unwrap().to_owned();
    let honest = ticket_qr(&app, &site, &id, &[]).await;
    let forged = ticket_qr(&app, &site, &id, &FORGED).await;
    assert_eq!(forged.status, 200);
    // (SVGs compared with assert!, so that a failure does not print pages of paths.)
    assert!(
        forged.raw == honest.raw,
        "a client's forwarded headers changed the QR code"
    );
    // The request's own Host: what the test client used to reach the server.
    let host = app.base.trim_start_matches("http://");
    let expected =
        nextup::http::pages::ticket_qr_svg(&format!("http://{host}/t/clinic/ticket/{id}")).unwrap();
    assert!(
        forged.raw == expected,
        "not the QR code of the request's own host"
    );
    for reply in [&honest, &forged] {
        assert_eq!(
            reply.header("Cache-Control"),
            Some("private, max-age=86400")
        );
    }
}

#[actix_web::test]
async fn the_qr_code_follows_the_forwarded_host_of_a_trusted_proxy() {
    let app =
        TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let site = app.site("clinic", 1, 1).await;
    let id = app.issue(&site, 0).await["id"].as_str().unwrap().to_owned();
    let proxied = ticket_qr(
        &app,
        &site,
        &id,
        &[
            ("X-Forwarded-Host", "queue.example.org"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    let expected = nextup::http::pages::ticket_qr_svg(&format!(
        "https://queue.example.org/t/clinic/ticket/{id}"
    ))
    .unwrap();
    assert_eq!(proxied.status, 200);
    assert!(
        proxied.raw == expected,
        "not the QR code of the forwarded host"
    );
    assert_eq!(
        proxied.header("Cache-Control"),
        Some("private, max-age=86400")
    );
    assert!(
        proxied
            .header("Vary")
            .is_some_and(|v| v.contains("X-Forwarded-Host")),
        "a QR built from request headers must say so: {:?}",
        proxied.header("Vary")
    );
}

#[actix_web::test]
async fn a_configured_public_url_wins_over_every_header() {
    let app = TestApp::spawn_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.public_url =
            Some(nextup::config::PublicUrl::parse("https://queue.example.org/nextup/").unwrap());
    })
    .await;
    let site = app.site("clinic", 1, 1).await;
    let id = app.issue(&site, 0).await["id"].as_str().unwrap().to_owned();
    let expected = nextup::http::pages::ticket_qr_svg(&format!(
        "https://queue.example.org/nextup/t/clinic/ticket/{id}"
    ))
    .unwrap();
    for headers in [&[][..], &FORGED[..]] {
        let reply = ticket_qr(&app, &site, &id, headers).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.raw == expected,
            "not the public URL's QR code: {headers:?}"
        );
        assert_eq!(reply.header("Vary"), None);
    }
}

/// The size in bytes of the saved row of an idempotency key.
async fn saved_row_bytes(app: &TestApp, key: &str) -> i32 {
    sqlx::query_scalar("select pg_column_size(i.*) from idempotency_keys i where key = $1")
        .bind(key)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_failed_anonymous_request_saves_a_fingerprint_not_its_body() {
    let app = TestApp::spawn().await;
    app.site("clinic", 1, 1).await;
    // 60 KB that does not compress: what an attacker would send to fill the table.
    let padding: String = (0..1_900)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    let body = |padding: &str| {
        json!({ "service_id": Uuid::new_v4().to_string(), "padding": padding })
            .to_string()
            .into_bytes()
    };
    let first_body = body(&padding);
    assert!(first_body.len() > 60_000);
    let send = |body: Vec<u8>| {
        app.send(
            Method::POST,
            "/api/v1/tenants/clinic/tickets",
            None,
            &[("Idempotency-Key", "flood-1")],
            Some(body),
        )
    };
    send(first_body.clone())
        .await
        .expect_error(404, "service_not_found");
    let bytes = saved_row_bytes(&app, "flood-1").await;
    assert!(bytes < 512, "the saved row takes {bytes} bytes");

    // The key still works: the same request gets the same answer again, another is refused.
    let again = send(first_body).await;
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    again.expect_error(404, "service_not_found");
    send(body(&padding))
        .await
        .expect_error(422, "idempotency_key_reused");
}

#[actix_web::test]
async fn a_token_is_refused_from_the_second_its_exp_names() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let path = format!("/api/v1/tenants/{}/counters", site.slug);
    // A second later it would be refused by any reading of the RFC; at `exp` itself too.
    let now = chrono::Utc::now().timestamp();
    let at_exp = reissued_expiring_at(&site.operator, now);
    app.get(&path, Some(&at_exp))
        .await
        .expect_error(401, "token_expired");
    let later = reissued_expiring_at(&site.operator, now + 600);
    app.get(&path, Some(&later)).await.expect(200);
}

async fn create_user(app: &TestApp, site: &Site, username: &str) -> Reply {
    app.post(
        &format!("/api/v1/tenants/{}/users", site.slug),
        Some(&site.admin),
        json!({ "username": username, "password": "ana-password", "role": "operator" }),
    )
    .await
}

#[actix_web::test]
async fn usernames_are_one_per_tenant_whatever_their_case_or_unicode_form() {
    let app = TestApp::spawn().await;
    let site = app.site("clinic", 1, 1).await;
    let ana = create_user(&app, &site, "ana").await.expect(201);
    assert_eq!(ana["username"], "ana");
    for taken in ["Ana", "ANA"] {
        create_user(&app, &site, taken)
            .await
            .expect_error(409, "username_taken");
    }
    // Another tenant's users are its own.
    let other = app.site("other", 1, 1).await;
    create_user(&app, &other, "ANA").await.expect(201);

    // Composed and decomposed é are one name, kept composed (and otherwise as entered).
    let jose = create_user(&app, &site, "Jose\u{301}").await.expect(201);
    assert_eq!(jose["username"], "Jos\u{e9}");
    create_user(&app, &site, "jos\u{e9}")
        .await
        .expect_error(409, "username_taken");

    // A Cyrillic а among Latin letters looks like "ana": refused. A name all in one
    // script is fine.
    create_user(&app, &site, "\u{430}na")
        .await
        .expect_error(422, "invalid_input");
    create_user(&app, &site, "\u{430}\u{43d}\u{43d}\u{430}")
        .await
        .expect(201);

    // Login finds the user whatever the case or form typed, and answers the name as kept.
    let reply = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": "clinic", "username": "ANA", "password": "ana-password" }),
        )
        .await
        .expect(200);
    assert_eq!(reply["user"]["username"], "ana");
    assert_eq!(reply["user"]["id"], ana["id"]);
    let reply = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({ "tenant": "clinic", "username": "JOSE\u{301}", "password": "ana-password" }),
        )
        .await
        .expect(200);
    assert_eq!(reply["user"]["id"], jose["id"]);
}

/// The first migration of this change: the upgrade test stops before it.
const FIRST_NEW_MIGRATION: i64 = 20261207035433;

/// A database migrated only up to before [`FIRST_NEW_MIGRATION`], as an older nextup left
/// it; dropped at the end of the test.
struct OldDatabase {
    name: String,
    pool: sqlx::PgPool,
    _dir: TempMigrations,
}

struct TempMigrations(std::path::PathBuf);

impl Drop for TempMigrations {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for OldDatabase {
    fn drop(&mut self) {
        drop_test_database(&self.name);
    }
}

impl OldDatabase {
    async fn create() -> OldDatabase {
        use sqlx::{Connection, Executor};
        let name = format!("nextup_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_server_url()))
            .await
            .unwrap();
        admin
            .execute(format!(r#"create database "{name}""#).as_str())
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("nextup-old-migrations-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for entry in std::fs::read_dir(source).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_owned();
            let version: i64 = file.split('_').next().unwrap().parse().unwrap();
            if version < FIRST_NEW_MIGRATION {
                std::fs::copy(&path, dir.join(&file)).unwrap();
            }
        }
        let pool = sqlx::PgPool::connect(&format!("{}/{name}", postgres_server_url()))
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(dir.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        OldDatabase {
            name,
            pool,
            _dir: TempMigrations(dir),
        }
    }
}

#[actix_web::test]
async fn the_upgrade_keeps_users_whose_names_collide_once_folded() {
    let old = OldDatabase::create().await;
    let tenant = Uuid::new_v4();
    sqlx::query(
        "insert into tenants (id, slug, name, timezone) values ($1, 'clinic', 'Clinic', 'UTC')",
    )
    .bind(tenant)
    .execute(&old.pool)
    .await
    .unwrap();
    // Three users an older nextup allowed side by side, oldest first; and a key it saved
    // with its request.
    let mut ids = Vec::new();
    for (age, name) in [(3, "Ana"), (2, "ana"), (1, "ANA")] {
        let id = Uuid::new_v4();
        let hash = nextup::auth::password::hash_password(&format!("{name}-password")).unwrap();
        sqlx::query(
            "insert into users (id, tenant_id, username, password_hash, role, created_at)
             values ($1, $2, $3, $4, 'operator', now() - make_interval(hours => $5))",
        )
        .bind(id)
        .bind(tenant)
        .bind(name)
        .bind(hash)
        .bind(age)
        .execute(&old.pool)
        .await
        .unwrap();
        ids.push(id);
    }
    sqlx::query(
        "insert into idempotency_keys (tenant_id, key, request, status_code, response_body)
         values ($1, 'old-key', '{\"body\": {\"service_id\": \"x\"}}', 201, '{}')",
    )
    .bind(tenant)
    .execute(&old.pool)
    .await
    .unwrap();

    nextup::db::MIGRATOR
        .run(&old.pool)
        .await
        .expect("the upgrade applies");

    let mut conn = old.pool.acquire().await.unwrap();
    let tenant = nextup::domain::ids::TenantId::from(tenant);
    let login = async |conn: &mut sqlx::PgConnection, name: &str| {
        nextup::db::users::find_credentials(conn, tenant, name)
            .await
            .unwrap()
            .map(|c| c.user.id.get())
    };
    // Each keeps logging in by their exact name; another spelling finds the oldest.
    assert_eq!(login(&mut conn, "Ana").await, Some(ids[0]));
    assert_eq!(login(&mut conn, "ana").await, Some(ids[1]));
    assert_eq!(login(&mut conn, "ANA").await, Some(ids[2]));
    assert_eq!(login(&mut conn, "aNa").await, Some(ids[0]));
    // No new user can take the name in any case.
    let taken = nextup::db::users::insert_user(
        &mut conn,
        tenant,
        &nextup::domain::ids::Username::parse("anA").unwrap(),
        "hash",
        "operator".parse().unwrap(),
    )
    .await;
    assert!(
        matches!(
            taken,
            Err(nextup::db::Error::Conflict(
                nextup::db::Conflict::UsernameTaken
            ))
        ),
        "{:?}",
        taken.map(|u| u.username)
    );

    // The old key is kept, as a fingerprint no request has.
    let old_key = nextup::db::idempotency::TenantKey {
        tenant,
        key: "old-key",
    };
    let saved = nextup::db::idempotency::find_saved_many(&mut conn, &[old_key])
        .await
        .unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].0, 0);
    assert_eq!(saved[0].1.status_code, 201);
}
