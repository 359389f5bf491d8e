//! The `nextup` command line (contract §1).

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::auth::kiosk_key;
use crate::auth::password::hash_password;
use crate::config::{Config, JwtSecret};
use crate::db;
use crate::demo;
use crate::domain::ids::{DisplayName, NewPassword, Slug, Username};
use crate::domain::numbering::parse_timezone;
use crate::domain::role::Role;
use crate::private_postgres;
use crate::startup::Application;

/// nextup: a real-time ticket-queue server for kiosks, displays and operator desks.
///
/// Configuration comes from the environment and from a `.env` file in the working
/// directory; see `.env.example`.
#[derive(Debug, Parser)]
#[command(name = "nextup", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP and WebSocket on BIND_ADDR (the default).
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// First create the tenant `demo` (if missing) with services, counters and users, and
    /// print its logins. Generates a JWT_SECRET when none is set.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// URL name: lowercase letters, digits and hyphens.
        #[arg(long)]
        slug: String,
        /// Name shown to people.
        #[arg(long)]
        name: String,
        /// IANA time zone; ticket numbers restart at its local midnight.
        #[arg(long, default_value = "UTC")]
        timezone: String,
    },
    /// Show the tenant's kiosk key, which lets its kiosks issue tickets outside the
    /// anonymous quotas, and the kiosk page address that hands it to a kiosk.
    KioskKey {
        /// Slug of the tenant.
        #[arg(long)]
        slug: String,
        /// Replace the key with a new one first: kiosks with the old key are refused (401)
        /// until their page is opened again with the new one.
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an operator or admin of a tenant.
    #[command(group(clap::ArgGroup::new("secret").required(true).args(["password", "password_stdin"])))]
    Create {
        /// Slug of the tenant.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = ["operator", "admin"])]
        role: String,
        /// The password (visible in the process list: prefer --password-stdin).
        #[arg(long)]
        password: Option<String>,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Runs the command; the error, if any, is printed by `main` as one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::from_env().map_err(anyhow::Error::msg)?;
    // Runs until this command is done, if one is needed.
    let _private_server = private_postgres::choose_database(&mut config).await?;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(config, args).await,
        Command::Migrate => {
            db::connect_and_migrate(&config).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            timezone,
        }) => {
            let slug = Slug::parse(&slug)?;
            let name = DisplayName::parse("--name", &name)?;
            let timezone = parse_timezone(&timezone).map_err(anyhow::Error::msg)?;
            let pool = db::connect_and_migrate(&config).await?;
            let mut conn = pool.acquire().await?;
            let tenant = db::tenants::insert_tenant(&mut conn, &slug, &name, timezone)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create tenant '{slug}': {e}"))?;
            println!(
                "created tenant {} ({}, {})",
                tenant.slug, tenant.name, tenant.timezone
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::KioskKey { slug, rotate }) => {
            let pool = db::connect_and_migrate(&config).await?;
            let mut conn = pool.acquire().await?;
            let key = if rotate {
                db::kiosk_keys::rotate_kiosk_key(&mut conn, &slug).await?
            } else {
                db::kiosk_keys::kiosk_key(&mut conn, &slug).await?
            };
            let Some(key) = key else {
                bail!("unknown tenant '{slug}': create it first with `nextup tenant create`");
            };
            let state = if rotate { "new kiosk key" } else { "kiosk key" };
            println!("{state} of tenant {slug}: {key}");
            println!("kiosk page: {}", kiosk_key::page_path(&slug, &key));
            Ok(())
        }
        Command::User(UserCommand::Create {
            tenant,
            username,
            role,
            password,
            password_stdin,
        }) => {
            let role: Role = role.parse()?;
            let username = Username::parse(&username)?;
            let password = match (password, password_stdin) {
                (Some(password), _) => password,
                (None, _) => read_password_line()?,
            };
            let password = NewPassword::parse(password)?;
            let pool = db::connect_and_migrate(&config).await?;
            let mut conn = pool.acquire().await?;
            let Some(tenant) = db::tenants::find_tenant(&mut conn, &tenant).await? else {
                bail!("unknown tenant '{tenant}': create it first with `nextup tenant create`");
            };
            let hash = hash_password(password.expose())?;
            let user = db::users::insert_user(&mut conn, tenant.id, &username, &hash, role)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create user '{username:?}': {e}"))?;
            println!(
                "created {} {} in tenant {}",
                user.role, user.username, tenant.slug
            );
            Ok(())
        }
    }
}

/// One line of standard input, without its line ending.
fn read_password_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password.to_owned())
}

async fn serve(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if args.demo && config.jwt_secret.is_none() {
        log::warn!("JWT_SECRET is not set: using a random one, so logins end when nextup stops");
        let random = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        config.jwt_secret = Some(JwtSecret::parse(random).map_err(anyhow::Error::msg)?);
    }
    if config.jwt_secret.is_none() {
        bail!("JWT_SECRET is not set: set it to at least 32 random bytes (or run `serve --demo`)");
    }
    let pool = db::connect_and_migrate(&config).await?;
    let demo_logins = if args.demo {
        Some(demo::seed(&pool).await?)
    } else {
        None
    };
    let app =
        Application::build_with_pool(config, pool, std::sync::Arc::new(crate::clock::SystemClock))?;
    let base = app.base_url();
    println!("nextup listening on {base}");
    if let Some(demo) = demo_logins {
        demo.print(&base);
    }
    app.run_until_stopped().await?;
    Ok(())
}
