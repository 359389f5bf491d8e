use std::process::ExitCode;

use clap::Parser;
use nextup::cli::{Cli, run};

fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    // sqlx reports "relation _sqlx_migrations already exists" as an info notice on every run.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,sqlx::postgres::notice=warn"),
    )
    .init();
    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
