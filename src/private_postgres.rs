//! A private PostgreSQL, for trying nextup where no PostgreSQL server is usable: none runs,
//! or it wants a password (Debian's asks for one on TCP). When `DATABASE_URL` is not set and
//! the default server cannot be used, nextup runs a cluster of its own from the PostgreSQL
//! binaries installed on the machine, in `NEXTUP_DATA_DIR` (default `./nextup-data`),
//! listening on a Unix socket inside that directory only (no TCP port, no password). The
//! data stays between runs; the server is stopped when nextup exits.
//!
//! Several nextup commands may share the cluster: the process that starts the server writes
//! its pid to `nextup.pid` and stops the server when it exits; the others use it as it is.
//! A server whose starter is gone (killed with SIGKILL) is stopped and started again.
//!
//! PostgreSQL refuses to run as root: started as root, nextup runs the server as the
//! `postgres` system user, which must then be able to reach the data directory.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::config::Config;

/// How long a starting server may take before it is given up on.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest Unix socket path Linux accepts (`sun_path`, with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Where a private server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket in the data directory, no TCP port: what `serve` uses.
    Socket,
    /// A TCP port on 127.0.0.1 (with no password): for the tests, which also reach their
    /// server through TCP proxies.
    Tcp(u16),
}

/// A running private server. Dropping it stops the server if this process started it.
pub struct PrivatePostgres {
    /// The server's URL, without a database: `postgres://postgres@HOST`.
    server_url: String,
    dir: PathBuf,
    /// The server this process started, stopped on drop; `None` when another nextup
    /// process's server is used.
    started: Option<Child>,
}

impl PrivatePostgres {
    /// Starts the server in `data_dir`, or joins the one another nextup process runs there.
    /// Blocking: it runs `initdb` and waits for the server.
    pub fn start(data_dir: &Path, listen: Listen) -> anyhow::Result<Self> {
        let bin = find_binaries().ok_or_else(|| {
            anyhow::anyhow!(
                "no PostgreSQL binaries found (initdb, postgres) to run a private server: \
                 install PostgreSQL (Debian: apt-get install postgresql; macOS: brew install \
                 postgresql@16), or set DATABASE_URL"
            )
        })?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create NEXTUP_DATA_DIR {}", data_dir.display()))?;
        let dir = std::path::absolute(data_dir)?;
        let socket = dir.join(".s.PGSQL.5432");
        if listen == Listen::Socket && socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "NEXTUP_DATA_DIR {} is too long a path for PostgreSQL's socket: choose a shorter one",
                dir.display()
            );
        }
        let run_as = server_user()?;
        if let Some(user) = &run_as {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("cannot give {} to the postgres user", dir.display()))?;
        }
        let cluster = dir.join("pg");
        let server_url = match listen {
            Listen::Socket => format!(
                "postgres://postgres@{}",
                form_urlencoded::byte_serialize(dir.as_os_str().as_encoded_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            ),
            Listen::Tcp(port) => format!("postgres://postgres@127.0.0.1:{port}"),
        };
        let mut server = PrivatePostgres {
            server_url,
            dir: dir.clone(),
            started: None,
        };
        if let Some(postmaster) = running_postmaster(&cluster) {
            if owner_alive(&dir) {
                // Another nextup process runs it: use it, leave it to that process.
                wait_until_ready(&bin, &dir, listen, None)?;
                return Ok(server);
            }
            log::info!("stopping the private PostgreSQL left by a nextup process that is gone");
            stop_pid(postmaster);
        }
        if !cluster.join("PG_VERSION").exists() {
            init_cluster(&bin, &cluster, &dir, run_as.as_ref())?;
        }
        let child = start_server(&bin, &cluster, &dir, listen, run_as.as_ref())?;
        server.started = Some(child);
        std::fs::write(dir.join("nextup.pid"), std::process::id().to_string())?;
        wait_until_ready(&bin, &dir, listen, server.started.as_mut())?;
        Ok(server)
    }

    /// The server's URL without a database; append `/<database>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server if this process started it (a fast shutdown: sessions are ended,
    /// the data is written cleanly).
    pub fn stop(&mut self) {
        let Some(mut child) = self.started.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: SIGINT asks the postmaster for a fast shutdown.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(self.dir.join("nextup.pid"));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of `initdb` and `postgres`: `pg_config --bindir`, else the usual places of
/// Debian (the newest version), Homebrew and source builds.
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_both(&dir) {
            return Some(dir);
        }
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    for root in ["/usr/lib/postgresql", "/opt/homebrew/opt", "/usr/local/opt"] {
        if let Ok(entries) = std::fs::read_dir(root) {
            let mut versions: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    root == "/usr/lib/postgresql"
                        || p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("postgresql"))
                })
                .map(|p| p.join("bin"))
                .collect();
            versions.sort_by_key(|p| version_of(p));
            candidates.extend(versions.into_iter().rev());
        }
    }
    candidates.push("/usr/local/pgsql/bin".into());
    candidates.into_iter().find(|dir| has_both(dir))
}

/// The major version in a path like `/usr/lib/postgresql/15/bin` or `…/postgresql@16/bin`.
fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(Path::file_name)
        .map(|name| {
            name.to_string_lossy()
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// The system user the server runs as.
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// `None` when nextup does not run as root (the server runs as nextup's user); the
/// `postgres` user when it does, since PostgreSQL refuses to run as root.
fn server_user() -> anyhow::Result<Option<ServerUser>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam takes a NUL-terminated name and returns NULL or a pointer to a static
    // record, read at once (nothing else calls getpwnam meanwhile: this runs at start-up).
    let record = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    if record.is_null() {
        bail!(
            "PostgreSQL refuses to run as root and this machine has no postgres user: run nextup \
             as another user, or set DATABASE_URL"
        );
    }
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*record).pw_uid, (*record).pw_gid) };
    Ok(Some(ServerUser { uid, gid }))
}

fn as_server_user(command: &mut Command, user: Option<&ServerUser>) {
    if let Some(user) = user {
        command.uid(user.uid).gid(user.gid);
    }
}

fn init_cluster(
    bin: &Path,
    cluster: &Path,
    dir: &Path,
    user: Option<&ServerUser>,
) -> anyhow::Result<()> {
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("--pgdata")
        .arg(cluster)
        .args(["--username", "postgres", "--auth", "trust"])
        .args(["--encoding", "UTF8", "--locale", "C"])
        .stdin(Stdio::null());
    as_server_user(&mut initdb, user);
    let output = initdb
        .output()
        .with_context(|| format!("cannot run {}", bin.join("initdb").display()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let last = said.lines().last().unwrap_or("").trim();
        let hint = if user.is_some() {
            " (the postgres user must be able to reach the directory: set NEXTUP_DATA_DIR to one it can, such as /var/lib/nextup)"
        } else {
            ""
        };
        bail!("initdb failed in {}: {last}{hint}", dir.display());
    }
    Ok(())
}

fn start_server(
    bin: &Path,
    cluster: &Path,
    dir: &Path,
    listen: Listen,
    user: Option<&ServerUser>,
) -> anyhow::Result<Child> {
    let log_path = dir.join("postgres.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    writeln!(log, "--- started by nextup (pid {})", std::process::id())?;
    let mut postgres = Command::new(bin.join("postgres"));
    postgres.arg("-D").arg(cluster);
    match listen {
        Listen::Socket => {
            postgres
                .args(["-c", "listen_addresses="])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.display()));
        }
        Listen::Tcp(port) => {
            postgres
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("port={port}"))
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.display()));
        }
    }
    postgres
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the terminal reaches nextup, which then stops
        // the server after its own requests are done.
        .process_group(0);
    as_server_user(&mut postgres, user);
    postgres
        .spawn()
        .with_context(|| format!("cannot run {}", bin.join("postgres").display()))
}

/// Waits until the server accepts connections (`pg_isready`); fails early if the server
/// this process started exits.
fn wait_until_ready(
    bin: &Path,
    dir: &Path,
    listen: Listen,
    mut started: Option<&mut Child>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let host = match listen {
        Listen::Socket => dir.display().to_string(),
        Listen::Tcp(_) => "127.0.0.1".to_owned(),
    };
    let port = match listen {
        Listen::Socket => 5432,
        Listen::Tcp(port) => port,
    };
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", &host, "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if let Some(child) = started.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!(
                "the private PostgreSQL exited ({status}); see {}",
                dir.join("postgres.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the private PostgreSQL did not start within {START_TIMEOUT:?}; see {}",
                dir.join("postgres.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of the postmaster running the cluster, if one is.
fn running_postmaster(cluster: &Path) -> Option<i32> {
    let content = std::fs::read_to_string(cluster.join("postmaster.pid")).ok()?;
    let pid: i32 = content.lines().next()?.trim().parse().ok()?;
    is_alive(pid).then_some(pid)
}

/// Whether the nextup process that started the cluster's server still runs.
fn owner_alive(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("nextup.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(|pid| pid != std::process::id() as i32 && is_alive(pid))
}

fn is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Asks a postmaster that is not our child (left by a nextup process that is gone) for a
/// fast shutdown, and waits for it to go.
fn stop_pid(pid: i32) {
    // SAFETY: SIGINT asks the postmaster for a fast shutdown.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_alive(pid) {
        // SAFETY: as above; the server did not stop in time.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The database `serve` and the other commands use: `DATABASE_URL` as given when it is set;
/// otherwise the default server if it can be used, or else a private server, whose URL then
/// replaces the default in `config` (said in one line). The private server runs as long as
/// the returned value lives.
pub async fn choose_database(config: &mut Config) -> anyhow::Result<Option<PrivatePostgres>> {
    if config.database_url_given {
        return Ok(None);
    }
    let probe = tokio::time::timeout(
        PROBE_TIMEOUT,
        <sqlx::Postgres as sqlx::migrate::MigrateDatabase>::database_exists(&config.database_url),
    )
    .await;
    let reason = match probe {
        Ok(Ok(_)) => return Ok(None),
        Ok(Err(e)) => unusable_because(&e),
        Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
    };
    let data_dir = config.data_dir.clone();
    let server =
        tokio::task::spawn_blocking(move || PrivatePostgres::start(&data_dir, Listen::Socket))
            .await??;
    println!(
        "no usable PostgreSQL at {} ({reason}): running a private one in {} (socket only, no TCP port; set DATABASE_URL to use another)",
        crate::config::redact_url(&config.database_url),
        server.dir().display()
    );
    config.database_url = format!("{}/nextup", server.server_url());
    Ok(Some(server))
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the default server cannot be used, in a few words.
fn unusable_because(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing answers".to_owned()
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")) => {
            "it refuses the login: it wants a password".to_owned()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_installed_version_is_preferred() {
        assert_eq!(version_of(Path::new("/usr/lib/postgresql/15/bin")), 15);
        assert_eq!(
            version_of(Path::new("/opt/homebrew/opt/postgresql@16/bin")),
            16
        );
        assert_eq!(version_of(Path::new("/usr/local/pgsql/bin")), 0);
    }
}
