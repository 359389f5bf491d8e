//! The two projections of a ticket (contract §3), and the committed change that the
//! `ticket_update` and `queue_update` messages are encoded from.
//!
//! `PublicTicket` has no field for personal data, so a totem, a display or an anonymous
//! REST client cannot receive a customer name or an operator's identity by mistake:
//! the operator view *contains* a public view and adds the private fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db;
use crate::db::events::EventRow;
use crate::db::queue::ServiceLoad;
use crate::db::tickets::TicketRecord;
use crate::domain::call_order::CallOrder;
use crate::domain::ids::{CounterId, ServiceId, TicketId, UserId};
use crate::domain::ticket::{EventAction, Priority, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceRef {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CounterRef {
    pub id: CounterId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorRef {
    pub id: UserId,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicTicket {
    pub id: TicketId,
    pub code: String,
    pub service: ServiceRef,
    pub status: Status,
    pub priority: Priority,
    pub call_count: u32,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub called_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub counter: Option<CounterRef>,
    /// Waiting tickets of the same service that will be called first; `None` unless waiting.
    #[schema(required = true)]
    pub ahead: Option<u32>,
    #[schema(required = true)]
    pub estimated_wait_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorTicket {
    #[serde(flatten)]
    pub public: PublicTicket,
    #[schema(required = true)]
    pub customer_name: Option<String>,
    #[schema(required = true)]
    pub operator: Option<OperatorRef>,
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    /// While waiting, the ticket's place in the call order as a string (see
    /// [`CallOrder::sort_key`]): consoles keep their waiting list in order by it without
    /// knowing the rule. `None` otherwise, and in events logged before it existed.
    #[serde(default)]
    #[schema(required = true)]
    pub call_order_key: Option<String>,
}

impl PublicTicket {
    /// The sort key of a waiting ticket (see [`OperatorTicket::call_order_key`]).
    fn call_order_key(&self) -> Option<String> {
        (self.status == Status::Waiting)
            .then(|| CallOrder::new(self.priority, self.created_at, self.id).sort_key())
    }
}

/// Which projection a caller is entitled to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Public,
    Operator,
}

impl OperatorTicket {
    /// Builds the view; `ahead` is only meaningful (and only kept) for a waiting ticket.
    pub fn from_record(
        record: TicketRecord,
        ahead: Option<u32>,
        loads: &[ServiceLoad],
    ) -> Result<Self, db::Error> {
        let status = record.status;
        let (ahead, estimated_wait_secs) = match (status, ahead) {
            (Status::Waiting, Some(ahead)) => {
                let pace = loads
                    .iter()
                    .find(|load| load.id == record.service_id)
                    .map(|load| load.pace)
                    .unwrap_or_default();
                (Some(ahead), Some(pace.estimated_wait_secs(ahead)))
            }
            _ => (None, None),
        };
        let counter = match (record.counter_id, record.counter_name) {
            (Some(id), Some(name)) if status.holds_counter() || status == Status::Done => {
                Some(CounterRef { id, name })
            }
            _ => None,
        };
        let operator = match (record.operator_id, record.operator_username) {
            (Some(id), Some(username)) => Some(OperatorRef { id, username }),
            _ => None,
        };
        let public = PublicTicket {
            id: record.id,
            code: record.code,
            service: ServiceRef {
                id: record.service_id,
                code: record.service_code,
                name: record.service_name,
            },
            status,
            priority: record.priority,
            call_count: u32::try_from(record.call_count).map_err(db::Error::unexpected)?,
            created_at: record.created_at,
            called_at: record.called_at,
            counter,
            ahead,
            estimated_wait_secs,
        };
        Ok(OperatorTicket {
            call_order_key: public.call_order_key(),
            public,
            customer_name: record.customer_name,
            operator,
            started_at: record.started_at,
            finished_at: record.finished_at,
        })
    }

    /// The ticket as `audience` may see it.
    pub fn project(&self, audience: Audience) -> serde_json::Value {
        let value = match audience {
            Audience::Public => serde_json::to_value(&self.public),
            Audience::Operator => serde_json::to_value(self),
        };
        value.expect("ticket views always serialize")
    }
}

/// A service in queue summaries (`queue_update` and the queue snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
    pub waiting: u32,
    pub estimated_wait_secs: u32,
}

/// Summaries of the services a queue shows: active ones, and inactive ones that still
/// have people waiting.
pub fn service_summaries(loads: &[ServiceLoad]) -> Vec<ServiceSummary> {
    loads
        .iter()
        .filter(|load| load.active || load.waiting > 0)
        .map(|load| ServiceSummary {
            id: load.id,
            code: load.code.clone(),
            name: load.name.clone(),
            waiting: load.waiting,
            estimated_wait_secs: load.pace.estimated_wait_secs(load.waiting),
        })
        .collect()
}

/// A committed ticket change, typed from the commit to the sockets: the writer hands it to
/// the hubs, the event log stores it as an [`EventRow`] and gives it back as one. Each
/// audience's messages are encoded straight from it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedChange {
    pub seq: i64,
    pub action: EventAction,
    /// `None` for an issued ticket.
    pub previous: Option<Status>,
    /// The ticket right after the change (the public view is part of it).
    pub ticket: OperatorTicket,
    /// The services right after the change.
    pub queue: Vec<ServiceSummary>,
    /// When it was committed: the messages' `ts`.
    pub at: DateTime<Utc>,
}

/// A server message with a `seq` (`ticket_update`, `queue_update`).
#[derive(Serialize)]
struct Message<D> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: i64,
    ts: DateTime<Utc>,
    data: D,
}

#[derive(Serialize)]
struct TicketUpdate<'a, T> {
    action: EventAction,
    previous_status: Option<Status>,
    ticket: &'a T,
}

#[derive(Serialize)]
struct QueueUpdate<'a> {
    services: &'a [ServiceSummary],
}

impl CommittedChange {
    /// The two messages (`ticket_update`, then `queue_update`) the change becomes, in the
    /// projection of `audience`. The WebSocket sends exactly these, live or replayed;
    /// `GET …/events` lists them.
    pub fn messages(&self, audience: Audience) -> [String; 2] {
        [self.ticket_update(audience), self.queue_update()]
    }

    pub fn ticket_update(&self, audience: Audience) -> String {
        match audience {
            Audience::Public => self.message("ticket_update", self.update_of(&self.ticket.public)),
            Audience::Operator => self.message("ticket_update", self.update_of(&self.ticket)),
        }
    }

    /// The same in every projection.
    pub fn queue_update(&self) -> String {
        self.message(
            "queue_update",
            QueueUpdate {
                services: &self.queue,
            },
        )
    }

    fn update_of<'a, T>(&self, ticket: &'a T) -> TicketUpdate<'a, T> {
        TicketUpdate {
            action: self.action,
            previous_status: self.previous,
            ticket,
        }
    }

    fn message(&self, kind: &'static str, data: impl Serialize) -> String {
        serde_json::to_string(&Message {
            kind,
            seq: self.seq,
            ts: self.at,
            data,
        })
        .expect("messages always serialize")
    }

    /// The row the event log stores.
    pub fn event_row(&self) -> EventRow {
        EventRow {
            seq: self.seq,
            action: self.action.as_str().to_owned(),
            previous_status: self.previous.map(|s| s.as_str().to_owned()),
            ticket: serde_json::to_value(&self.ticket).expect("ticket views always serialize"),
            queue: serde_json::to_value(&self.queue).expect("summaries always serialize"),
            created_at: self.at,
        }
    }
}

/// An event read back from the log: the same change as the one committed.
impl TryFrom<EventRow> for CommittedChange {
    type Error = db::Error;

    fn try_from(row: EventRow) -> Result<Self, db::Error> {
        let action = row.event_action()?;
        let previous = row.previous()?;
        let mut ticket: OperatorTicket =
            serde_json::from_value(row.ticket).map_err(db::Error::unexpected)?;
        // Events logged before the key existed do not carry it.
        ticket.call_order_key = ticket.public.call_order_key();
        Ok(CommittedChange {
            seq: row.seq,
            action,
            previous,
            ticket,
            queue: serde_json::from_value(row.queue).map_err(db::Error::unexpected)?,
            at: row.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    fn record(status: Status) -> TicketRecord {
        TicketRecord {
            status,
            call_count: 1,
            customer_name: Some("Maria Souza".into()),
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 9, 0, 0).unwrap(),
            counter_id: Some(CounterId::new()),
            counter_name: Some("Desk 1".into()),
            operator_id: Some(UserId::new()),
            operator_username: Some("ana".into()),
            ..TicketRecord::sample()
        }
    }

    #[test]
    fn the_public_projection_has_no_personal_data() {
        let ticket = OperatorTicket::from_record(record(Status::Called), None, &[]).unwrap();
        let public = ticket.project(Audience::Public).to_string();
        assert!(!public.contains("Maria"), "{public}");
        assert!(!public.contains("ana"), "{public}");
        assert!(!public.contains("customer_name") && !public.contains("operator"));
        let private = ticket.project(Audience::Operator).to_string();
        assert!(private.contains("Maria Souza") && private.contains("\"username\":\"ana\""));
    }

    #[test]
    fn ahead_and_estimate_exist_only_while_waiting() {
        let waiting = OperatorTicket::from_record(record(Status::Waiting), Some(2), &[]).unwrap();
        assert_eq!(waiting.public.ahead, Some(2));
        assert_eq!(waiting.public.estimated_wait_secs, Some(600));
        assert_eq!(
            waiting.public.counter, None,
            "a waiting ticket has no counter"
        );
        let called = OperatorTicket::from_record(record(Status::Called), Some(2), &[]).unwrap();
        assert_eq!(called.public.ahead, None);
        assert_eq!(called.public.estimated_wait_secs, None);
        assert_eq!(called.public.counter.unwrap().name, "Desk 1");
    }

    fn queue() -> Vec<ServiceSummary> {
        ["General", "Exams"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| ServiceSummary {
                id: ServiceId::new(),
                code: ["A", "B"][i].into(),
                name: name.into(),
                waiting: 3 + i as u32,
                estimated_wait_secs: 900,
            })
            .collect()
    }

    /// A call (to a counter, by an operator, with a customer name) and an issue (waiting,
    /// priority, no previous status), committed at a time with microseconds.
    fn changes() -> Vec<CommittedChange> {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 9, 30, 0).unwrap()
            + chrono::TimeDelta::microseconds(123_456);
        let mut called = record(Status::Called);
        called.called_at = Some(at);
        called.call_count = 2;
        let mut issued = record(Status::Waiting);
        issued.priority = Priority::Priority;
        issued.counter_id = None;
        issued.counter_name = None;
        issued.operator_id = None;
        issued.operator_username = None;
        vec![
            CommittedChange {
                seq: 41,
                action: EventAction::Called,
                previous: Some(Status::Waiting),
                ticket: OperatorTicket::from_record(called, None, &[]).unwrap(),
                queue: queue(),
                at,
            },
            CommittedChange {
                seq: 42,
                action: EventAction::Issued,
                previous: None,
                ticket: OperatorTicket::from_record(issued, Some(4), &[]).unwrap(),
                queue: queue(),
                at,
            },
        ]
    }

    /// The messages as they were built before changes were typed: the change stored as
    /// JSON, its ticket parsed back and projected, and the messages put together as JSON.
    fn messages_before_typing(change: &CommittedChange, audience: Audience) -> [Value; 2] {
        let stored_ticket = serde_json::to_value(&change.ticket).unwrap();
        let stored_queue = serde_json::to_value(&change.queue).unwrap();
        let ticket: OperatorTicket = serde_json::from_value(stored_ticket).unwrap();
        [
            json!({
                "type": "ticket_update",
                "seq": change.seq,
                "ts": change.at,
                "data": {
                    "action": change.action.as_str(),
                    "previous_status": change.previous.map(Status::as_str),
                    "ticket": ticket.project(audience),
                },
            }),
            json!({
                "type": "queue_update",
                "seq": change.seq,
                "ts": change.at,
                "data": { "services": stored_queue },
            }),
        ]
    }

    #[test]
    fn a_typed_change_encodes_to_the_messages_the_json_path_built() {
        for change in changes() {
            for audience in [Audience::Public, Audience::Operator] {
                let messages = change.messages(audience);
                let before = messages_before_typing(&change, audience);
                for (message, before) in messages.iter().zip(&before) {
                    let message: Value = serde_json::from_str(message).unwrap();
                    assert_eq!(&message, before, "{audience:?}");
                }
                assert_eq!(messages[0], change.ticket_update(audience));
                assert_eq!(messages[1], change.queue_update());
            }
        }
    }

    #[test]
    fn a_change_read_back_from_the_log_sends_the_same_bytes_as_the_live_one() {
        for live in changes() {
            let mut row = live.event_row();
            // As PostgreSQL gives it back: jsonb text, its keys in its own order.
            row.ticket = serde_json::from_str(&row.ticket.to_string()).unwrap();
            row.queue = serde_json::from_str(&row.queue.to_string()).unwrap();
            let read = CommittedChange::try_from(row).unwrap();
            assert_eq!(read, live);
            for audience in [Audience::Public, Audience::Operator] {
                assert_eq!(read.messages(audience), live.messages(audience));
            }
        }
    }

    #[test]
    fn an_event_row_that_cannot_be_read_back_is_an_unexpected_error() {
        let live = &changes()[0];
        let mut bad_action = live.event_row();
        bad_action.action = "teleported".into();
        let mut bad_previous = live.event_row();
        bad_previous.previous_status = Some("lost".into());
        let mut bad_ticket = live.event_row();
        bad_ticket.ticket["status"] = json!("lost");
        let mut bad_queue = live.event_row();
        bad_queue.queue = json!({ "services": [] });
        for row in [bad_action, bad_previous, bad_ticket, bad_queue] {
            let read = CommittedChange::try_from(row.clone());
            assert!(
                matches!(read, Err(db::Error::Unexpected(_))),
                "{row:?} gave {read:?}"
            );
        }
    }

    #[test]
    fn totem_messages_carry_no_personal_data() {
        for change in changes() {
            let public = change.messages(Audience::Public).concat();
            assert!(
                !public.contains("Maria") && !public.contains("ana"),
                "{public}"
            );
            let operator = change.messages(Audience::Operator).concat();
            assert!(operator.contains("Maria Souza"), "{operator}");
        }
    }

    #[test]
    fn only_operators_get_the_sort_key_and_only_while_waiting() {
        let waiting = OperatorTicket::from_record(record(Status::Waiting), Some(0), &[]).unwrap();
        let key = waiting.project(Audience::Operator)["call_order_key"].clone();
        assert!(key.as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert!(
            waiting
                .project(Audience::Public)
                .get("call_order_key")
                .is_none()
        );
        let called = OperatorTicket::from_record(record(Status::Called), None, &[]).unwrap();
        assert_eq!(
            called.project(Audience::Operator)["call_order_key"],
            Value::Null
        );
    }

    #[test]
    fn events_logged_without_a_sort_key_get_one() {
        let ticket = OperatorTicket::from_record(record(Status::Waiting), Some(0), &[]).unwrap();
        let mut logged = serde_json::to_value(&ticket).unwrap();
        logged.as_object_mut().unwrap().remove("call_order_key");
        let event = EventRow {
            seq: 1,
            action: "issued".into(),
            previous_status: None,
            ticket: logged,
            queue: serde_json::json!([]),
            created_at: ticket.public.created_at,
        };
        let read_back = CommittedChange::try_from(event).unwrap();
        assert_eq!(read_back.ticket.call_order_key, ticket.call_order_key);
        assert!(ticket.call_order_key.is_some());
    }

    #[test]
    fn operator_views_round_trip_through_the_event_log() {
        let ticket = OperatorTicket::from_record(record(Status::Serving), None, &[]).unwrap();
        let stored = serde_json::to_value(&ticket).unwrap();
        let back: OperatorTicket = serde_json::from_value(stored).unwrap();
        assert_eq!(back, ticket);
    }
}

/// The answer to closing the day (contract §8): tickets expired and finished, and the
/// tenant's seq after the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayClosedAnswer {
    pub expired: usize,
    pub finished: usize,
    pub seq: i64,
}
