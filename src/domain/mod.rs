//! Pure domain logic: no I/O, no sqlx, no actix. Everything here is a function of its
//! inputs (the clock is always passed in), so it is unit-tested in place.

pub mod account;
pub mod audit;
pub mod batch;
pub mod business_day;
pub mod call_order;
pub mod estimate;
pub mod ids;
pub mod numbering;
#[cfg(test)]
mod properties;
pub mod queue_limit;
pub mod replay;
pub mod role;
pub mod settings;
pub mod stats;
pub mod ticket;
