use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use awc::Client;
use nextup::clock::ShiftedClock;
use nextup::config::{Config, JwtSecret};
use nextup::startup::Application;
use nextup::ws::registry::HubRegistry;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// The PostgreSQL server the tests use (a database is created per test): `TEST_POSTGRES_URL`,
/// else the default server if it can be used, else a private server run from the machine's
/// PostgreSQL binaries, as `nextup serve` does (in `target/test-postgres`, on a free TCP port
/// of 127.0.0.1, stopped when the tests end).
pub fn postgres_server_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
            return url;
        }
        let default = "postgres://postgres@127.0.0.1:5432";
        if server_answers(default) {
            return default.to_owned();
        }
        private_test_server()
    })
    .clone()
}

/// Whether a login to the server's `postgres` database succeeds.
fn server_answers(server: &str) -> bool {
    let url = format!("{server}/postgres");
    // The tests run on actix's runtime; this asks from a thread and runtime of its own.
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let connect = PgConnection::connect(&url);
            matches!(
                actix_web::rt::time::timeout(Duration::from_secs(5), connect).await,
                Ok(Ok(_))
            )
        })
    })
    .join()
    .unwrap_or(false)
}

static TEST_SERVER: std::sync::Mutex<Option<nextup::private_postgres::PrivatePostgres>> =
    std::sync::Mutex::new(None);

fn private_test_server() -> String {
    use nextup::private_postgres::{Listen, PrivatePostgres};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-postgres");
    let server = PrivatePostgres::start(&dir, Listen::Tcp(port))
        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests (set TEST_POSTGRES_URL): {e:#}"));
    eprintln!(
        "tests: no usable PostgreSQL at 127.0.0.1:5432; running a private one in {}",
        dir.display()
    );
    let url = server.server_url().to_owned();
    *TEST_SERVER.lock().unwrap() = Some(server);
    extern "C" fn stop_test_server() {
        if let Ok(mut server) = TEST_SERVER.lock()
            && let Some(mut server) = server.take()
        {
            server.stop();
        }
    }
    // The test harness ends with exit(), which runs atexit handlers but no destructors.
    // SAFETY: registers a plain function with no arguments.
    unsafe { libc::atexit(stop_test_server) };
    url
}

pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

pub struct TestApp {
    pub base: String,
    pub db_name: String,
    pub pool: PgPool,
    pub clock: Arc<ShiftedClock>,
    pub hubs: HubRegistry,
    client: Client,
    /// The first instance on a database drops it; siblings share it.
    owns_database: bool,
    config: Config,
}

/// A response, with its body parsed as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.raw);
        self.body
    }

    /// Asserts a contract error body with this status and code.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.raw);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.raw);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            self.raw
        );
    }
}

/// A tenant ready for tests: an admin and an operator logged in, services and counters.
pub struct Site {
    pub slug: String,
    pub admin: String,
    pub operator: String,
    /// Service ids by creation order (codes A, B, C…).
    pub services: Vec<String>,
    pub counters: Vec<String>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_through(&postgres_server_url(), adjust).await
    }

    /// An app that reaches PostgreSQL through `server_url` (e.g. a cutting proxy); the
    /// test's own pool and the clean-up still use the real server.
    pub async fn spawn_through(server_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db_name = format!("nextup_test_{}", Uuid::new_v4().simple());
        let database_url = format!("{server_url}/{db_name}");
        let mut config = Config::from_lookup(|_| None).expect("default configuration");
        config.database_url = database_url;
        config.bind_addr = "127.0.0.1:0".into();
        config.jwt_secret = Some(JwtSecret::parse(TEST_JWT_SECRET.into()).unwrap());
        config.database_pool_size = 20;
        // Tests issue many tickets from one address; the limit has its own test.
        config.issue_rate_per_minute = 1_000_000;
        config.issue_burst = 1_000_000;
        config.issue_tenant_rate_per_minute = 1_000_000;
        config.issue_tenant_burst = 1_000_000;
        config.login_rate_per_minute = 1_000_000;
        config.login_user_rate_per_minute = 1_000_000;
        // Some tests fill a queue past it; security_queue_full.rs sets its own.
        config.public_queue_limit = 1_000_000;
        adjust(&mut config);
        Self::start(config, db_name, true).await
    }

    async fn start(config: Config, db_name: String, owns_database: bool) -> TestApp {
        // `RUST_LOG=nextup=debug cargo test …` shows the server's logs of failing tests.
        let _ = env_logger::builder().is_test(true).try_init();
        let clock = Arc::new(ShiftedClock::default());
        let app = Application::build_with_clock(config.clone(), clock.clone())
            .await
            .expect("the application builds");
        let base = app.base_url();
        let hubs = app.hubs();
        actix_web::rt::spawn(app.run_until_stopped());
        // The test's own pool goes straight to the server, even when the app goes through
        // a proxy.
        let direct_url = format!("{}/{db_name}", postgres_server_url());
        let pool = PgPool::connect(&direct_url).await.expect("test pool");
        let client = Client::builder().timeout(Duration::from_secs(30)).finish();
        TestApp {
            base,
            db_name,
            pool,
            clock,
            hubs,
            client,
            owns_database,
            config,
        }
    }

    /// A second server process on the same database, as behind a load balancer.
    pub async fn spawn_sibling(&self) -> TestApp {
        self.spawn_sibling_with(|_| {}).await
    }

    /// A sibling with its configuration adjusted (e.g. reaching the database another way).
    pub async fn spawn_sibling_with(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        adjust(&mut config);
        Self::start(config, self.db_name.clone(), false).await
    }

    /// Open WebSocket sessions of the tenant on this instance: (totem, operator).
    pub async fn session_counts(&self, slug: &str) -> (usize, usize) {
        let mut conn = self.pool.acquire().await.unwrap();
        let tenant = nextup::db::tenants::get_tenant(&mut conn, slug)
            .await
            .unwrap();
        self.hubs.session_counts(tenant.id).await
    }

    /// Waits (up to 10 s) until the tenant has exactly these session counts.
    pub async fn wait_for_sessions(&self, slug: &str, expected: (usize, usize)) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let counts = self.session_counts(slug).await;
            if counts == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sessions of {slug}: {counts:?}, expected {expected:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until this instance listens for other instances' events.
    pub async fn wait_for_listener(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.hubs.listener_backend_pid() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener never connected"
            );
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        let mut response = match body {
            Some(body) => request
                .insert_header(("Content-Type", "application/json"))
                .send_body(body)
                .await
                .expect("request sent"),
            None => request.send().await.expect("request sent"),
        };
        let bytes = response
            .body()
            .limit(16 * 1024 * 1024)
            .await
            .expect("body read");
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
            raw,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, &[], None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(
            Method::POST,
            path,
            token,
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// A POST with an `Idempotency-Key`.
    pub async fn post_keyed(
        &self,
        path: &str,
        token: Option<&str>,
        key: &str,
        body: Value,
    ) -> Reply {
        self.send(
            Method::POST,
            path,
            token,
            &[("Idempotency-Key", key)],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(
            Method::PATCH,
            path,
            token,
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// Creates a tenant directly in the database (as `nextup tenant create` does).
    pub async fn create_tenant(&self, slug: &str, timezone: &str) {
        let mut conn = self.pool.acquire().await.unwrap();
        nextup::db::tenants::insert_tenant(
            &mut conn,
            &nextup::domain::ids::Slug::parse(slug).unwrap(),
            &nextup::domain::ids::DisplayName::parse("name", &format!("Tenant {slug}")).unwrap(),
            timezone.parse().unwrap(),
        )
        .await
        .unwrap();
    }

    /// Creates a user directly in the database (as `nextup user create` does).
    pub async fn create_user(&self, slug: &str, username: &str, password: &str, role: &str) {
        let mut conn = self.pool.acquire().await.unwrap();
        let tenant = nextup::db::tenants::get_tenant(&mut conn, slug)
            .await
            .unwrap();
        let hash = nextup::auth::password::hash_password(password).unwrap();
        nextup::db::users::insert_user(
            &mut conn,
            tenant.id,
            &nextup::domain::ids::Username::parse(username).unwrap(),
            &hash,
            role.parse().unwrap(),
        )
        .await
        .unwrap();
    }

    pub async fn login(&self, slug: &str, username: &str, password: &str) -> String {
        let body = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({ "tenant": slug, "username": username, "password": password }),
            )
            .await
            .expect(200);
        body["token"].as_str().expect("a token").to_owned()
    }

    /// A tenant with `services` services (codes A, B, …), `counters` counters, an admin and
    /// an operator, in the given time zone.
    pub async fn site_in(
        &self,
        slug: &str,
        timezone: &str,
        services: usize,
        counters: usize,
    ) -> Site {
        self.create_tenant(slug, timezone).await;
        self.create_user(slug, "boss", "boss-password", "admin")
            .await;
        let admin = self.login(slug, "boss", "boss-password").await;
        self.post(
            &format!("/api/v1/tenants/{slug}/users"),
            Some(&admin),
            json!({ "username": "olga", "password": "olga-password", "role": "operator" }),
        )
        .await
        .expect(201);
        let operator = self.login(slug, "olga", "olga-password").await;
        let mut service_ids = Vec::new();
        for i in 0..services {
            let code = char::from(b'A' + i as u8).to_string();
            let body = self
                .post(
                    &format!("/api/v1/tenants/{slug}/services"),
                    Some(&admin),
                    json!({ "code": code, "name": format!("Service {code}") }),
                )
                .await
                .expect(201);
            service_ids.push(body["id"].as_str().unwrap().to_owned());
        }
        let mut counter_ids = Vec::new();
        for i in 0..counters {
            let body = self
                .post(
                    &format!("/api/v1/tenants/{slug}/counters"),
                    Some(&admin),
                    json!({ "name": format!("Desk {}", i + 1) }),
                )
                .await
                .expect(201);
            counter_ids.push(body["id"].as_str().unwrap().to_owned());
        }
        Site {
            slug: slug.to_owned(),
            admin,
            operator,
            services: service_ids,
            counters: counter_ids,
        }
    }

    /// The id of the tenant `slug`, read from the database.
    pub async fn tenant_id(&self, slug: &str) -> uuid::Uuid {
        sqlx::query_scalar("select id from tenants where slug = $1")
            .bind(slug)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn site(&self, slug: &str, services: usize, counters: usize) -> Site {
        self.site_in(slug, "UTC", services, counters).await
    }

    /// Issues a ticket anonymously (public view).
    /// The site's whole event log, as the public sees it (`GET …/events?since=0`).
    pub async fn public_event_log(&self, site: &Site) -> Value {
        self.get(
            &format!("/api/v1/tenants/{}/events?since=0", site.slug),
            None,
        )
        .await
        .expect(200)
    }

    pub async fn issue(&self, site: &Site, service: usize) -> Value {
        self.post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            None,
            json!({ "service_id": site.services[service] }),
        )
        .await
        .expect(201)
    }

    pub async fn issue_priority(&self, site: &Site, service: usize) -> Value {
        self.post(
            &format!("/api/v1/tenants/{}/tickets", site.slug),
            None,
            json!({ "service_id": site.services[service], "priority": "priority" }),
        )
        .await
        .expect(201)
    }

    /// Call-next to a counter, from all services.
    pub async fn call_next(&self, site: &Site, counter: usize) -> Reply {
        self.post(
            &format!(
                "/api/v1/tenants/{}/counters/{}/call",
                site.slug, site.counters[counter]
            ),
            Some(&site.operator),
            json!({}),
        )
        .await
    }

    pub async fn act(&self, site: &Site, ticket: &Value, action: &str) -> Reply {
        let id = ticket["id"].as_str().expect("ticket id");
        self.post(
            &format!("/api/v1/tenants/{}/tickets/{id}/{action}", site.slug),
            Some(&site.operator),
            json!({}),
        )
        .await
    }

    pub async fn queue(&self, site: &Site) -> Value {
        self.get(&format!("/api/v1/tenants/{}/queue", site.slug), None)
            .await
            .expect(200)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.owns_database {
            drop_test_database(&self.db_name);
        }
    }
}

/// Drops a test database, closing its connections. The test's async runtime may already be
/// gone, so this runs on a thread and runtime of its own.
pub fn drop_test_database(db_name: &str) {
    let admin_url = format!("{}/postgres", postgres_server_url());
    let statement = format!(r#"drop database if exists "{db_name}" with (force)"#);
    let dropped = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mut conn = PgConnection::connect(&admin_url).await?;
            conn.execute(statement.as_str()).await.map(|_| ())
        })
    })
    .join();
    if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| sqlx::Error::PoolClosed) {
        eprintln!("could not drop test database {db_name}: {e}");
    }
}

/// A token signed with the test secret for `slug` that expired a second ago.
pub fn expired_token(slug: &str) -> String {
    token_expiring_at(slug, chrono::Utc::now().timestamp() - 1)
}

/// The same token as `token` (its user, tenant and generation), expiring at `exp`.
pub fn reissued_expiring_at(token: &str, exp: i64) -> String {
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    let mut claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    claims["exp"] = json!(exp);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token signed with the test secret for `slug`, with this `exp`, of a user who does
/// not exist (refused as revoked unless refused for its expiry first).
fn token_expiring_at(slug: &str, exp: i64) -> String {
    let claims = json!({
        "sub": Uuid::new_v4(),
        "tenant_id": Uuid::new_v4(),
        "tenant": slug,
        "username": "ghost",
        "role": "operator",
        "iat": exp - 100,
        "exp": exp,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}
