//! Getting a server to measure, and its tenants ready.
//!
//! - spawn (default): a fresh database `nextup_load_<random>`, tenants and their admins made
//!   with the binary's CLI, then one or more `nextup serve` processes on that database
//!   (rate limits and session caps lifted), stopped and dropped at the end;
//! - attach (`--base`): servers someone else started, with tenants and admins they made;
//!   `--pid` gives their process ids for memory and CPU figures.
//!
//! Either way the services, counters and operators a scenario needs are made through the
//! REST API as the tenant's admin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use rand::RngExt;
use uuid::Uuid;

use nextup_bench::api::{self, Api, ApiError, Status};
use nextup_bench::server::{self, ServeOptions, Server};
use nextup_bench::{pg, sys};

use crate::Common;

/// Spawn mode's admin of every tenant.
const SPAWN_ADMIN: (&str, &str) = ("admin", "load-admin-password");
/// The operator each tenant gets when a scenario asks for one.
const OPERATOR: (&str, &str) = ("load-operator", "load-operator-password");

/// One server process to talk to.
#[derive(Debug, Clone)]
pub struct ServerRef {
    pub http_base: String,
    pub ws_base: String,
    pub addr: SocketAddr,
    pub pid: Option<u32>,
}

impl ServerRef {
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(|pid| server::rss_kib(pid).ok())
    }

    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid.and_then(sys::cpu_time).map(|d| d.as_secs_f64())
    }

    pub fn totem_url(&self, slug: &str) -> String {
        format!("{}/ws/{slug}/totem", self.ws_base)
    }
}

pub struct Deployment {
    pub servers: Vec<ServerRef>,
    pub spawned: bool,
    pub slugs: Vec<String>,
    pub admin: (String, String),
    /// `nextup --version` of a spawned binary.
    pub version: Option<String>,
    /// Time spent creating tenants and admins with the CLI.
    pub cli_setup: Duration,
    pub http: reqwest::Client,
    children: Vec<Server>,
    database: Option<String>,
    /// The servers' database, when known (spawn mode, or attach mode with `--database-url`).
    database_url: Option<String>,
    postgres: String,
    keep: bool,
    logs: Vec<PathBuf>,
}

/// The tenants of a run: `load` or `load-0001…` in spawn mode, `--tenant` or
/// `<tenant>-0001…` in attach mode.
pub fn tenant_slugs(common: &Common, count: usize) -> Vec<String> {
    let stem = common.tenant.clone().unwrap_or_else(|| "load".to_owned());
    if count == 1 {
        return vec![stem];
    }
    (1..=count).map(|i| format!("{stem}-{i:04}")).collect()
}

impl Deployment {
    /// Gives the database statistics for what the setup wrote (see `pg::analyze`), as
    /// autovacuum would within a minute. `false` when the database is not known (attach
    /// mode without `--database-url`).
    pub async fn analyze(&self) -> anyhow::Result<bool> {
        let Some(url) = &self.database_url else {
            return Ok(false);
        };
        pg::analyze(url).await?;
        Ok(true)
    }

    /// The servers' database, when known (spawn mode, or attach mode with `--database-url`).
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub async fn prepare(common: &Common, tenants: usize) -> anyhow::Result<Deployment> {
        let slugs = tenant_slugs(common, tenants);
        let http = api::http_client(Duration::from_secs(30));
        if !common.base.is_empty() {
            return Self::attach(common, slugs, http).await;
        }
        Self::spawn(common, slugs, http).await
    }

    async fn attach(
        common: &Common,
        slugs: Vec<String>,
        http: reqwest::Client,
    ) -> anyhow::Result<Deployment> {
        let (Some(_), Some(admin), Some(password)) =
            (&common.tenant, &common.admin, &common.password)
        else {
            bail!("attach mode (--base) needs --tenant, --admin and --password");
        };
        if !common.pid.is_empty() && common.pid.len() != common.base.len() {
            bail!("give one --pid per --base, in the same order");
        }
        let mut servers = Vec::new();
        for (i, base) in common.base.iter().enumerate() {
            servers.push(server_ref(base, common.pid.get(i).copied()).await?);
        }
        let started = Instant::now();
        if let Some(url) = &common.database_url {
            eprintln!(
                "loadgen: creating missing tenants with {}",
                common.nextup.display()
            );
            create_tenants(
                &common.nextup,
                url,
                &slugs,
                (admin, password),
                common.setup_jobs,
                true,
            )
            .await?;
        }
        Ok(Deployment {
            servers,
            spawned: false,
            slugs,
            admin: (admin.clone(), password.clone()),
            version: None,
            cli_setup: started.elapsed(),
            http,
            children: Vec::new(),
            database: None,
            database_url: common.database_url.clone(),
            postgres: common.postgres.clone(),
            keep: true,
            logs: Vec::new(),
        })
    }

    async fn spawn(
        common: &Common,
        slugs: Vec<String>,
        http: reqwest::Client,
    ) -> anyhow::Result<Deployment> {
        if !common.nextup.exists() {
            bail!(
                "{} does not exist; build it with `cargo build --release --bin nextup` or \
                 name it with --nextup",
                common.nextup.display()
            );
        }
        let version = server::run_cli(&common.nextup, "postgres://unused", &["--version"], None)
            .await
            .ok()
            .map(|v| v.trim().to_owned());
        let database = format!("nextup_load_{:08x}", rand::rng().random::<u32>());
        let url = pg::database_url(&common.postgres, &database)?;
        eprintln!(
            "loadgen: database {database}; creating {} tenant(s)",
            slugs.len()
        );
        let mut deployment = Deployment {
            servers: Vec::new(),
            spawned: true,
            slugs,
            admin: (SPAWN_ADMIN.0.to_owned(), SPAWN_ADMIN.1.to_owned()),
            version,
            cli_setup: Duration::ZERO,
            http,
            children: Vec::new(),
            database: Some(database.clone()),
            database_url: Some(url.clone()),
            postgres: common.postgres.clone(),
            keep: common.keep,
            logs: Vec::new(),
        };
        // From here on, failures still drop the database.
        if let Err(e) = deployment.start(common, &url).await {
            deployment.shutdown().await;
            return Err(e);
        }
        Ok(deployment)
    }

    async fn start(&mut self, common: &Common, url: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        create_tenants(
            &common.nextup,
            url,
            &self.slugs,
            SPAWN_ADMIN,
            common.setup_jobs,
            false,
        )
        .await?;
        self.cli_setup = started.elapsed();
        eprintln!(
            "loadgen: {} tenant(s) and admins created with the CLI in {:.1} s",
            self.slugs.len(),
            self.cli_setup.as_secs_f64()
        );
        let secret = server::random_secret();
        let database = self.database.clone().unwrap_or_default();
        for i in 0..common.servers.max(1) {
            let log = match &common.server_log {
                Some(path) if common.servers > 1 => {
                    PathBuf::from(format!("{}.{}", path.display(), i + 1))
                }
                Some(path) => path.clone(),
                None => std::env::temp_dir().join(format!("nextup-{database}-{}.log", i + 1)),
            };
            let mut env = vec![
                ("DATABASE_URL".to_owned(), url.to_owned()),
                ("BIND_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
                ("JWT_SECRET".to_owned(), secret.clone()),
                ("RUST_LOG".to_owned(), common.server_rust_log.clone()),
            ];
            env.extend(server::generous_limits());
            env.extend(common.server_env.iter().cloned());
            let child = Server::start(&ServeOptions {
                binary: common.nextup.clone(),
                env,
                log: Some(log.clone()),
                startup_timeout: Duration::from_secs(60),
            })
            .await?;
            eprintln!(
                "loadgen: nextup pid {} at {} (log: {})",
                child.pid(),
                child.http_base(),
                log.display()
            );
            self.servers
                .push(server_ref(&child.http_base(), Some(child.pid())).await?);
            self.children.push(child);
            self.logs.push(log);
        }
        Ok(())
    }

    /// ERROR and WARN lines in the spawned servers' logs.
    pub fn log_counts(&self) -> Vec<(u64, u64)> {
        self.children.iter().map(Server::log_counts).collect()
    }

    pub fn logs(&self) -> &[PathBuf] {
        &self.logs
    }

    /// A client of tenant `slug` on the first server, without a token.
    pub fn public(&self, slug: &str) -> Api {
        Api::with_client(self.http.clone(), &self.servers[0].http_base, slug)
    }

    /// Stops spawned servers (SIGTERM) and drops the database unless `--keep`; returns the
    /// servers' exit codes.
    pub async fn shutdown(mut self) -> Vec<Option<i32>> {
        let mut exits = Vec::new();
        for child in self.children.drain(..) {
            match child.stop(Duration::from_secs(30)).await {
                Ok(status) => exits.push(status.code()),
                Err(e) => {
                    eprintln!("loadgen: warning: {e:#}");
                    exits.push(None);
                }
            }
        }
        if let Some(database) = &self.database {
            if self.keep {
                eprintln!("loadgen: kept database {database}");
            } else if let Err(e) = pg::drop_database(&self.postgres, database).await {
                eprintln!("loadgen: warning: {e:#}");
            }
        }
        exits
    }
}

async fn server_ref(base: &str, pid: Option<u32>) -> anyhow::Result<ServerRef> {
    let base = base.trim_end_matches('/');
    let Some(host_port) = base.strip_prefix("http://") else {
        bail!("--base must be http://HOST:PORT (got {base})");
    };
    let addr = tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("{host_port} has no address"))?;
    Ok(ServerRef {
        http_base: base.to_owned(),
        ws_base: format!("ws://{host_port}"),
        addr,
        pid,
    })
}

/// `nextup tenant create` and `nextup user create` for each slug, `jobs` at a time (the
/// first alone: it creates and migrates the database). With `tolerate_existing`, tenants
/// and admins that exist already are fine.
async fn create_tenants(
    nextup: &std::path::Path,
    url: &str,
    slugs: &[String],
    (admin, password): (&str, &str),
    jobs: usize,
    tolerate_existing: bool,
) -> anyhow::Result<()> {
    let one = |slug: String| async move {
        let created = server::create_tenant(nextup, url, &slug, &format!("Load {slug}")).await;
        match created {
            Err(e) if !(tolerate_existing && e.to_string().contains("already exists")) => {
                return Err(e);
            }
            _ => {}
        }
        let user = server::create_user(nextup, url, &slug, admin, "admin", password).await;
        match user {
            Err(e) if !(tolerate_existing && e.to_string().contains("already")) => Err(e),
            _ => Ok(()),
        }
    };
    let Some((first, rest)) = slugs.split_first() else {
        return Ok(());
    };
    one(first.clone()).await?;
    stream::iter(rest.iter().cloned().map(one))
        .buffer_unordered(jobs.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// What a scenario needs in one tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub services: usize,
    pub counters: usize,
    /// An operator user (made through the API) and its token.
    pub operator: bool,
}

/// A tenant made ready through the API.
#[derive(Clone)]
pub struct Tenant {
    pub slug: String,
    /// With the admin's token.
    pub admin: Api,
    /// With the operator's token, when asked for (else the admin's).
    pub operator: Api,
    pub services: Vec<Uuid>,
    pub counters: Vec<Uuid>,
}

/// Logs in, retrying while the login rate limit answers 429.
async fn login(public: &Api, user: &str, password: &str) -> anyhow::Result<String> {
    let mut tries = 0;
    loop {
        match public.login(user, password).await {
            Ok(login) => return Ok(login.token),
            Err(e) if e.status == Some(429) && tries < 30 => {
                tries += 1;
                if tries == 1 {
                    eprintln!(
                        "loadgen: login to {} is rate-limited; retrying (raise the server's \
                         LOGIN_RATE_PER_MINUTE and LOGIN_USER_RATE_PER_MINUTE)",
                        public.slug()
                    );
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot log in as {user} to {}", public.slug()));
            }
        }
    }
}

fn service_code(i: usize) -> String {
    // A..Z, then AA, AB, … (service codes are 1–4 letters).
    let mut code = String::new();
    let mut n = i + 1;
    while n > 0 {
        n -= 1;
        code.insert(0, char::from(b'A' + (n % 26) as u8));
        n /= 26;
    }
    code
}

/// Makes the services, counters and operator of `needs` in tenant `slug`, reusing ones of
/// the same code or name that exist (attach mode, a second run).
pub async fn ready_tenant(
    deployment: &Deployment,
    slug: &str,
    needs: Needs,
) -> anyhow::Result<Tenant> {
    let public = deployment.public(slug);
    let token = login(&public, &deployment.admin.0, &deployment.admin.1).await?;
    let admin = public.with_token(&token);
    let mut services = Vec::new();
    for i in 0..needs.services {
        let code = service_code(i);
        match admin.create_service(&code, &format!("Load {code}")).await {
            Ok(service) => services.push(service.id),
            Err(e) if e.is(409, "service_code_taken") => {
                let existing = admin.services().await?;
                let found = existing.iter().find(|s| s.code == code).with_context(|| {
                    format!("service {code} of {slug} exists but is inactive; activate it")
                })?;
                services.push(found.id);
            }
            Err(e) => return Err(e).context("cannot create a service"),
        }
    }
    let mut counters = Vec::new();
    let mut existing = None;
    for i in 0..needs.counters {
        let name = format!("Load desk {}", i + 1);
        match admin.create_counter(&name).await {
            Ok(counter) => counters.push(counter.id),
            Err(e) if e.is(409, "counter_name_taken") => {
                if existing.is_none() {
                    existing = Some(admin.counters().await?);
                }
                let list = existing.as_ref().expect("just read");
                counters.push(
                    list.iter()
                        .find(|c| c.name == name)
                        .context("counter vanished")?
                        .id,
                );
            }
            Err(e) => return Err(e).context("cannot create a counter"),
        }
    }
    let operator = if needs.operator {
        match admin.create_user(OPERATOR.0, OPERATOR.1, "operator").await {
            Ok(_) => {}
            Err(e) if e.is(409, "username_taken") => {}
            Err(e) => return Err(e).context("cannot create the operator"),
        }
        public.with_token(&login(&public, OPERATOR.0, OPERATOR.1).await?)
    } else {
        admin.clone()
    };
    if !deployment.spawned {
        free_counters(&admin, &counters).await?;
    }
    Ok(Tenant {
        slug: slug.to_owned(),
        admin,
        operator,
        services,
        counters,
    })
}

/// Ends tickets a previous run left at these counters, so that call-next does not meet
/// `counter_busy`.
async fn free_counters(admin: &Api, counters: &[Uuid]) -> Result<(), ApiError> {
    for status in [Status::Called, Status::Serving] {
        for ticket in admin.tickets(Some(status)).await? {
            if !ticket.counter.is_some_and(|c| counters.contains(&c.id)) {
                continue;
            }
            match status {
                Status::Called => admin.cancel(ticket.id).await.map(drop)?,
                _ => admin.finish(ticket.id).await.map(drop)?,
            }
        }
    }
    Ok(())
}

/// [`ready_tenant`] for every tenant of the deployment, `jobs` at a time.
pub async fn ready_tenants(
    deployment: &Deployment,
    needs: Needs,
    jobs: usize,
) -> anyhow::Result<Vec<Tenant>> {
    stream::iter(
        deployment
            .slugs
            .iter()
            .map(|slug| ready_tenant(deployment, slug, needs)),
    )
    .buffered(jobs.max(1))
    .try_collect()
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_are_letters_only() {
        let codes: Vec<String> = [0, 1, 25, 26, 27, 701]
            .into_iter()
            .map(service_code)
            .collect();
        assert_eq!(codes, ["A", "B", "Z", "AA", "AB", "ZZ"]);
    }
}
