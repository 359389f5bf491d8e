use std::process::ExitCode;

use clap::Parser;
use nextup::cli::{Cli, run};
use nextup::logging::{self, LogFormat};

fn main() -> ExitCode {
    return_big_blocks_to_the_system();
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(format) => logging::init(format),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
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

/// Password hashing (argon2) works in 19 MiB of memory per login. glibc serves a block that
/// large with mmap and unmaps it on free, but after the first such free it raises its mmap
/// threshold, and from then on such blocks come from the heap of the thread and stay in
/// the process (measured with the soak test: +19 MiB after the first login, again for each
/// thread that hashes). A fixed threshold keeps every block of 1 MiB or more on mmap.
fn return_big_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it runs before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
