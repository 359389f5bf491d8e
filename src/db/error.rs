//! What a query function in `db/` can fail with. No HTTP here: `error.rs` maps each variant
//! to a status and code.

use std::str::FromStr;

use sqlx::postgres::{PgDatabaseError, PgSeverity};

use crate::domain::ticket::UnknownValue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query failed; [`Error::is_connection_failure`] tells an outage from a bad query.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(Entity),
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// A row or result the code cannot read (a stored value out of range, a row missing
    /// from a result): a bug or a hand-edited database, never the client's doing.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl Error {
    pub fn unexpected(err: impl Into<anyhow::Error>) -> Self {
        Error::Unexpected(err.into())
    }

    /// Whether the database is unavailable to us, see [`is_connection_failure`].
    pub fn is_connection_failure(&self) -> bool {
        matches!(self, Error::Database(err) if is_connection_failure(err))
    }
}

/// A value the database keeps as text (a status, a priority, an event's action), read into
/// its type where its row is read. Only known values are written (the tickets table checks
/// them too), so another one is a bug or a hand-edited row: `Unexpected`, never the
/// client's doing.
pub(super) fn stored<T: FromStr<Err = UnknownValue>>(raw: &str) -> Result<T, Error> {
    raw.parse().map_err(Error::unexpected)
}

/// A write refused because of what is there already (a unique constraint, or the check
/// made before it). Each message is written here once; `error.rs` gives each its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("a tenant with this slug already exists")]
    SlugTaken,
    #[error("this tenant already has a service with this code")]
    ServiceCodeTaken,
    #[error("this tenant already has a counter with this name")]
    CounterNameTaken,
    #[error("this tenant already has a user with this username")]
    UsernameTaken,
    /// The counter already has a called or serving ticket (`tickets_counter_active_key`).
    #[error("this counter already has a called or serving ticket; finish it first")]
    CounterBusy,
    /// An admin deactivated the counter (contract §9): nothing is called to it.
    #[error("this counter is not active; an admin can activate it again")]
    CounterInactive,
    /// The change would leave the tenant without an active admin (contract §9).
    #[error("this would leave the site without an active admin; make another user admin first")]
    LastAdmin,
}

/// What a lookup did not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Tenant,
    Service,
    Counter,
    Ticket,
    User,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Entity::Tenant => "tenant",
            Entity::Service => "service",
            Entity::Counter => "counter",
            Entity::Ticket => "ticket",
            Entity::User => "user",
        })
    }
}

/// Maps a violation of the named constraint to `error`; anything else stays a database error.
pub trait OnConstraint<T> {
    fn on_constraint(self, name: &str, error: Error) -> Result<T, Error>;
}

impl<T> OnConstraint<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, error: Error) -> Result<T, Error> {
        self.map_err(|err| match &err {
            sqlx::Error::Database(db) if db.constraint() == Some(name) => error,
            _ => Error::Database(err),
        })
    }
}

/// Whether the error means "the database is unavailable to us" (no usable connection, or
/// PostgreSQL refuses, ends or cannot serve our session) rather than "this query failed".
/// Such errors answer 503 `database_unavailable`; a batch whose BEGIN fails with one moves
/// to another connection.
pub fn is_connection_failure(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let ends_session = db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic));
            db.code()
                .is_some_and(|code| sqlstate_means_unavailable(&code, ends_session))
        }
        _ => false,
    }
}

/// Classifies by SQLSTATE class and severity, never by message text:
/// - class 08, connection exception;
/// - class 53, insufficient resources: 53300 too many connections, 53100 disk full, 53200
///   out of memory, 53400 configuration limit exceeded;
/// - class 57P, an operator or the server ending or refusing sessions: 57P01 admin
///   shutdown (`pg_terminate_backend`, a fast shutdown), 57P02 crash shutdown, 57P03
///   cannot connect now (starting up, shutting down, in recovery), 57P04 database dropped,
///   57P05 idle session timeout. Not 57014 query_canceled: the statement was cancelled
///   (`statement_timeout`, `pg_cancel_backend`) on a working connection to a working
///   database; nextup sets no statement timeout, so that is a misconfiguration or an
///   operator's act, and stays a 500 that is logged;
/// - any error of severity FATAL (or PANIC), which ends the session: PostgreSQL refuses a
///   login with one, whatever its code (55000 "database is not currently accepting
///   connections", 3D000 database does not exist, 28P01 password authentication failed),
///   and a connection that cannot be made means the database is unavailable to us.
fn sqlstate_means_unavailable(code: &str, ends_session: bool) -> bool {
    ends_session || code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_unavailable_by_sqlstate_class_and_on_errors_that_end_the_session() {
        const FATAL: bool = true;
        const ERROR: bool = false;
        let cases = [
            // Class 08: connection exception.
            ("08000", ERROR, true),
            ("08003", ERROR, true),
            ("08006", FATAL, true),
            ("08P01", FATAL, true),
            // Class 53: insufficient resources.
            ("53000", ERROR, true),
            ("53100", ERROR, true),
            ("53200", ERROR, true),
            ("53300", FATAL, true),
            ("53400", ERROR, true),
            // Class 57P: sessions ended or refused.
            ("57P01", FATAL, true),
            ("57P02", FATAL, true),
            ("57P03", FATAL, true),
            ("57P04", FATAL, true),
            ("57P05", FATAL, true),
            // A refused login is FATAL whatever its class.
            ("55000", FATAL, true),
            ("3D000", FATAL, true),
            ("28P01", FATAL, true),
            ("28000", FATAL, true),
            // The same codes raised by a statement: that statement failed.
            ("55000", ERROR, false),
            ("3D000", ERROR, false),
            // A cancelled statement on a working connection.
            ("57014", ERROR, false),
            ("57000", ERROR, false),
            // Ordinary statement failures.
            ("23505", ERROR, false),
            ("40001", ERROR, false),
            ("40P01", ERROR, false),
            ("42P01", ERROR, false),
            ("XX000", ERROR, false),
        ];
        for (code, ends_session, unavailable) in cases {
            assert_eq!(
                sqlstate_means_unavailable(code, ends_session),
                unavailable,
                "{code} (fatal: {ends_session})"
            );
        }
    }

    #[test]
    fn errors_without_a_usable_connection_are_unavailable_and_others_are_not() {
        assert!(is_connection_failure(&sqlx::Error::PoolTimedOut));
        assert!(is_connection_failure(&sqlx::Error::PoolClosed));
        assert!(is_connection_failure(&sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset)
        )));
        assert!(!is_connection_failure(&sqlx::Error::RowNotFound));
        assert!(Error::from(sqlx::Error::PoolClosed).is_connection_failure());
        assert!(!Error::from(sqlx::Error::RowNotFound).is_connection_failure());
        assert!(!Error::NotFound(Entity::Ticket).is_connection_failure());
    }
}
