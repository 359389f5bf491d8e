//! Ticket commands, of one tenant or many, applied together in one transaction.
//!
//! Every change of a tenant appends to its log under the tenant's seq row lock, which
//! serialises the tenant's writers. Applied one per transaction, each change paid for
//! that lock, its counts, its event and its commit on its own. Here the commands of a
//! batch run in the caller's transaction, whatever their tenants: the issues among them
//! together ([`issuing`](super::issuing)), then the starts, finishes, no-shows and cancels
//! together (one statement), then the call-nexts from all services (one statement), then
//! the others one after another (a close of the day among them, which changes many tickets
//! of its tenant and so has no other command of that tenant beside it). [`record_changes`]
//! appends all their events, each
//! tenant's in that order, with one seq update, one count update and one insert for all
//! tenants. The requests of a batch were in flight together, so any order among them is
//! one they could have had.
//!
//! A command refused for its own reasons (a busy counter, a wrong transition, an unknown
//! ticket) is refused before it writes anything, so it answers alone and the others go on.
//! A database error fails the whole batch. One refusal comes from a failed statement: the
//! unique index that keeps a counter to one active ticket, when another process called to
//! the counter at the same moment. It aborts the transaction, so the batch fails and its
//! requests are tried again one by one, each command in a savepoint ([`Isolation`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection};

use super::Error;
use super::commands::{
    self, Change, DayClose, IssueTicket, Pending, StatusAct, record_changes, set_statuses,
};
use super::issuing::{NewIssue, issue_batch};
use super::paces::PaceCache;
use crate::db;
use crate::db::tenants::Tenant;
use crate::db::tickets::CallNextAt;
use crate::domain::call_order::Turn;
use crate::domain::ids::{CounterId, ServiceId, TicketId, UserId};
use crate::domain::ticket::{Action, EventAction};
use crate::views::DayClosedAnswer;

#[derive(Debug, Clone)]
pub enum Command {
    Issue(IssueTicket),
    /// Call the next waiting ticket (of `services`, or of all) to the counter.
    CallNext {
        counter: CounterId,
        services: Option<Vec<ServiceId>>,
        operator: UserId,
    },
    /// Call this waiting ticket to the counter, out of order.
    Call {
        ticket: TicketId,
        counter: CounterId,
        operator: UserId,
    },
    /// Recall, start, finish, no-show, cancel or reactivate.
    Act {
        ticket: TicketId,
        action: Action,
    },
    Transfer {
        ticket: TicketId,
        service: ServiceId,
    },
    /// Close the tenant's day (contract §8). It changes many tickets of its tenant, so a
    /// batch holds no other command of that tenant beside it (`changes::writer`).
    CloseDay(DayClose),
}

impl Command {
    /// The ticket the command names, if it names one.
    pub fn ticket(&self) -> Option<TicketId> {
        match self {
            Command::Call { ticket, .. }
            | Command::Act { ticket, .. }
            | Command::Transfer { ticket, .. } => Some(*ticket),
            Command::Issue(_) | Command::CallNext { .. } | Command::CloseDay(_) => None,
        }
    }

    /// Whether the command may change any ticket of its tenant.
    pub fn changes_the_whole_tenant(&self) -> bool {
        matches!(self, Command::CloseDay(_))
    }
}

/// A command, its tenant, and the moment its request came in.
pub struct CommandAt<'a> {
    pub tenant: &'a Tenant,
    pub command: &'a Command,
    pub now: DateTime<Utc>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub enum CommandOutcome {
    Changed(Box<Change>),
    /// A call-next that found nobody waiting.
    NothingToCall,
    DayClosed(ClosedDay),
}

/// A close of the day: its changes in seq order, and the tenant's seq after them.
#[derive(Debug, Clone)]
pub struct ClosedDay {
    pub changes: Vec<Change>,
    pub seq: i64,
}

impl ClosedDay {
    /// Tickets that expired (were waiting or called).
    pub fn expired(&self) -> usize {
        self.count(EventAction::Expired)
    }

    /// Tickets being served that were finished.
    pub fn finished(&self) -> usize {
        self.count(EventAction::Finished)
    }

    /// The answer to `POST …/day/close`.
    pub fn answer(&self) -> DayClosedAnswer {
        DayClosedAnswer {
            expired: self.expired(),
            finished: self.finished(),
            seq: self.seq,
        }
    }

    fn count(&self, action: EventAction) -> usize {
        self.changes
            .iter()
            .filter(|c| c.event.action == action)
            .count()
    }
}

/// Whether each command runs in a savepoint of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// No savepoints: a failed statement fails the batch.
    Shared,
    /// One savepoint per command (one more round trip each): a command whose statement
    /// fails is rolled back alone and answers with its error.
    PerCommand,
}

/// Applies the commands in the caller's transaction, issues first, then status changes,
/// then call-nexts from all services, then the others in the order given, and appends
/// their events in the order applied. The outer error fails the batch; the inner ones are
/// the answers of single commands, in the order given.
pub async fn apply(
    conn: &mut PgConnection,
    commands: &[CommandAt<'_>],
    paces: &PaceCache,
    isolation: Isolation,
) -> Result<Vec<Result<CommandOutcome, Error>>, Error> {
    let mut answers: Vec<Option<Result<CommandOutcome, Error>>> =
        commands.iter().map(|_| None).collect();

    let (issue_at, issues): (Vec<usize>, Vec<NewIssue>) = commands
        .iter()
        .enumerate()
        .filter_map(|(i, command_at)| match command_at.command {
            Command::Issue(ticket) => Some((
                i,
                NewIssue {
                    tenant: command_at.tenant,
                    ticket: ticket.clone(),
                    now: command_at.now,
                },
            )),
            _ => None,
        })
        .unzip();
    let mut pending: Vec<(usize, Pending)> = Vec::with_capacity(commands.len());
    if !issues.is_empty() {
        let (refused, issued) = issue_batch(conn, &issues).await?;
        for (k, error) in refused {
            answers[issue_at[k]] = Some(Err(error));
        }
        pending.extend(issued.into_iter().map(|(k, p)| (issue_at[k], p)));
    }

    // Then the status changes and the call-nexts from all services, a statement for each
    // group. Savepoints are per command, so a batch retried that way goes one by one.
    let mut together = vec![false; commands.len()];
    if isolation == Isolation::Shared {
        let mut groups = GroupedOutcomes {
            together: &mut together,
            answers: &mut answers,
            pending: &mut pending,
        };
        groups.status_changes(conn, commands).await?;
        groups.call_nexts(conn, commands).await?;
    }

    for (i, command_at) in commands.iter().enumerate() {
        if together[i] || matches!(command_at.command, Command::Issue(_)) {
            continue;
        }
        let prepared = match isolation {
            Isolation::Shared => prepare(conn, command_at).await,
            Isolation::PerCommand => {
                let mut savepoint = conn.begin().await?;
                let prepared = prepare(&mut savepoint, command_at).await;
                match &prepared {
                    Err(error) if !error.fails_the_batch() => savepoint.rollback().await?,
                    _ => savepoint.commit().await?,
                }
                prepared
            }
        };
        match prepared {
            Ok(Prepared::Changes(changes)) => pending.extend(changes.into_iter().map(|p| (i, p))),
            Ok(Prepared::NothingToCall) => answers[i] = Some(Ok(CommandOutcome::NothingToCall)),
            Err(error) if error.fails_the_batch() => return Err(error),
            Err(error) => answers[i] = Some(Err(error)),
        }
    }

    let (order, pending): (Vec<usize>, Vec<Pending>) = pending.into_iter().unzip();
    let mut changes: Vec<Vec<Change>> = commands.iter().map(|_| Vec::new()).collect();
    for (i, change) in order
        .into_iter()
        .zip(record_changes(conn, pending, paces).await?)
    {
        changes[i].push(change);
    }
    let mut outcomes = Vec::with_capacity(commands.len());
    for ((answer, mut changes), command_at) in answers.into_iter().zip(changes).zip(commands) {
        let outcome = match (answer, command_at.command) {
            (Some(answer), _) => answer,
            (None, Command::CloseDay(_)) => {
                let seq = match changes.last() {
                    Some(last) => last.event.seq,
                    None => db::events::current_seq(conn, command_at.tenant.id).await?,
                };
                Ok(CommandOutcome::DayClosed(ClosedDay { changes, seq }))
            }
            (None, _) => match (changes.pop(), changes.is_empty()) {
                (Some(change), true) => Ok(CommandOutcome::Changed(Box::new(change))),
                _ => {
                    return Err(Error::unexpected(anyhow::anyhow!(
                        "a command got no answer, or more than one change"
                    )));
                }
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A command applied up to its changes, their events not yet recorded.
enum Prepared {
    Changes(Vec<Pending>),
    /// A call-next that found nobody waiting.
    NothingToCall,
}

impl From<Option<Pending>> for Prepared {
    fn from(pending: Option<Pending>) -> Self {
        match pending {
            Some(p) => Prepared::Changes(vec![p]),
            None => Prepared::NothingToCall,
        }
    }
}

/// Where the commands applied in groups leave their outcomes, by command index.
struct GroupedOutcomes<'a> {
    together: &'a mut [bool],
    answers: &'a mut [Option<Result<CommandOutcome, Error>>],
    pending: &'a mut Vec<(usize, Pending)>,
}

impl GroupedOutcomes<'_> {
    fn record(&mut self, i: usize, outcome: Result<Option<Pending>, Error>) -> Result<(), Error> {
        self.together[i] = true;
        match outcome {
            Ok(Some(p)) => self.pending.push((i, p)),
            Ok(None) => self.answers[i] = Some(Ok(CommandOutcome::NothingToCall)),
            Err(error) if error.fails_the_batch() => return Err(error),
            Err(error) => self.answers[i] = Some(Err(error)),
        }
        Ok(())
    }

    /// Start, finish, no-show and cancel, all in one statement (a batch names each
    /// ticket once).
    async fn status_changes(
        &mut self,
        conn: &mut PgConnection,
        commands: &[CommandAt<'_>],
    ) -> Result<(), Error> {
        let (at, acts): (Vec<usize>, Vec<StatusAct>) = commands
            .iter()
            .enumerate()
            .filter_map(|(i, command_at)| match command_at.command {
                Command::Act { ticket, action } if commands::is_status_change(*action) => Some((
                    i,
                    StatusAct {
                        tenant: command_at.tenant.id,
                        id: *ticket,
                        action: *action,
                        now: command_at.now,
                    },
                )),
                _ => None,
            })
            .unzip();
        if acts.is_empty() {
            return Ok(());
        }
        for (i, outcome) in at.into_iter().zip(set_statuses(conn, &acts).await?) {
            self.record(i, outcome.map(Some))?;
        }
        Ok(())
    }

    /// Call-nexts from all services, the first at each counter, in one statement: the free
    /// counters on a fair turn, then the others, take the next waiting tickets in the order
    /// the calls came, and their changes are logged in that order. A second call at a
    /// counter is left to the commands applied one by one, after this one.
    async fn call_nexts(
        &mut self,
        conn: &mut PgConnection,
        commands: &[CommandAt<'_>],
    ) -> Result<(), Error> {
        let mut counters = HashSet::new();
        let (at, calls): (Vec<usize>, Vec<CallNextAt>) = commands
            .iter()
            .enumerate()
            .filter_map(|(i, command_at)| match command_at.command {
                Command::CallNext {
                    counter,
                    services: None,
                    operator,
                } if counters.insert(*counter) => Some((
                    i,
                    CallNextAt {
                        tenant: command_at.tenant.id,
                        counter: *counter,
                        operator: *operator,
                        now: command_at.now,
                        rules: command_at.tenant.call_rules(command_at.now),
                    },
                )),
                _ => None,
            })
            .unzip();
        if calls.is_empty() {
            return Ok(());
        }
        let mut found: Vec<_> = at
            .into_iter()
            .zip(commands::call_next_many(conn, &calls).await?)
            .collect();
        // Stable: the fair turns first, each group in the order the calls came.
        found.sort_by_key(|(_, (_, turn))| *turn != Turn::Fair);
        for (i, (outcome, _)) in found {
            self.record(i, outcome)?;
        }
        Ok(())
    }
}

/// Runs a command other than an issue up to its pending changes.
async fn prepare(conn: &mut PgConnection, command_at: &CommandAt<'_>) -> Result<Prepared, Error> {
    let (tenant, now) = (command_at.tenant, command_at.now);
    if let Command::CloseDay(close) = command_at.command {
        let changes = commands::close_day(conn, tenant.id, *close, now).await?;
        return Ok(Prepared::Changes(changes));
    }
    let one = match command_at.command {
        Command::Issue(_) => Err(Error::unexpected(anyhow::anyhow!(
            "issues are applied together, not one by one"
        ))),
        Command::CallNext {
            counter,
            services,
            operator,
        } => commands::call_next(conn, tenant, *counter, services.clone(), *operator, now).await,
        Command::Call {
            ticket,
            counter,
            operator,
        } => commands::call_ticket(conn, tenant, *ticket, *counter, *operator, now)
            .await
            .map(Some),
        Command::Act { ticket, action } => commands::act(conn, tenant, *ticket, *action, now)
            .await
            .map(Some),
        Command::Transfer { ticket, service } => {
            commands::transfer(conn, tenant, *ticket, *service, now)
                .await
                .map(Some)
        }
        Command::CloseDay(_) => Err(Error::unexpected(anyhow::anyhow!(
            "a close of the day is prepared above"
        ))),
    };
    one.map(Prepared::from)
}
