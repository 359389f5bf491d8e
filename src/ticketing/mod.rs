//! The application layer for tickets: each command runs inside the caller's transaction,
//! applies the domain rules, writes the change and appends its event (with the next seq).
//! Reads build the projections with `ahead` and estimates.

pub mod commands;
pub mod issuing;
pub mod paces;
pub mod reads;
pub mod turns;
