//! Contract §1: the `nextup` binary, driven as a user would, against its own database.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{drop_test_database, postgres_server_url};

/// How long a command that should exit may run.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `serve` may take to say where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

const UNREACHABLE_URL: &str = "postgres://postgres@127.0.0.1:1/nextup";

/// A database name for one test and an empty working directory; both are removed on drop
/// (the database is created by the binary itself).
/// The binary under test: `NEXTUP_BIN` when set (CI runs these tests again with the release
/// build, which is what people install), else the one cargo built for the tests.
pub fn nextup_binary() -> PathBuf {
    std::env::var_os("NEXTUP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nextup")))
}

pub struct Sandbox {
    db_name: String,
    database_url: String,
    dir: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("nextup_cli_{id}");
        let database_url = format!("{}/{db_name}", postgres_server_url());
        let dir = std::env::temp_dir().join(format!("nextup-cli-{id}"));
        std::fs::create_dir_all(&dir).expect("a temporary working directory");
        Sandbox {
            db_name,
            database_url,
            dir,
        }
    }

    /// `nextup ARGS` with this sandbox's database, run in the empty directory (so that no
    /// `.env` is read) and with none of the developer's nextup variables.
    pub fn nextup(&self, args: &[&str]) -> Command {
        let mut command = Command::new(nextup_binary());
        command.args(args).current_dir(&self.dir);
        for name in [
            "JWT_SECRET",
            "BIND_ADDR",
            "TOKEN_TTL_SECS",
            "HEARTBEAT_INTERVAL_SECS",
            "CLIENT_TIMEOUT_SECS",
            "DATABASE_POOL_SIZE",
            "HTTP_WORKERS",
            "ISSUE_RATE_PER_MINUTE",
            "ISSUE_BURST",
            "STATIC_DIR",
            "RUST_LOG",
            "RUST_BACKTRACE",
            "LOG_FORMAT",
        ] {
            command.env_remove(name);
        }
        command
            .env("DATABASE_URL", &self.database_url)
            // Should anything start serving by mistake, it must not take a fixed port.
            .env("BIND_ADDR", "127.0.0.1:0");
        command
    }

    /// Runs `nextup ARGS` to completion.
    fn run(&self, args: &[&str]) -> Run {
        run(self.nextup(args), None)
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.database_url)
            .await
            .expect("the sandbox database exists")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        drop_test_database(&self.db_name);
    }
}

/// What a finished command did.
#[derive(Debug)]
struct Run {
    args: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn succeeded(&self) -> &Self {
        assert!(self.success, "`nextup {}` failed: {self:#?}", self.args);
        self
    }

    /// Asserts a failure reported as one line on stderr, without a panic or backtrace;
    /// returns that line.
    #[track_caller]
    fn failed_with_one_line(&self) -> &str {
        assert!(!self.success, "`nextup {}` succeeded: {self:#?}", self.args);
        self.no_panic();
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "`nextup {}` should fail with one line on stderr: {self:#?}",
            self.args
        );
        lines[0]
    }

    #[track_caller]
    fn no_panic(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(
                !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
                "`nextup {}` panicked: {self:#?}",
                self.args
            );
        }
    }
}

/// Runs the command to completion (with `stdin` written to it), killing it if it does not
/// exit within [`EXIT_TIMEOUT`].
fn run(mut command: Command, stdin: Option<&str>) -> Run {
    let args = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("nextup starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).expect("stdin written");
        // Dropping the pipe closes it: the command sees end of input.
    }
    let output = wait_with_timeout(child, &args);
    Run {
        args,
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn wait_with_timeout(child: Child, args: &str) -> Output {
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(EXIT_TIMEOUT) {
        Ok(output) => output.expect("waiting for nextup"),
        Err(_) => {
            // Only this child, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`nextup {args}` did not exit within {EXIT_TIMEOUT:?}");
        }
    }
}

async fn tenant_count(sandbox: &Sandbox) -> i64 {
    let mut conn = sandbox.connect().await;
    sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(&mut conn)
        .await
        .expect("tenants counted")
}

/// The stored password hash of a user.
async fn password_hash(sandbox: &Sandbox, username: &str) -> String {
    let mut conn = sandbox.connect().await;
    sqlx::query_scalar("select password_hash from users where username = $1")
        .bind(username)
        .fetch_one(&mut conn)
        .await
        .expect("the user exists")
}

#[actix_web::test]
async fn migrate_creates_the_database_and_applies_the_migrations() {
    let sandbox = Sandbox::new();
    sandbox.run(&["migrate"]).succeeded().no_panic();
    // The binary created the database and its tables; a second run changes nothing.
    assert_eq!(tenant_count(&sandbox).await, 0);
    sandbox.run(&["migrate"]).succeeded();
    let mut conn = sandbox.connect().await;
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&mut conn)
        .await
        .expect("the migrations table");
    assert!(applied >= 1);
}

#[actix_web::test]
async fn tenant_create_makes_a_tenant_once_and_refuses_a_taken_slug() {
    let sandbox = Sandbox::new();
    let created = sandbox.run(&[
        "tenant",
        "create",
        "--slug",
        "clinica-sul",
        "--name",
        "Clínica Sul",
        "--timezone",
        "America/Sao_Paulo",
    ]);
    created.succeeded().no_panic();

    let mut conn = sandbox.connect().await;
    let (name, timezone): (String, String) =
        sqlx::query_as("select name, timezone from tenants where slug = 'clinica-sul'")
            .fetch_one(&mut conn)
            .await
            .expect("the tenant is stored");
    assert_eq!(name, "Clínica Sul");
    assert_eq!(timezone, "America/Sao_Paulo");

    let again = sandbox.run(&[
        "tenant",
        "create",
        "--slug",
        "clinica-sul",
        "--name",
        "Another",
    ]);
    let line = again.failed_with_one_line().to_lowercase();
    assert!(
        line.contains("clinica-sul"),
        "the slug is not named: {line}"
    );
    assert!(
        line.contains("already exists") || line.contains("taken"),
        "the message does not say the slug is taken: {line}"
    );
    assert_eq!(tenant_count(&sandbox).await, 1);
}

#[actix_web::test]
async fn tenant_create_uses_utc_when_no_timezone_is_given() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["tenant", "create", "--slug", "plain", "--name", "Plain"])
        .succeeded();
    let mut conn = sandbox.connect().await;
    let timezone: String = sqlx::query_scalar("select timezone from tenants where slug = 'plain'")
        .fetch_one(&mut conn)
        .await
        .expect("the tenant is stored");
    assert_eq!(timezone, "UTC");
}

#[actix_web::test]
async fn tenant_create_refuses_a_bad_timezone_or_slug_in_one_line() {
    let sandbox = Sandbox::new();
    sandbox.run(&["migrate"]).succeeded();
    struct Bad {
        what: &'static str,
        slug: &'static str,
        name: &'static str,
        timezone: &'static str,
        /// A word the message must contain (lower case).
        named: &'static str,
    }
    let cases = [
        Bad {
            what: "an unknown time zone",
            slug: "good",
            name: "Good",
            timezone: "Mars/Olympus_Mons",
            named: "mars/olympus_mons",
        },
        Bad {
            what: "a UTC offset instead of an IANA name",
            slug: "good",
            name: "Good",
            timezone: "+03:00",
            named: "+03:00",
        },
        Bad {
            what: "a slug with capitals and spaces",
            slug: "Bad Slug",
            name: "Bad",
            timezone: "UTC",
            named: "slug",
        },
        Bad {
            what: "a slug ending in a hyphen",
            slug: "clinic-",
            name: "Bad",
            timezone: "UTC",
            named: "slug",
        },
        Bad {
            what: "an empty slug",
            slug: "",
            name: "Bad",
            timezone: "UTC",
            named: "slug",
        },
        Bad {
            what: "an empty name",
            slug: "good",
            name: "  ",
            timezone: "UTC",
            named: "name",
        },
    ];
    for case in cases {
        let result = sandbox.run(&[
            "tenant",
            "create",
            "--slug",
            case.slug,
            "--name",
            case.name,
            "--timezone",
            case.timezone,
        ]);
        let line = result.failed_with_one_line().to_lowercase();
        assert!(
            line.contains(case.named),
            "{}: the message does not name '{}': {line}",
            case.what,
            case.named
        );
    }
    assert_eq!(
        tenant_count(&sandbox).await,
        0,
        "a refused tenant was stored"
    );
}

#[actix_web::test]
async fn user_create_reads_one_password_line_from_stdin() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["tenant", "create", "--slug", "clinic", "--name", "Clinic"])
        .succeeded();

    let created = run(
        sandbox.nextup(&[
            "user",
            "create",
            "--tenant",
            "clinic",
            "--username",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        ]),
        Some("pw-from-stdin\n"),
    );
    created.succeeded().no_panic();
    assert!(
        !created.stdout.contains("pw-from-stdin") && !created.stderr.contains("pw-from-stdin"),
        "the password was printed: {created:#?}"
    );
    let hash = password_hash(&sandbox, "olga").await;
    assert!(
        !hash.contains("pw-from-stdin"),
        "the password is stored in clear"
    );
    assert!(nextup::auth::password::verify_password(
        "pw-from-stdin",
        &hash
    ));
    assert!(
        !nextup::auth::password::verify_password("pw-from-stdin\n", &hash),
        "the trailing newline became part of the password"
    );

    // A Windows line ending is not part of the password either; only the first line counts.
    run(
        sandbox.nextup(&[
            "user",
            "create",
            "--tenant",
            "clinic",
            "--username",
            "ana",
            "--role",
            "admin",
            "--password-stdin",
        ]),
        Some("crlf-password\r\nsecond line\n"),
    )
    .succeeded();
    let hash = password_hash(&sandbox, "ana").await;
    assert!(nextup::auth::password::verify_password(
        "crlf-password",
        &hash
    ));

    let mut conn = sandbox.connect().await;
    let roles: Vec<(String, String)> =
        sqlx::query_as("select username, role from users order by username")
            .fetch_all(&mut conn)
            .await
            .expect("users listed");
    assert_eq!(
        roles,
        [
            ("ana".to_owned(), "admin".to_owned()),
            ("olga".to_owned(), "operator".to_owned())
        ]
    );
}

#[actix_web::test]
async fn user_create_takes_the_password_from_the_flag_too() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["tenant", "create", "--slug", "clinic", "--name", "Clinic"])
        .succeeded();
    sandbox
        .run(&[
            "user",
            "create",
            "--tenant",
            "clinic",
            "--username",
            "boss",
            "--role",
            "admin",
            "--password",
            "pw-from-flag",
        ])
        .succeeded()
        .no_panic();
    let hash = password_hash(&sandbox, "boss").await;
    assert!(nextup::auth::password::verify_password(
        "pw-from-flag",
        &hash
    ));
    assert!(!nextup::auth::password::verify_password(
        "pw-from-flagx",
        &hash
    ));
}

#[actix_web::test]
async fn user_create_refuses_an_unknown_tenant_and_a_missing_password() {
    let sandbox = Sandbox::new();
    sandbox
        .run(&["tenant", "create", "--slug", "clinic", "--name", "Clinic"])
        .succeeded();

    let unknown = sandbox.run(&[
        "user",
        "create",
        "--tenant",
        "nowhere",
        "--username",
        "olga",
        "--role",
        "operator",
        "--password",
        "long-enough-password",
    ]);
    let line = unknown.failed_with_one_line().to_lowercase();
    assert!(
        line.contains("nowhere") && line.contains("tenant"),
        "the unknown tenant is not named: {line}"
    );

    // Neither --password nor --password-stdin.
    let missing = sandbox.run(&[
        "user",
        "create",
        "--tenant",
        "clinic",
        "--username",
        "olga",
        "--role",
        "operator",
    ]);
    assert!(
        !missing.success,
        "created a user without a password: {missing:#?}"
    );
    missing.no_panic();
    assert!(
        missing.stderr.contains("--password"),
        "the message does not name the missing flag: {missing:#?}"
    );

    // An empty line on stdin is no password either.
    let empty = run(
        sandbox.nextup(&[
            "user",
            "create",
            "--tenant",
            "clinic",
            "--username",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        ]),
        Some("\n"),
    );
    let line = empty.failed_with_one_line().to_lowercase();
    assert!(line.contains("password"), "{line}");

    let mut conn = sandbox.connect().await;
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&mut conn)
        .await
        .expect("users counted");
    assert_eq!(users, 0, "a refused user was stored");
}

#[actix_web::test]
async fn an_unreachable_database_is_one_line_naming_the_url_and_the_fix() {
    let sandbox = Sandbox::new();
    let with_password = "postgres://postgres:hunter2@127.0.0.1:1/nextup";
    let cases: [(&[&str], &str, &str); 4] = [
        (&["migrate"], UNREACHABLE_URL, UNREACHABLE_URL),
        (
            &["tenant", "create", "--slug", "clinic", "--name", "Clinic"],
            UNREACHABLE_URL,
            UNREACHABLE_URL,
        ),
        (&["serve"], UNREACHABLE_URL, UNREACHABLE_URL),
        // A password in the URL is not printed.
        (
            &["migrate"],
            with_password,
            "postgres://postgres:***@127.0.0.1:1/nextup",
        ),
    ];
    for (args, url, shown) in cases {
        let mut command = sandbox.nextup(args);
        command
            .env("DATABASE_URL", url)
            .env("JWT_SECRET", "k".repeat(32));
        let result = run(command, None);
        let line = result.failed_with_one_line();
        assert!(
            line.contains(shown),
            "`nextup {}`: the URL is not named as {shown}: {line}",
            result.args
        );
        assert!(
            line.contains("DATABASE_URL"),
            "`nextup {}`: the message does not say how to fix it: {line}",
            result.args
        );
        assert!(
            !line.contains("hunter2"),
            "the password was printed: {line}"
        );
    }
}

#[actix_web::test]
async fn serve_refuses_a_missing_or_short_jwt_secret() {
    let sandbox = Sandbox::new();
    // `serve`, and no subcommand (which means `serve`), without a secret.
    for args in [&["serve"][..], &[][..]] {
        let result = sandbox.run(args);
        let line = result.failed_with_one_line();
        assert!(
            line.contains("JWT_SECRET"),
            "`nextup {}`: JWT_SECRET is not named: {line}",
            result.args
        );
    }
    // A secret shorter than 32 bytes is refused, even with --demo.
    for args in [&["serve"][..], &["serve", "--demo"][..]] {
        let mut command = sandbox.nextup(args);
        command.env("JWT_SECRET", "only-31-bytes-long-secret-12345");
        let result = run(command, None);
        let line = result.failed_with_one_line();
        assert!(
            line.contains("JWT_SECRET") && line.contains("32"),
            "`nextup {}`: the short JWT_SECRET is not explained: {line}",
            result.args
        );
        assert!(
            !line.contains("only-31-bytes"),
            "the secret was printed: {line}"
        );
    }
}

#[actix_web::test]
async fn serve_refuses_a_worker_count_out_of_range_in_one_line() {
    let sandbox = Sandbox::new();
    // 513 is past actix-server's limit, where it would panic.
    for workers in ["0", "513", "many"] {
        let mut command = sandbox.nextup(&["serve"]);
        command
            .env("JWT_SECRET", "exactly-32-bytes-of-jwt-secret!!")
            .env("HTTP_WORKERS", workers);
        let result = run(command, None);
        let line = result.failed_with_one_line();
        assert!(
            line.contains("HTTP_WORKERS must be a whole number from 1 to 512"),
            "HTTP_WORKERS={workers}: {line}"
        );
    }
}

#[actix_web::test]
async fn log_format_json_gives_one_object_per_line_with_the_request_id() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.nextup(&["serve", "--demo"]);
    command.env("LOG_FORMAT", "json");
    let server = Server::start(command);
    let lines = server.read_until(Instant::now() + START_TIMEOUT, |l| {
        l.contains("listening on http://")
    });
    let base = listening_url(lines.last().unwrap());
    let client = awc::Client::new();
    let response = client
        .get(format!("{base}/api/v1/tenants/demo/services"))
        .insert_header(("X-Request-Id", "probe-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("x-request-id").unwrap(),
        "probe-42",
        "the client's id is echoed"
    );
    // Without one (or with one that could break a log line) the server makes one.
    let response = client
        .get(format!("{base}/ws/demo/operator?token=SECRET-TOKEN"))
        .insert_header(("X-Request-Id", "two words"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let generated = response
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    // The access lines are written once the responses are sent: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let log = server.log();
        let entries: Vec<Value> = log
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
            })
            .collect();
        let access = entries
            .iter()
            .filter(|e| e["target"] == "nextup::access")
            .count();
        if access >= 2 {
            break entries;
        }
        assert!(Instant::now() < deadline, "no access lines in {log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for entry in &entries {
        for key in ["time", "level", "target", "message"] {
            assert!(entry[key].is_string(), "{key} of {entry}");
        }
    }
    let access = |id: &str| {
        entries
            .iter()
            .find(|e| e["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line of {id} in {entries:#?}"))
            .clone()
    };
    let services = access("probe-42");
    assert_eq!(services["method"], "GET");
    assert_eq!(services["route"], "/api/v1/tenants/{slug}/services");
    assert_eq!(services["status"], 200);
    assert_eq!(services["client"], "127.0.0.1");
    assert!(services["duration_ms"].as_f64().is_some(), "{services}");
    let refused = access(&generated);
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["route"], "/ws/{slug}/operator");
    assert!(
        !server.log().contains("SECRET-TOKEN"),
        "a token in the URL is never logged"
    );
    drop(server);

    let mut command = sandbox.nextup(&["serve", "--demo"]);
    command.env("LOG_FORMAT", "xml");
    let result = run(command, None);
    let line = result.failed_with_one_line();
    assert!(line.contains("LOG_FORMAT must be text or json"), "{line}");
}

/// A running `nextup serve`, killed on drop (also when an assertion fails).
pub struct Server {
    pub child: Child,
    /// Lines of stdout, as they come.
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("nextup serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (line_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_sender.send(line).is_err() {
                    break;
                }
            }
        });
        // Keep draining stderr (the log) so the server never blocks on a full pipe.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Server {
            child,
            lines,
            stderr,
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Reads stdout lines until one satisfies `wanted`, within the start-up timeout.
    /// Returns every line read, the wanted one last.
    pub fn read_until(&self, deadline: Instant, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = wanted(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!(
                    "nextup serve: {e:?} before the expected line; stdout so far: {seen:#?}; log: {}",
                    self.log()
                ),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `http://HOST:PORT` from a line containing `listening on http://HOST:PORT`.
pub fn listening_url(line: &str) -> String {
    let start = line.find("listening on ").expect("the listening line") + "listening on ".len();
    let url = line[start..]
        .split_whitespace()
        .next()
        .expect("a URL after 'listening on'")
        .trim_end_matches('/')
        .to_owned();
    let port: u16 = url
        .strip_prefix("http://")
        .and_then(|hostport| hostport.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no http://HOST:PORT in {line}"));
    assert_ne!(port, 0, "the real port is printed, not 0: {line}");
    url
}

/// The printed login of `role`: a line like `admin    admin / demo-admin`.
fn printed_login(lines: &[String], role: &str) -> (String, String) {
    lines
        .iter()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [r, username, "/", password] if *r == role => {
                    Some((username.to_string(), password.to_string()))
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no {role} login printed in {lines:#?}"))
}

#[actix_web::test]
async fn serve_demo_prints_its_address_and_serves_the_demo_tenant() {
    let sandbox = Sandbox::new();
    // From an empty directory, without STATIC_DIR: the pages are in the binary.
    let command = sandbox.nextup(&["serve", "--demo"]);
    let server = Server::start(command);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut lines = server.read_until(deadline, |l| l.contains("listening on http://"));
    let base = listening_url(lines.last().unwrap());
    // The demo logins follow; the operator page is the last one listed.
    lines.extend(server.read_until(deadline, |l| l.contains("/t/demo/operator")));
    let (username, password) = printed_login(&lines, "admin");
    assert_eq!(
        (username.as_str(), password.as_str()),
        ("admin", "demo-admin")
    );
    assert!(
        server.log().contains("JWT_SECRET"),
        "no warning about the generated JWT_SECRET: {}",
        server.log()
    );

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let get_json = async |path: &str, token: Option<&str>| -> (u16, Value) {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.expect("request sent");
        let body = response.body().await.expect("body read");
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (response.status().as_u16(), value)
    };

    let (status, _) = get_json("/healthz", None).await;
    assert_eq!(status, 200);

    let (status, services) = get_json("/api/v1/tenants/demo/services", None).await;
    assert_eq!(status, 200, "{services}");
    let services = services["services"].as_array().expect("services");
    assert_eq!(services.len(), 3, "{services:?}");

    let mut response = client
        .post(format!("{base}/api/v1/auth/login"))
        .send_json(&json!({ "tenant": "demo", "username": username, "password": password }))
        .await
        .expect("login sent");
    let body = response.body().await.expect("login body");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let login: Value = serde_json::from_slice(&body).expect("login JSON");
    assert_eq!(login["user"]["role"], "admin");
    assert_eq!(login["user"]["tenant"], "demo");
    let token = login["token"].as_str().expect("a token");

    // The token works on an operator endpoint: the demo has three counters.
    let (status, counters) = get_json("/api/v1/tenants/demo/counters", Some(token)).await;
    assert_eq!(status, 200, "{counters}");
    assert_eq!(
        counters["counters"].as_array().map(Vec::len),
        Some(3),
        "{counters}"
    );

    for page in ["totem", "display", "operator"] {
        let mut response = client
            .get(format!("{base}/t/demo/{page}"))
            .send()
            .await
            .expect("page requested");
        let body = response.body().await.expect("page body");
        assert_eq!(response.status().as_u16(), 200, "page {page}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "page {page} is {content_type}"
        );
        let html = String::from_utf8_lossy(&body).to_lowercase();
        assert!(html.contains("<html"), "page {page} is not HTML: {html}");
    }

    // Every file of static/ is served with its type, and revalidated cheaply by its ETag.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let name = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let url = format!("{base}/static/{name}");
        let mut response = client.get(&url).send().await.expect("file requested");
        let body = response.body().limit(1 << 24).await.expect("file body");
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let on_disk = std::fs::read(&file).unwrap();
        assert!(
            body.as_ref() == on_disk.as_slice(),
            "{name} served is not static/{name} ({} bytes against {}): a stale build?",
            body.len(),
            on_disk.len()
        );
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let expected = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html",
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            Some("svg") => "image/svg+xml",
            other => panic!("a file of an unexpected kind in static/: {name} ({other:?})"),
        };
        let content_type = header("content-type");
        assert!(
            content_type.starts_with(expected)
                || (expected == "text/javascript"
                    && content_type.starts_with("application/javascript")),
            "{name} is {content_type}"
        );
        assert_eq!(header("cache-control"), "no-cache", "{name}");
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{name}: ETag {etag:?}");
        let again = client
            .get(&url)
            .insert_header(("If-None-Match", etag.as_str()))
            .send()
            .await
            .expect("file requested again");
        assert_eq!(again.status().as_u16(), 304, "{name}");
    }
    drop(server);
}

#[actix_web::test]
async fn static_dir_overrides_the_pages_built_in() {
    let sandbox = Sandbox::new();
    let pages = sandbox.dir.join("pages");
    std::fs::create_dir_all(pages.join("js")).unwrap();
    std::fs::write(
        pages.join("index.html"),
        "<html>a page in development</html>",
    )
    .unwrap();
    std::fs::write(pages.join("js/api.js"), "// edited").unwrap();
    let mut command = sandbox.nextup(&["serve", "--demo"]);
    command.env("STATIC_DIR", &pages);
    let server = Server::start(command);
    let lines = server.read_until(Instant::now() + START_TIMEOUT, |l| {
        l.contains("listening on http://")
    });
    let base = listening_url(lines.last().unwrap());
    let client = awc::Client::new();
    for (path, expected) in [
        ("/", "<html>a page in development</html>"),
        ("/static/js/api.js", "// edited"),
    ] {
        let mut response = client.get(format!("{base}{path}")).send().await.unwrap();
        let body = response.body().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(String::from_utf8_lossy(&body), expected, "{path}");
    }
    // Edited files are served at once, with a new ETag.
    let etag = |response: &awc::ClientResponse<_>| {
        response
            .headers()
            .get("etag")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let first = client.get(format!("{base}/")).send().await.unwrap();
    std::fs::write(pages.join("index.html"), "<html>edited again</html>").unwrap();
    let mut second = client.get(format!("{base}/")).send().await.unwrap();
    assert_ne!(etag(&first), etag(&second));
    assert_eq!(
        second.body().await.unwrap().as_ref(),
        b"<html>edited again</html>"
    );
    // What the directory lacks is not served from the binary either.
    let missing = client
        .get(format!("{base}/t/demo/totem"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    for path in ["/static/../Cargo.toml", "/static/js/../../pages/index.html"] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert!(response.status().as_u16() >= 400, "{path}");
    }
    drop(server);
}

#[actix_web::test]
async fn serve_demo_a_second_time_leaves_the_demo_tenant_as_it_is() {
    let sandbox = Sandbox::new();
    for _ in 0..2 {
        let server = Server::start(sandbox.nextup(&["serve", "--demo"]));
        let deadline = Instant::now() + START_TIMEOUT;
        let lines = server.read_until(deadline, |l| l.contains("listening on http://"));
        listening_url(lines.last().unwrap());
    }
    let mut conn = sandbox.connect().await;
    let services: i64 = sqlx::query_scalar(
        "select count(*) from services s join tenants t on t.id = s.tenant_id where t.slug = 'demo'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("services counted");
    assert_eq!(services, 3);
    let users: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&mut conn)
        .await
        .expect("users counted");
    assert_eq!(users, 3);
    assert_eq!(tenant_count(&sandbox).await, 1);
}

#[actix_web::test]
async fn serve_accepts_a_jwt_secret_of_32_bytes_and_prints_its_real_port() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.nextup(&["serve"]);
    command.env("JWT_SECRET", "exactly-32-bytes-of-jwt-secret!!");
    let server = Server::start(command);
    let deadline = Instant::now() + START_TIMEOUT;
    let lines = server.read_until(deadline, |l| l.contains("listening on http://"));
    let base = listening_url(lines.last().unwrap());
    assert!(
        lines.iter().all(|l| !l.contains("demo")),
        "plain serve seeded the demo: {lines:#?}"
    );

    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let mut response = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz requested");
    assert_eq!(response.status().as_u16(), 200);
    let _ = response.body().await;
    // Without --demo there is no demo tenant.
    let mut response = client
        .get(format!("{base}/api/v1/tenants/demo/services"))
        .send()
        .await
        .expect("services requested");
    let body: Value =
        serde_json::from_slice(&response.body().await.expect("body")).expect("a JSON body");
    assert_eq!(response.status().as_u16(), 404, "{body}");
    assert_eq!(body["error"]["code"], "tenant_not_found");
    assert_eq!(tenant_count(&sandbox).await, 0);
}

#[actix_web::test]
async fn sigterm_closes_sessions_with_1001_and_exits_zero() {
    use awc::ws::Frame;
    use futures_util::StreamExt;

    let sandbox = Sandbox::new();
    sandbox
        .run(&["tenant", "create", "--slug", "clinic", "--name", "Clinic"])
        .succeeded();
    let mut command = sandbox.nextup(&["serve"]);
    command.env("JWT_SECRET", "exactly-32-bytes-of-jwt-secret!!");
    let mut server = Server::start(command);
    let lines = server.read_until(Instant::now() + START_TIMEOUT, |l| {
        l.contains("listening on http://")
    });
    let base = listening_url(lines.last().unwrap());

    let (_, mut session) = awc::Client::new()
        .ws(format!(
            "{}/ws/clinic/totem",
            base.replacen("http", "ws", 1)
        ))
        .max_frame_size(1 << 20)
        .connect()
        .await
        .expect("a totem session");
    for expected in ["hello", "snapshot"] {
        let frame = session
            .next()
            .await
            .expect("a frame")
            .expect("a valid frame");
        let Frame::Text(text) = frame else {
            panic!("expected {expected}, got {frame:?}")
        };
        assert!(String::from_utf8_lossy(&text).contains(expected));
    }

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    let close = loop {
        let frame = actix_web::rt::time::timeout(Duration::from_secs(10), session.next())
            .await
            .expect("a close frame before the timeout");
        match frame {
            Some(Ok(Frame::Close(reason))) => break reason,
            Some(Ok(_)) => continue,
            other => panic!("the session ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(close.map(|r| u16::from(r.code)), Some(1001));

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("process status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "nextup did not exit after SIGTERM: {}",
            server.log()
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "log: {}", server.log());
    assert!(server.log().contains("SIGTERM"), "the shutdown is logged");
}
