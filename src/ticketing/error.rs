//! What a ticket command can be refused with, or fail with. No HTTP here: `error.rs` maps
//! each variant to a status and code.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::{self, Entity};
use crate::domain::queue_limit::QueueFull;
use crate::domain::ticket::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidTransition(#[from] TransitionError),
    #[error("{0} not found")]
    NotFound(Entity),
    #[error("the service is not active")]
    ServiceInactive,
    #[error("the ticket is already in this service")]
    SameService,
    #[error("{0}")]
    QueueFull(#[from] QueueFull),
    /// A public issue while the tenant is closed (contract §8).
    #[error("{}", closed_message(*.opens_at))]
    Closed { opens_at: Option<DateTime<Utc>> },
    #[error("service_ids must list at least one service (omit it to call from all)")]
    NoServicesNamed,
    #[error(transparent)]
    Db(#[from] db::Error),
    /// Something the code cannot make sense of (an unreadable stored value, a command in
    /// the wrong place): a bug, never the client's doing.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        Error::Db(db::Error::Database(err))
    }
}

impl From<db::Conflict> for Error {
    fn from(conflict: db::Conflict) -> Self {
        Error::Db(conflict.into())
    }
}

fn closed_message(opens_at: Option<DateTime<Utc>>) -> String {
    match opens_at {
        Some(at) => format!(
            "closed: tickets are issued again from {}",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        None => "closed: this site has no opening hours ahead".to_owned(),
    }
}

impl Error {
    pub fn unexpected(err: impl Into<anyhow::Error>) -> Self {
        Error::Unexpected(err.into())
    }

    /// Whether the error fails the whole batch: the database failed (the transaction may be
    /// aborted, so nothing of it can commit) or the code met what it cannot handle. A
    /// refusal answers its own command only.
    pub fn fails_the_batch(&self) -> bool {
        matches!(
            self,
            Error::Unexpected(_) | Error::Db(db::Error::Database(_) | db::Error::Unexpected(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_failures_fail_the_batch_and_refusals_do_not() {
        assert!(Error::from(sqlx::Error::PoolTimedOut).fails_the_batch());
        assert!(Error::from(sqlx::Error::RowNotFound).fails_the_batch());
        assert!(Error::unexpected(anyhow::anyhow!("a bug")).fails_the_batch());
        assert!(Error::Db(db::Error::unexpected(anyhow::anyhow!("a bad row"))).fails_the_batch());
        for refusal in [
            Error::from(db::Conflict::CounterBusy),
            Error::NotFound(Entity::Ticket),
            Error::Db(db::Error::NotFound(Entity::Service)),
            Error::ServiceInactive,
            Error::SameService,
            Error::NoServicesNamed,
            Error::Closed { opens_at: None },
        ] {
            assert!(!refusal.fails_the_batch(), "{refusal:?}");
        }
    }
}
