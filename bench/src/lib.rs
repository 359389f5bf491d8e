//! Tools that drive a running `nextup` from outside, only over HTTP and WebSocket, exactly as
//! the external contract describes them. The binaries (`soak`, and later `loadgen`) share
//! these modules:
//!
//! - [`api`]: a small REST client with typed errors (status + contract error code);
//! - [`session`]: one WebSocket session (totem or operator) that resumes with `since` and
//!   records and checks what it receives, cheap enough to run thousands in one process;
//! - [`server`]: start `nextup serve` as a child, use its CLI, read its resident memory;
//! - [`proxy`]: a TCP proxy that can cut a connection path (e.g. to PostgreSQL) and restore it;
//! - [`pg`]: the few PostgreSQL chores (database URLs, dropping a database);
//! - [`stats`]: percentiles and summaries.

pub mod api;
pub mod pg;
pub mod proxy;
pub mod server;
pub mod session;
pub mod stats;
