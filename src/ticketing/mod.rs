//! The application layer for tickets: commands run inside the caller's transaction, apply
//! the domain rules and write their changes; `record_changes` appends their events (with
//! the next seqs), and `batch` applies many commands of a tenant in one transaction.
//! Reads build the projections with `ahead` and estimates.

pub mod batch;
pub mod commands;
mod error;
pub mod issuing;
pub mod paces;
pub mod reads;

pub use error::Error;
