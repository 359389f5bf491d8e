//! The few PostgreSQL chores of the tools. nextup creates a missing database itself, so the
//! tools only need URLs and, to clean up, `psql` to drop a database.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;
use tokio::process::Command;

/// `postgres://USER@HOST:PORT` plus a database name.
pub fn database_url(server_url: &str, database: &str) -> anyhow::Result<String> {
    let mut url = parse(server_url)?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// The same URL with its host and port replaced by `addr` (`HOST:PORT`), e.g. to go
/// through a proxy.
pub fn via(url: &str, addr: &str) -> anyhow::Result<String> {
    let (host, port) = addr
        .rsplit_once(':')
        .context("the address must be HOST:PORT")?;
    let mut url = parse(url)?;
    url.set_host(Some(host)).context("bad proxy host")?;
    url.set_port(Some(port.parse().context("bad proxy port")?))
        .map_err(|()| anyhow::anyhow!("cannot set a port on {url}"))?;
    Ok(url.to_string())
}

/// `HOST:PORT` of a PostgreSQL URL (port 5432 when absent).
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let url = parse(url)?;
    let host = url.host_str().context("the PostgreSQL URL has no host")?;
    Ok(format!("{host}:{}", url.port().unwrap_or(5432)))
}

fn parse(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("'{url}' is not a URL"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!("'{url}' is not a postgres:// URL");
    }
    Ok(parsed)
}

/// Drops `database` (forcing its connections closed) with `psql`, connected to the
/// `postgres` database of `server_url`'s server.
pub async fn drop_database(server_url: &str, database: &str) -> anyhow::Result<()> {
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("refusing to drop a database named '{database}'");
    }
    let admin = database_url(server_url, "postgres")?;
    let sql = format!("drop database if exists \"{database}\" with (force)");
    let run = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c", &sql])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("psql did not finish within 60 s")?
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql could not drop {database}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `ANALYZE` on the database with `psql`. After a bulk load into a fresh database,
/// PostgreSQL has no statistics until autovacuum comes by (within a minute); plans made
/// before that can pick the wrong index.
pub async fn analyze(database_url: &str) -> anyhow::Result<()> {
    let run = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-c",
            "analyze",
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("psql did not finish within 120 s")?
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql could not analyze: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `sql` (one or more statements) with `psql` on `database_url`, stopping at the first
/// error, and returns what it printed (unaligned, tuples only: `a|b` per row).
pub async fn run_sql(database_url: &str, sql: &str, timeout: Duration) -> anyhow::Result<String> {
    let run = Command::new("psql")
        .args([
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-c",
            sql,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, run)
        .await
        .with_context(|| format!("psql did not finish within {} s", timeout.as_secs()))?
        .context("cannot run psql")?;
    if !output.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_and_rerouted() {
        let db = database_url("postgres://postgres@127.0.0.1:5432", "nextup_soak_1").unwrap();
        assert_eq!(db, "postgres://postgres@127.0.0.1:5432/nextup_soak_1");
        assert_eq!(
            via(&db, "127.0.0.1:40000").unwrap(),
            "postgres://postgres@127.0.0.1:40000/nextup_soak_1"
        );
        assert_eq!(
            host_port("postgres://u:p@db.local/x").unwrap(),
            "db.local:5432"
        );
        assert!(database_url("http://x", "y").is_err());
    }
}
