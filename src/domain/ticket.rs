//! The ticket life cycle of contract §2.
//!
//! A ticket is issued `waiting`, called to a counter, served and finished, or leaves the
//! queue as `no_show` / `cancelled` (from where it can be reactivated, keeping its original
//! issue time and so its place). `transition` is the only place that decides which moves
//! are legal; the database layer applies the side effects (timestamps, counter, operator).
//!
//! The call order of waiting tickets is stated in `domain::call_order`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Called,
    Serving,
    Done,
    NoShow,
    Cancelled,
    /// The day closed while the ticket was waiting or called (contract §8). Final.
    Expired,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Waiting,
        Status::Called,
        Status::Serving,
        Status::Done,
        Status::NoShow,
        Status::Cancelled,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Called => "called",
            Status::Serving => "serving",
            Status::Done => "done",
            Status::NoShow => "no_show",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
        }
    }

    /// A ticket in this status occupies its counter: the counter is busy (contract §2). SQL
    /// states the same rule once, as the function `holds_counter(status)` behind the view
    /// `busy_counters` and the unique index `tickets_counter_active_key`.
    pub fn holds_counter(self) -> bool {
        matches!(self, Status::Called | Status::Serving)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for Status {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "status",
                value: s.to_owned(),
            })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Normal,
    Priority,
}

impl Priority {
    pub const ALL: [Priority; 2] = [Priority::Normal, Priority::Priority];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Priority => "priority",
        }
    }
}

impl FromStr for Priority {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "normal" => Ok(Priority::Normal),
            "priority" => Ok(Priority::Priority),
            _ => Err(UnknownValue {
                what: "priority",
                value: s.to_owned(),
            }),
        }
    }
}

/// What can happen to an existing ticket. Issuing creates one and is not a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Call,
    Recall,
    Start,
    Finish,
    NoShow,
    Cancel,
    Transfer,
    Reactivate,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Call,
        Action::Recall,
        Action::Start,
        Action::Finish,
        Action::NoShow,
        Action::Cancel,
        Action::Transfer,
        Action::Reactivate,
    ];

    /// The action as it appears in a URL: `POST …/tickets/{id}/{action}`.
    pub fn path_name(self) -> &'static str {
        match self {
            Action::Call => "call",
            Action::Recall => "recall",
            Action::Start => "start",
            Action::Finish => "finish",
            Action::NoShow => "no-show",
            Action::Cancel => "cancel",
            Action::Transfer => "transfer",
            Action::Reactivate => "reactivate",
        }
    }

    pub fn from_path_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.path_name() == name)
    }

    /// The event this action produces (`ticket_update.data.action`).
    pub fn event(self) -> EventAction {
        match self {
            Action::Call => EventAction::Called,
            Action::Recall => EventAction::Recalled,
            Action::Start => EventAction::Started,
            Action::Finish => EventAction::Finished,
            Action::NoShow => EventAction::NoShow,
            Action::Cancel => EventAction::Cancelled,
            Action::Transfer => EventAction::Transferred,
            Action::Reactivate => EventAction::Reactivated,
        }
    }
}

/// The `action` of a `ticket_update` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Issued,
    Called,
    Recalled,
    Started,
    Finished,
    NoShow,
    Cancelled,
    Transferred,
    Reactivated,
    Expired,
}

impl EventAction {
    pub const ALL: [EventAction; 10] = [
        EventAction::Issued,
        EventAction::Called,
        EventAction::Recalled,
        EventAction::Started,
        EventAction::Finished,
        EventAction::NoShow,
        EventAction::Cancelled,
        EventAction::Transferred,
        EventAction::Reactivated,
        EventAction::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Issued => "issued",
            EventAction::Called => "called",
            EventAction::Recalled => "recalled",
            EventAction::Started => "started",
            EventAction::Finished => "finished",
            EventAction::NoShow => "no_show",
            EventAction::Cancelled => "cancelled",
            EventAction::Transferred => "transferred",
            EventAction::Reactivated => "reactivated",
            EventAction::Expired => "expired",
        }
    }
}

impl FromStr for EventAction {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventAction::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "event action",
                value: s.to_owned(),
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a ticket that is {from} cannot be {}", .action.event().as_str().replace('_', "-"))]
pub struct TransitionError {
    pub from: Status,
    pub action: Action,
}

/// The status a ticket moves to when `action` is applied in status `from`.
pub fn transition(from: Status, action: Action) -> Result<Status, TransitionError> {
    use Action as A;
    use Status as S;
    let to = match (from, action) {
        (S::Waiting, A::Call) => S::Called,
        (S::Called, A::Recall) => S::Called,
        (S::Called, A::Start) => S::Serving,
        (S::Serving, A::Finish) => S::Done,
        (S::Called, A::NoShow) => S::NoShow,
        (S::Waiting | S::Called, A::Cancel) => S::Cancelled,
        (S::Called | S::Serving, A::Transfer) => S::Waiting,
        (S::NoShow | S::Cancelled, A::Reactivate) => S::Waiting,
        _ => return Err(TransitionError { from, action }),
    };
    Ok(to)
}

/// What a recall of a ticket called `call_count` times does under the tenant's recall limit
/// (contract §8, `max_calls`; `None`: no limit): a recall that would make `call_count`
/// exceed the limit is a no-show instead.
pub fn recall_under_limit(call_count: u32, max_calls: Option<u32>) -> Action {
    match max_calls {
        Some(max) if call_count >= max => Action::NoShow,
        _ => Action::Recall,
    }
}

/// What closing the day does to a ticket in status `from` (contract §8): a waiting or
/// called ticket expires, a ticket being served is finished, the others stay as they are.
pub fn close_day_change(from: Status) -> Option<(Status, EventAction)> {
    match from {
        Status::Waiting | Status::Called => Some((Status::Expired, EventAction::Expired)),
        Status::Serving => Some((Status::Done, EventAction::Finished)),
        Status::Done | Status::NoShow | Status::Cancelled | Status::Expired => None,
    }
}

/// The statuses `action` applies to.
pub fn sources(action: Action) -> Vec<Status> {
    Status::ALL
        .into_iter()
        .filter(|from| transition(*from, action).is_ok())
        .collect()
}

/// How a change moves its service's count of waiting tickets: +1 when the ticket starts
/// waiting, -1 when it stops. A ticket changes service only by transfer, which starts from
/// called or serving, so the count of its current service is the only one that moves.
pub fn waiting_delta(previous: Option<Status>, now: Status) -> i32 {
    i32::from(now == Status::Waiting) - i32::from(previous == Some(Status::Waiting))
}

/// Waiting tickets of one service, by priority class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WaitingCounts {
    pub normal: u32,
    pub priority: u32,
}

impl WaitingCounts {
    pub fn total(self) -> u32 {
        self.normal + self.priority
    }

    /// The counts before a change that moved this class's count by `delta`.
    pub fn before(self, priority: Priority, delta: i32) -> Self {
        let undo = |count: u32| count.saturating_add_signed(-delta);
        match priority {
            Priority::Normal => Self {
                normal: undo(self.normal),
                ..self
            },
            Priority::Priority => Self {
                priority: undo(self.priority),
                ..self
            },
        }
    }

    pub fn of(self, priority: Priority) -> u32 {
        match priority {
            Priority::Normal => self.normal,
            Priority::Priority => self.priority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Action as A;
    use Status as S;

    /// Contract §2, as a table: every (status, action) pair not listed is forbidden.
    const ALLOWED: &[(Status, Action, Status)] = &[
        (S::Waiting, A::Call, S::Called),
        (S::Called, A::Recall, S::Called),
        (S::Called, A::Start, S::Serving),
        (S::Serving, A::Finish, S::Done),
        (S::Called, A::NoShow, S::NoShow),
        (S::Waiting, A::Cancel, S::Cancelled),
        (S::Called, A::Cancel, S::Cancelled),
        (S::Called, A::Transfer, S::Waiting),
        (S::Serving, A::Transfer, S::Waiting),
        (S::NoShow, A::Reactivate, S::Waiting),
        (S::Cancelled, A::Reactivate, S::Waiting),
    ];

    #[test]
    fn every_status_and_action_pair_follows_the_contract_table() {
        let mut checked = 0;
        for from in Status::ALL {
            for action in Action::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match (transition(from, action), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {action:?}"),
                    (Err(e), None) => assert_eq!(e, TransitionError { from, action }),
                    (got, want) => panic!("{from} + {action:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 56);
    }

    #[test]
    fn a_recall_past_the_limit_is_a_no_show() {
        let cases = [
            (1, None, A::Recall, "no limit"),
            (10_000, None, A::Recall, "no limit, however many calls"),
            (
                1,
                Some(1),
                A::NoShow,
                "limit 1: the first call was the only one",
            ),
            (1, Some(2), A::Recall, "a second call within 2"),
            (2, Some(2), A::NoShow, "a third call past 2"),
            (
                5,
                Some(2),
                A::NoShow,
                "called more often than a limit set later",
            ),
        ];
        for (call_count, max_calls, action, why) in cases {
            assert_eq!(recall_under_limit(call_count, max_calls), action, "{why}");
        }
        // Called once, then recalled while the limit allows: call_count 1, 2, 3, then no-show.
        let mut call_count = 1;
        while recall_under_limit(call_count, Some(3)) == A::Recall {
            call_count += 1;
        }
        assert_eq!(call_count, 3);
    }

    #[test]
    fn closing_the_day_expires_the_queue_and_finishes_service() {
        for from in Status::ALL {
            let expected = match from {
                S::Waiting | S::Called => Some((S::Expired, EventAction::Expired)),
                S::Serving => Some((S::Done, EventAction::Finished)),
                _ => None,
            };
            assert_eq!(close_day_change(from), expected, "{from}");
        }
    }

    #[test]
    fn expired_tickets_accept_no_action() {
        for action in Action::ALL {
            assert!(
                transition(S::Expired, action).is_err(),
                "expired + {action:?}"
            );
        }
    }

    #[test]
    fn finished_tickets_accept_no_action() {
        for action in Action::ALL {
            assert!(transition(S::Done, action).is_err(), "done + {action:?}");
        }
    }

    #[test]
    fn transition_errors_read_as_sentences() {
        let err = transition(S::Done, A::NoShow).unwrap_err();
        assert_eq!(err.to_string(), "a ticket that is done cannot be no-show");
        let err = transition(S::Waiting, A::Start).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a ticket that is waiting cannot be started"
        );
    }

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for action in Action::ALL {
            assert_eq!(Action::from_path_name(action.path_name()), Some(action));
            assert_eq!(
                serde_json::to_value(action.event()).unwrap(),
                action.event().as_str()
            );
        }
        for action in EventAction::ALL {
            assert_eq!(action.as_str().parse::<EventAction>().unwrap(), action);
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
        assert_eq!(Action::from_path_name("no_show"), None);
        assert!("urgent".parse::<Priority>().is_err());
        assert!("lost".parse::<EventAction>().is_err());
    }

    #[test]
    fn only_starting_or_stopping_to_wait_moves_the_waiting_count() {
        assert_eq!(waiting_delta(None, S::Waiting), 1, "issue");
        assert_eq!(waiting_delta(Some(S::Waiting), S::Called), -1, "call");
        assert_eq!(waiting_delta(Some(S::Waiting), S::Cancelled), -1, "cancel");
        assert_eq!(waiting_delta(Some(S::Called), S::Waiting), 1, "transfer");
        assert_eq!(waiting_delta(Some(S::NoShow), S::Waiting), 1, "reactivate");
        assert_eq!(waiting_delta(Some(S::Called), S::Called), 0, "recall");
        assert_eq!(waiting_delta(Some(S::Called), S::Serving), 0, "start");
        assert_eq!(waiting_delta(Some(S::Serving), S::Done), 0, "finish");
    }

    #[test]
    fn status_actions_lead_to_one_status_from_every_source() {
        for action in [
            Action::Start,
            Action::Finish,
            Action::NoShow,
            Action::Cancel,
        ] {
            let targets: std::collections::HashSet<Status> = sources(action)
                .into_iter()
                .map(|from| transition(from, action).unwrap())
                .collect();
            assert_eq!(targets.len(), 1, "{action:?}");
        }
        assert_eq!(
            sources(Action::Cancel),
            vec![Status::Waiting, Status::Called]
        );
    }
}
