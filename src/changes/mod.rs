//! One room for ticket changes: every request that changes a ticket is submitted here.
//!
//! - [`ChangeWriter`] (`writer`) queues the request with the other changes of its tenant,
//!   commits it in a batch on the writer thread, retries what a failed batch held, and
//!   hands the committed change's event to the hubs (`publish`).
//! - `idempotency` claims a request's `Idempotency-Key` in the batch's transaction, replays
//!   the answer stored for it, and stores the new answer with the change.
//!
//! - `day_closer` closes each tenant's day by itself, through the writer.
//!
//! `http/` reads the request (body, `Idempotency-Key` header), builds a [`ChangeRequest`]
//! and maps the [`ChangeOutcome`] to a response.

mod day_closer;
pub mod idempotency;
mod publish;
mod writer;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};

pub use day_closer::{CLOSE_TICK, TENANTS_REFRESH, close_days_forever};
pub use writer::{ChangeWriter, LANES, MAX_BATCH};

use crate::db::idempotency::{RequestFingerprint, SavedResponse};
use crate::ticketing::batch::Command;
use crate::views::{Audience, DayClosedAnswer, OperatorTicket};

/// How long before its handler's deadline a request's batch gives up, so that the
/// handler always learns the outcome: a request answered 503 must not commit afterwards.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// One request that changes a ticket.
pub struct ChangeRequest {
    pub command: Command,
    pub now: DateTime<Utc>,
    /// When its batch must have committed or given up.
    pub deadline: Instant,
    /// The projection the caller gets (and a stored answer keeps).
    pub audience: Audience,
    pub key: Option<KeyedRequest>,
}

/// The request's `Idempotency-Key`, and what a stored answer must match.
pub struct KeyedRequest {
    pub key: String,
    pub fingerprint: RequestFingerprint,
}

/// What became of a submitted change.
pub enum ChangeOutcome {
    /// Committed, its event handed to the hubs: the ticket as the change left it.
    Changed(Box<OperatorTicket>),
    /// A call-next that found nobody waiting.
    NothingToCall,
    /// The day closed: its changes' events handed to the hubs.
    DayClosed(DayClosedAnswer),
    /// The answer stored for the key, to send again.
    Replayed(SavedResponse),
}

/// The status a change answers with: 201 for a new ticket, 200 for the others.
pub fn change_status(command: &Command) -> StatusCode {
    match command {
        Command::Issue(_) => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}
