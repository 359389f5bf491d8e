//! Rebuilds the crate when a file is added to `static/` or `migrations/`: both are built
//! into the binary by macros (rust-embed, `sqlx::migrate!`), and cargo tracks only the files
//! they already read, not the new ones.

fn main() {
    println!("cargo:rerun-if-changed=static");
    println!("cargo:rerun-if-changed=migrations");
}
