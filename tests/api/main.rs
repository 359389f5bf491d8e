//! One integration-test binary: every test spawns the real application (the same builder
//! `nextup serve` uses) on port 0 against its own fresh PostgreSQL database.

mod helpers;

mod abuse;
mod accounts;
mod admin;
mod admin_counters;
mod audit;
mod auth;
mod bad_input;
mod browser;
mod browser_admin;
mod browser_day;
mod business_day;
mod call_order;
mod call_policy;
mod cli;
mod concurrency;
mod deploy;
mod events;
mod faults;
mod faults_sqlstate;
mod group_commit;
mod idempotency;
mod lifecycle;
mod nginx;
mod openapi;
mod ops;
mod private_postgres;
mod properties;
mod proxy;
mod queue_order;
mod restart;
mod retention;
mod schema;
mod security_issuing;
mod security_login;
mod security_queue_full;
mod security_small;
mod security_snapshots;
mod stats;
mod ws;
mod ws_hardening;
