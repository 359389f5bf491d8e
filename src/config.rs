//! Configuration from the environment (and `.env`), read once and checked at start-up.
//! Defaults live next to the fields; `.env.example` documents every variable.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// The most HTTP worker threads actix-server accepts (it panics beyond).
const MAX_HTTP_WORKERS: u64 = 512;

/// Database used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/nextup";

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: PostgreSQL URL; the database is created if missing.
    pub database_url: String,
    /// Whether `DATABASE_URL` was set (then it is used as given); unset, a private server
    /// is run when the default cannot be used (see `crate::private_postgres`).
    pub database_url_given: bool,
    /// `NEXTUP_DATA_DIR`: where that private server keeps its data (default `nextup-data`).
    pub data_dir: std::path::PathBuf,
    /// `DATABASE_POOL_SIZE`: the size of each of this process's two pools, the readers' and
    /// the change writer's (default 10).
    pub database_pool_size: u32,
    /// `BIND_ADDR`: listen address; port 0 picks a free port (default 127.0.0.1:8080).
    pub bind_addr: String,
    /// `HTTP_WORKERS`: threads that serve HTTP and the WebSocket sessions (default: one per
    /// CPU core). docs/benchmarks.md has what more than the cores did on 2 cores.
    pub http_workers: usize,
    /// `JWT_SECRET`: HMAC key for operator tokens, at least 32 bytes. Optional here because
    /// only `serve` needs it, and `serve --demo` generates one when it is missing.
    pub jwt_secret: Option<JwtSecret>,
    /// `TOKEN_TTL_SECS`: lifetime of a login token (default 12 h).
    pub token_ttl: Duration,
    /// `HEARTBEAT_INTERVAL_SECS`: server WebSocket ping interval (default 15 s).
    pub heartbeat_interval: Duration,
    /// `CLIENT_TIMEOUT_SECS`: a session silent for this long is closed (default 45 s).
    pub client_timeout: Duration,
    /// `ISSUE_RATE_PER_MINUTE`: tickets one client address may issue per minute without a
    /// token (default 30), with bursts of up to `ISSUE_BURST` (default 10).
    pub issue_rate_per_minute: u32,
    pub issue_burst: u32,
    /// `LOGIN_RATE_PER_MINUTE`: login attempts one client address may make per minute
    /// (default 20).
    pub login_rate_per_minute: u32,
    /// `LOGIN_USER_RATE_PER_MINUTE`: failed logins per minute for one username of a tenant
    /// (default 5, also the burst). From one client address, more are refused (429); from
    /// all addresses together, more slow the username's logins down.
    pub login_user_rate_per_minute: u32,
    /// `LOGIN_SLOWDOWN_MAX_SECS`: the longest a login of a username with many recent
    /// failures is held back (0 to 3, default 3; 0 turns the slow-down off). At most 3, so
    /// that a held-back login is still answered within the 5 s request deadline.
    pub login_slowdown_max: Duration,
    /// `ISSUE_TENANT_RATE_PER_MINUTE`: tickets one tenant may issue per minute without a
    /// token, from all addresses together (default 600), with bursts of up to
    /// `ISSUE_TENANT_BURST` (default 100): a scripted flood from many addresses.
    pub issue_tenant_rate_per_minute: u32,
    pub issue_tenant_burst: u32,
    /// `WS_MAX_SESSIONS_PER_ADDRESS`: live WebSocket sessions one client address may hold
    /// (default 500: a site's guest Wi-Fi shares one address).
    pub ws_max_sessions_per_address: usize,
    /// `WS_MAX_SESSIONS_PER_TENANT`: live WebSocket sessions of one tenant in this process
    /// (default 20000).
    pub ws_max_sessions_per_tenant: usize,
    /// `PUBLIC_QUEUE_LIMIT`: waiting tickets a service may have for a ticket taken without
    /// a token to join it (default 500; 409 `queue_full` beyond): more than a big clinic's
    /// busiest queue, few enough that a flood cannot grow a queue, and every snapshot of
    /// it, without bound. Operators may still issue.
    pub public_queue_limit: u32,
    /// `TRUSTED_PROXIES`: addresses or CIDR ranges of reverse proxies whose
    /// `X-Forwarded-For` is believed (default none: the TCP peer is the client).
    pub trusted_proxies: Vec<IpNet>,
    /// `CORS_ALLOWED_ORIGINS`: origins (`https://host[:port]`) whose pages may call the API
    /// from a browser (default none: same origin only).
    pub cors_allowed_origins: Vec<String>,
    /// `REQUEST_TIMEOUT_SECS`: a client must send the request head within this time, and
    /// then its body within this time again (default 5 s); 408 otherwise.
    pub request_timeout: Duration,
    /// `SEND_TIMEOUT_SECS`: a connection whose client acknowledges none of the data sent to
    /// it for this long is aborted (default 10 s): a client that stopped reading costs
    /// kernel and server memory until then, and no longer.
    pub send_timeout: Duration,
    /// `EVENT_RETENTION_DAYS`: events older than this are pruned in the background
    /// (default 7); resuming from before the oldest kept event gets a snapshot (or 410).
    pub event_retention: Duration,
    /// `AUDIT_RETENTION_DAYS`: audit-log entries older than this are pruned in the
    /// background (default 400: a year and a bit, to compare with last year).
    pub audit_retention: Duration,
    /// How often the event log is pruned (one hour; not read from the environment, tests
    /// shorten it).
    pub prune_interval: Duration,
    /// `STATIC_DIR`: a directory to serve the pages from instead of the copies built into
    /// the binary (for developing pages); unset, the built-in ones.
    pub static_dir: Option<String>,
    /// `PUBLIC_URL`: where people reach this server (`https://queue.example.org`, maybe
    /// with a path prefix), for the links it hands out, such as the ticket QR code. Unset:
    /// taken from each request (see `http::pages`).
    pub public_url: Option<PublicUrl>,
}

/// The URL people reach nextup at: http or https, a host, maybe a port and a path prefix;
/// no user, query or fragment. Kept without a trailing slash, ready for `/t/…` to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let problem = || {
            format!(
                "PUBLIC_URL must be an http or https URL such as https://queue.example.org \
                 (a path prefix is allowed, a query is not), got '{raw}'"
            )
        };
        let url = url::Url::parse(raw.trim()).map_err(|_| problem())?;
        let valid = matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none();
        if !valid {
            return Err(problem());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The JWT signing secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    pub const MIN_BYTES: usize = 32;

    pub fn parse(raw: String) -> Result<Self, String> {
        if raw.len() < Self::MIN_BYTES {
            return Err(format!(
                "JWT_SECRET must be at least {} bytes long (it is {}); generate one with `openssl rand -hex 32`",
                Self::MIN_BYTES,
                raw.len()
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

impl Config {
    /// Reads the process environment (after `.env`, which `main` loads).
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`; every problem found is reported, in one line.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut problems = Vec::new();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let mut number = |name: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(name) {
                None => default,
                Some(raw) => match raw.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{name} must be a whole number from {min} to {max}, got '{raw}'"
                        ));
                        default
                    }
                },
            }
        };
        let database_pool_size = number("DATABASE_POOL_SIZE", 10, 1, 1000) as u32;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let http_workers = number(
            "HTTP_WORKERS",
            cores.min(MAX_HTTP_WORKERS),
            1,
            MAX_HTTP_WORKERS,
        ) as usize;
        let token_ttl = Duration::from_secs(number("TOKEN_TTL_SECS", 43_200, 1, 31_536_000));
        let heartbeat_interval =
            Duration::from_secs(number("HEARTBEAT_INTERVAL_SECS", 15, 1, 3_600));
        let client_timeout = Duration::from_secs(number("CLIENT_TIMEOUT_SECS", 45, 1, 86_400));
        let issue_rate_per_minute = number("ISSUE_RATE_PER_MINUTE", 30, 1, 1_000_000) as u32;
        let issue_burst = number("ISSUE_BURST", 10, 1, 1_000_000) as u32;
        let login_rate_per_minute = number("LOGIN_RATE_PER_MINUTE", 20, 1, 1_000_000) as u32;
        let login_user_rate_per_minute =
            number("LOGIN_USER_RATE_PER_MINUTE", 5, 1, 1_000_000) as u32;
        let login_slowdown_max = Duration::from_secs(number("LOGIN_SLOWDOWN_MAX_SECS", 3, 0, 3));

        let issue_tenant_rate_per_minute =
            number("ISSUE_TENANT_RATE_PER_MINUTE", 600, 1, 1_000_000) as u32;
        let issue_tenant_burst = number("ISSUE_TENANT_BURST", 100, 1, 1_000_000) as u32;
        let ws_max_sessions_per_address =
            number("WS_MAX_SESSIONS_PER_ADDRESS", 500, 1, 10_000_000) as usize;
        let ws_max_sessions_per_tenant =
            number("WS_MAX_SESSIONS_PER_TENANT", 20_000, 1, 10_000_000) as usize;
        let public_queue_limit = number("PUBLIC_QUEUE_LIMIT", 500, 1, 1_000_000) as u32;
        let request_timeout = Duration::from_secs(number("REQUEST_TIMEOUT_SECS", 5, 1, 600));
        let send_timeout = Duration::from_secs(number("SEND_TIMEOUT_SECS", 10, 1, 3_600));
        let event_retention =
            Duration::from_secs(number("EVENT_RETENTION_DAYS", 7, 1, 36_500) * 86_400);
        let audit_retention =
            Duration::from_secs(number("AUDIT_RETENTION_DAYS", 400, 1, 36_500) * 86_400);

        let trusted_proxies = list(get("TRUSTED_PROXIES"))
            .into_iter()
            .filter_map(|raw| match parse_network(&raw) {
                Some(net) => Some(net),
                None => {
                    problems.push(format!(
                        "TRUSTED_PROXIES must list IP addresses or CIDR ranges, got '{raw}'"
                    ));
                    None
                }
            })
            .collect();
        let cors_allowed_origins = list(get("CORS_ALLOWED_ORIGINS"))
            .into_iter()
            .filter_map(|raw| match parse_origin(&raw) {
                Some(origin) => Some(origin),
                None => {
                    problems.push(format!(
                        "CORS_ALLOWED_ORIGINS must list origins such as https://kiosk.example.org, got '{raw}'"
                    ));
                    None
                }
            })
            .collect();

        if client_timeout <= heartbeat_interval {
            problems.push(format!(
                "CLIENT_TIMEOUT_SECS ({}) must be longer than HEARTBEAT_INTERVAL_SECS ({})",
                client_timeout.as_secs(),
                heartbeat_interval.as_secs()
            ));
        }

        let database_url_given = get("DATABASE_URL").is_some();
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let data_dir = get("NEXTUP_DATA_DIR")
            .unwrap_or_else(|| "nextup-data".to_owned())
            .into();
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            problems.push(format!(
                "DATABASE_URL must be a postgres:// URL, got '{}'",
                redact_url(&database_url)
            ));
        }

        let bind_addr = get("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        if !bind_addr.contains(':') {
            problems.push(format!("BIND_ADDR must be HOST:PORT, got '{bind_addr}'"));
        }

        let jwt_secret = match lookup("JWT_SECRET") {
            None => None,
            Some(raw) => match JwtSecret::parse(raw) {
                Ok(secret) => Some(secret),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
        };

        let public_url = get("PUBLIC_URL").and_then(|raw| match PublicUrl::parse(&raw) {
            Ok(url) => Some(url),
            Err(problem) => {
                problems.push(problem);
                None
            }
        });

        if !problems.is_empty() {
            return Err(format!("invalid configuration: {}", problems.join("; ")));
        }
        Ok(Self {
            database_url,
            database_url_given,
            data_dir,
            database_pool_size,
            bind_addr,
            http_workers,
            jwt_secret,
            token_ttl,
            heartbeat_interval,
            client_timeout,
            issue_rate_per_minute,
            issue_burst,
            login_rate_per_minute,
            login_user_rate_per_minute,
            login_slowdown_max,
            issue_tenant_rate_per_minute,
            issue_tenant_burst,
            ws_max_sessions_per_address,
            ws_max_sessions_per_tenant,
            public_queue_limit,
            trusted_proxies,
            cors_allowed_origins,
            request_timeout,
            send_timeout,
            event_retention,
            audit_retention,
            prune_interval: Duration::from_secs(3_600),
            static_dir: get("STATIC_DIR"),
            public_url,
        })
    }
}

/// The items of a comma-separated setting, trimmed, empty ones skipped.
fn list(raw: Option<String>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `10.0.0.0/8`, `fd00::/8` or a single address (a /32 or /128 network).
fn parse_network(raw: &str) -> Option<IpNet> {
    raw.parse::<IpNet>()
        .ok()
        .or_else(|| raw.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `scheme://host[:port]`, exactly as browsers send it in `Origin` (no path, no slash).
fn parse_origin(raw: &str) -> Option<String> {
    let (scheme, host) = raw.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then(|| raw.to_owned())
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind_addr, "127.0.0.1:8080");
        assert_eq!(c.token_ttl, Duration::from_secs(43_200));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(c.client_timeout, Duration::from_secs(45));
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.send_timeout, Duration::from_secs(10));
        assert_eq!(c.login_user_rate_per_minute, 5);
        assert_eq!(c.login_slowdown_max, Duration::from_secs(3));
        assert_eq!(c.event_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.audit_retention, Duration::from_secs(400 * 86_400));
    }

    #[test]
    fn the_public_queue_limit_defaults_to_500_and_is_at_least_one() {
        assert_eq!(config(&[]).unwrap().public_queue_limit, 500);
        let c = config(&[("PUBLIC_QUEUE_LIMIT", "40")]).unwrap();
        assert_eq!(c.public_queue_limit, 40);
        let err = config(&[("PUBLIC_QUEUE_LIMIT", "0")]).unwrap_err();
        assert!(
            err.contains("PUBLIC_QUEUE_LIMIT must be a whole number from 1 to 1000000, got '0'"),
            "{err}"
        );
    }

    #[test]
    fn http_workers_default_to_the_cores_and_are_bounded() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config(&[]).unwrap().http_workers, cores.min(512));
        assert_eq!(config(&[("HTTP_WORKERS", "6")]).unwrap().http_workers, 6);
        let err = config(&[("HTTP_WORKERS", "0")]).unwrap_err();
        assert!(
            err.contains("HTTP_WORKERS must be a whole number from 1 to 512, got '0'"),
            "{err}"
        );
        let err = config(&[("HTTP_WORKERS", "513")]).unwrap_err();
        assert!(err.contains("got '513'"), "{err}");
    }

    #[test]
    fn the_login_slow_down_stays_within_the_request_deadline() {
        let c = config(&[("LOGIN_SLOWDOWN_MAX_SECS", "0")]).unwrap();
        assert_eq!(c.login_slowdown_max, Duration::ZERO);
        let err = config(&[("LOGIN_SLOWDOWN_MAX_SECS", "4")]).unwrap_err();
        assert!(
            err.contains("LOGIN_SLOWDOWN_MAX_SECS must be a whole number from 0 to 3"),
            "{err}"
        );
    }

    #[test]
    fn a_short_jwt_secret_is_refused_by_name() {
        let err = config(&[("JWT_SECRET", "too-short")]).unwrap_err();
        assert!(
            err.contains("JWT_SECRET must be at least 32 bytes"),
            "{err}"
        );
        let ok = config(&[("JWT_SECRET", &"k".repeat(32))]).unwrap();
        assert!(ok.jwt_secret.is_some());
    }

    #[test]
    fn every_problem_is_reported_on_one_line() {
        let err = config(&[
            ("TOKEN_TTL_SECS", "soon"),
            ("DATABASE_URL", "mysql://x"),
            ("HEARTBEAT_INTERVAL_SECS", "60"),
        ])
        .unwrap_err();
        assert!(
            err.contains("TOKEN_TTL_SECS must be a whole number"),
            "{err}"
        );
        assert!(
            err.contains("DATABASE_URL must be a postgres:// URL"),
            "{err}"
        );
        assert!(
            err.contains("CLIENT_TIMEOUT_SECS (45) must be longer"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn proxies_and_origins_are_lists_checked_item_by_item() {
        let c = config(&[
            ("TRUSTED_PROXIES", " 10.0.0.0/8, 192.168.1.7 ,fd00::/8,"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://kiosk.example.org,http://localhost:3000",
            ),
        ])
        .unwrap();
        let proxies: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
        assert_eq!(
            c.cors_allowed_origins,
            ["https://kiosk.example.org", "http://localhost:3000"]
        );
        assert!(config(&[]).unwrap().trusted_proxies.is_empty());
        assert!(config(&[]).unwrap().cors_allowed_origins.is_empty());

        let err = config(&[
            ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example/,*"),
        ])
        .unwrap_err();
        assert!(err.contains("got 'proxy.local'"), "{err}");
        assert!(err.contains("got 'https://a.example/'"), "{err}");
        assert!(err.contains("got '*'"), "{err}");
    }

    #[test]
    fn the_public_url_is_an_http_base_without_query() {
        assert_eq!(config(&[]).unwrap().public_url, None);
        for (raw, base) in [
            ("https://queue.example.org", "https://queue.example.org"),
            ("https://queue.example.org/", "https://queue.example.org"),
            (
                "http://10.0.0.5:8080/nextup/",
                "http://10.0.0.5:8080/nextup",
            ),
            (" https://Queue.Example.org ", "https://queue.example.org"),
        ] {
            let c = config(&[("PUBLIC_URL", raw)]).unwrap();
            assert_eq!(c.public_url.unwrap().as_str(), base, "{raw}");
        }
        for raw in [
            "queue.example.org",
            "ftp://queue.example.org",
            "https://queue.example.org/?x=1",
            "https://queue.example.org/#top",
            "https://user:pw@queue.example.org",
        ] {
            let err = config(&[("PUBLIC_URL", raw)]).unwrap_err();
            assert!(
                err.contains("PUBLIC_URL must be an http or https URL"),
                "{err}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output_or_messages() {
        let c = config(&[("JWT_SECRET", &"s3cr3t".repeat(8))]).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/nextup"),
            "postgres://app:***@db:5432/nextup"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/nextup"),
            "postgres://postgres@127.0.0.1/nextup"
        );
    }
}
