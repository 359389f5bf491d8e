//! Tools that drive a running `nextup` from outside, only over HTTP and WebSocket, exactly as
//! the external contract describes them. The binaries (`soak` and `loadgen`) share
//! these modules:
//!
//! - [`api`]: a small REST client with typed errors (status + contract error code);
//! - [`session`]: one WebSocket session (totem or operator) that resumes with `since` and
//!   records and checks what it receives, cheap enough to run thousands in one process;
//! - [`server`]: start `nextup serve` as a child, use its CLI, read its resident memory;
//! - [`proxy`]: a TCP proxy that can cut a connection path (e.g. to PostgreSQL) and restore it;
//! - [`pg`]: the few PostgreSQL chores (database URLs, dropping a database);
//! - [`stats`]: percentiles and summaries;
//! - [`histogram`]: mergeable latency histograms, for measurements spread over processes;
//! - [`envelope`]: a message's `type` and `seq` read without parsing it;
//! - [`net`]: client sockets bound to one of several loopback source addresses;
//! - [`sys`]: a clock shared by processes, the open-files limit, CPU time, machine facts;
//! - [`svg`]: a small hand-written SVG line chart.

pub mod api;
pub mod envelope;
pub mod histogram;
pub mod net;
pub mod pg;
pub mod proxy;
pub mod server;
pub mod session;
pub mod stats;
pub mod svg;
pub mod sys;
