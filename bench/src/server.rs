//! A `nextup` binary run as a child process: `serve` with a given environment, and the CLI
//! (`tenant create`, `user create --password-stdin`) to prepare a tenant.
//!
//! The child's output is drained continuously (to a log file when one is given), because
//! a server blocked on a full pipe would measure nothing. Its `ERROR` and `WARN` lines are
//! counted.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, oneshot};

/// Environment that lifts nextup's rate limits and session caps out of a load test's way
/// (each is the largest value the server accepts). Variables an older server does not know
/// are ignored by it.
pub fn generous_limits() -> Vec<(String, String)> {
    [
        "ISSUE_RATE_PER_MINUTE",
        "ISSUE_BURST",
        "ISSUE_TENANT_RATE_PER_MINUTE",
        "ISSUE_TENANT_BURST",
        "LOGIN_RATE_PER_MINUTE",
        "LOGIN_USER_RATE_PER_MINUTE",
        "WS_MAX_SESSIONS_PER_ADDRESS",
        "WS_MAX_SESSIONS_PER_TENANT",
        "PUBLIC_QUEUE_LIMIT",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), "1000000".to_owned()))
    .collect()
}

/// A random 64-hex-digit `JWT_SECRET`.
pub fn random_secret() -> String {
    let mut rng = rand::rng();
    (0..4)
        .map(|_| format!("{:016x}", rng.random::<u64>()))
        .collect()
}

/// How to start `nextup serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub binary: PathBuf,
    /// Set on top of this process's environment (`DATABASE_URL`, `BIND_ADDR`, …).
    pub env: Vec<(String, String)>,
    /// Where the child's stdout and stderr go; discarded when `None`.
    pub log: Option<PathBuf>,
    /// How long to wait for the `listening on` line.
    pub startup_timeout: Duration,
}

#[derive(Debug, Default)]
struct LogCounts {
    errors: AtomicU64,
    warnings: AtomicU64,
}

/// A running `nextup serve`. Killed if dropped without [`Server::stop`].
pub struct Server {
    child: Child,
    pid: u32,
    /// `HOST:PORT` from the `listening on http://HOST:PORT` line.
    addr: String,
    counts: Arc<LogCounts>,
}

impl Server {
    /// Starts `binary serve` and waits for its `listening on http://HOST:PORT` line.
    pub async fn start(options: &ServeOptions) -> anyhow::Result<Server> {
        let mut command = Command::new(&options.binary);
        command
            .arg("serve")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", options.binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let log = match &options.log {
            Some(path) => Some(Arc::new(Mutex::new(
                tokio::fs::File::create(path)
                    .await
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ))),
            None => None,
        };
        let counts = Arc::new(LogCounts::default());
        let (found_tx, found_rx) = oneshot::channel();
        let found = Arc::new(std::sync::Mutex::new(Some(found_tx)));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for stream in [
            Box::new(stdout) as Box<dyn AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            tokio::spawn(drain(stream, log.clone(), counts.clone(), found.clone()));
        }
        let addr = tokio::select! {
            found = tokio::time::timeout(options.startup_timeout, found_rx) => match found {
                Ok(Ok(addr)) => addr,
                Ok(Err(_)) => bail!("the server closed its output without a `listening on` line"),
                Err(_) => bail!(
                    "no `listening on` line from the server within {:?}",
                    options.startup_timeout
                ),
            },
            status = child.wait() => bail!("the server exited during start-up ({})", status?),
        };
        Ok(Server {
            child,
            pid,
            addr,
            counts,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://HOST:PORT`.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://HOST:PORT`.
    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The child's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid)
    }

    /// Lines of the server's output with `ERROR` and `WARN` so far.
    pub fn log_counts(&self) -> (u64, u64) {
        (
            self.counts.errors.load(Ordering::Relaxed),
            self.counts.warnings.load(Ordering::Relaxed),
        )
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit (killing it after `timeout`).
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .context("cannot run kill")?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("the server did not exit within {timeout:?} of SIGTERM; killed it")
            }
        }
    }
}

async fn drain(
    stream: Box<dyn AsyncRead + Unpin + Send>,
    log: Option<Arc<Mutex<tokio::fs::File>>>,
    counts: Arc<LogCounts>,
    found: Arc<std::sync::Mutex<Option<oneshot::Sender<String>>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains(" ERROR ") {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        } else if line.contains(" WARN ") {
            counts.warnings.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(addr) = listening_addr(&line)
            && let Some(tx) = found.lock().expect("not poisoned").take()
        {
            let _ = tx.send(addr);
        }
        if let Some(log) = &log {
            let mut file = log.lock().await;
            let _ = file.write_all(line.as_bytes()).await;
            let _ = file.write_all(b"\n").await;
        }
    }
}

/// `HOST:PORT` from a line containing `listening on http://HOST:PORT`.
pub fn listening_addr(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on http://")?;
    let addr = rest.split_whitespace().next()?.trim_end_matches('/');
    (!addr.is_empty()).then(|| addr.to_owned())
}

/// Resident memory (VmRSS) of a process, in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS line in /proc/PID/status")
}

/// Runs a `nextup` CLI command with `DATABASE_URL`, feeding `stdin` if given; fails with the
/// command's one-line error.
pub async fn run_cli(
    binary: &Path,
    database_url: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let mut child = Command::new(binary)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes()).await?;
        pipe.write_all(b"\n").await?;
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the nextup command did not finish within 60 s")??;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").trim();
        bail!(
            "`nextup {}` failed ({}): {last}",
            args.join(" "),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `nextup tenant create --slug S --name N` (creates and migrates the database if missing).
pub async fn create_tenant(
    binary: &Path,
    database_url: &str,
    slug: &str,
    name: &str,
) -> anyhow::Result<()> {
    let args = ["tenant", "create", "--slug", slug, "--name", name];
    run_cli(binary, database_url, &args, None).await.map(drop)
}

/// `nextup user create … --password-stdin`.
pub async fn create_user(
    binary: &Path,
    database_url: &str,
    tenant: &str,
    username: &str,
    role: &str,
    password: &str,
) -> anyhow::Result<()> {
    let args = [
        "user",
        "create",
        "--tenant",
        tenant,
        "--username",
        username,
        "--role",
        role,
        "--password-stdin",
    ];
    run_cli(binary, database_url, &args, Some(password))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_host_and_port() {
        assert_eq!(
            listening_addr("nextup listening on http://127.0.0.1:41234").as_deref(),
            Some("127.0.0.1:41234")
        );
        assert_eq!(
            listening_addr("[INFO] listening on http://[::1]:80/ now").as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(listening_addr("listening soon"), None);
    }

    #[test]
    fn rss_of_this_process_is_read() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn secrets_are_64_hex_digits() {
        let secret = random_secret();
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
