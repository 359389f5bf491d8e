//! The two projections of a ticket (contract §3) and the messages built from events.
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
use crate::domain::ticket::{Priority, Status};
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRef {
    pub id: ServiceId,
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterRef {
    pub id: CounterId,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRef {
    pub id: UserId,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTicket {
    pub id: TicketId,
    pub code: String,
    pub service: ServiceRef,
    pub status: Status,
    pub priority: Priority,
    pub call_count: u32,
    pub created_at: DateTime<Utc>,
    pub called_at: Option<DateTime<Utc>>,
    pub counter: Option<CounterRef>,
    /// Waiting tickets of the same service that will be called first; `None` unless waiting.
    pub ahead: Option<u32>,
    pub estimated_wait_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorTicket {
    #[serde(flatten)]
    pub public: PublicTicket,
    pub customer_name: Option<String>,
    pub operator: Option<OperatorRef>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// While waiting, the ticket's place in the call order as a string (see
    /// [`CallOrder::sort_key`]): consoles keep their waiting list in order by it without
    /// knowing the rule. `None` otherwise, and in events logged before it existed.
    #[serde(default)]
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
        // The record is a row: a value it cannot read is the database's, not the client's.
        let status: Status = record.status.parse().map_err(db::Error::unexpected)?;
        let priority: Priority = record.priority.parse().map_err(db::Error::unexpected)?;
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
            priority,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// The two messages (`ticket_update`, then `queue_update`) an event becomes, in the
/// projection of `audience`. The WebSocket sends exactly these; `GET …/events` lists them.
pub fn event_messages(
    event: &EventRow,
    audience: Audience,
) -> Result<[serde_json::Value; 2], ApiError> {
    let mut ticket: OperatorTicket =
        serde_json::from_value(event.ticket.clone()).map_err(ApiError::internal)?;
    // Events logged before the key existed do not carry it.
    ticket.call_order_key = ticket.public.call_order_key();
    let ts = event.created_at;
    let ticket_update = serde_json::json!({
        "type": "ticket_update",
        "seq": event.seq,
        "ts": ts,
        "data": {
            "action": event.action,
            "previous_status": event.previous_status,
            "ticket": ticket.project(audience),
        },
    });
    let queue_update = serde_json::json!({
        "type": "queue_update",
        "seq": event.seq,
        "ts": ts,
        "data": { "services": event.queue },
    });
    Ok([ticket_update, queue_update])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::Value;

    fn record(status: &str) -> TicketRecord {
        TicketRecord {
            id: TicketId::new(),
            code: "A001".into(),
            status: status.into(),
            priority: "normal".into(),
            call_count: 1,
            customer_name: Some("Maria Souza".into()),
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 9, 0, 0).unwrap(),
            called_at: None,
            started_at: None,
            finished_at: None,
            service_id: ServiceId::new(),
            service_code: "A".into(),
            service_name: "General".into(),
            counter_id: Some(CounterId::new()),
            counter_name: Some("Desk 1".into()),
            operator_id: Some(UserId::new()),
            operator_username: Some("ana".into()),
        }
    }

    #[test]
    fn the_public_projection_has_no_personal_data() {
        let ticket = OperatorTicket::from_record(record("called"), None, &[]).unwrap();
        let public = ticket.project(Audience::Public).to_string();
        assert!(!public.contains("Maria"), "{public}");
        assert!(!public.contains("ana"), "{public}");
        assert!(!public.contains("customer_name") && !public.contains("operator"));
        let private = ticket.project(Audience::Operator).to_string();
        assert!(private.contains("Maria Souza") && private.contains("\"username\":\"ana\""));
    }

    #[test]
    fn ahead_and_estimate_exist_only_while_waiting() {
        let waiting = OperatorTicket::from_record(record("waiting"), Some(2), &[]).unwrap();
        assert_eq!(waiting.public.ahead, Some(2));
        assert_eq!(waiting.public.estimated_wait_secs, Some(600));
        assert_eq!(
            waiting.public.counter, None,
            "a waiting ticket has no counter"
        );
        let called = OperatorTicket::from_record(record("called"), Some(2), &[]).unwrap();
        assert_eq!(called.public.ahead, None);
        assert_eq!(called.public.estimated_wait_secs, None);
        assert_eq!(called.public.counter.unwrap().name, "Desk 1");
    }

    #[test]
    fn only_operators_get_the_sort_key_and_only_while_waiting() {
        let waiting = OperatorTicket::from_record(record("waiting"), Some(0), &[]).unwrap();
        let key = waiting.project(Audience::Operator)["call_order_key"].clone();
        assert!(key.as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert!(
            waiting
                .project(Audience::Public)
                .get("call_order_key")
                .is_none()
        );
        let called = OperatorTicket::from_record(record("called"), None, &[]).unwrap();
        assert_eq!(
            called.project(Audience::Operator)["call_order_key"],
            Value::Null
        );
    }

    #[test]
    fn events_logged_without_a_sort_key_get_one() {
        let ticket = OperatorTicket::from_record(record("waiting"), Some(0), &[]).unwrap();
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
        let [update, _] = event_messages(&event, Audience::Operator).unwrap();
        assert_eq!(
            update["data"]["ticket"]["call_order_key"].as_str(),
            ticket.call_order_key.as_deref()
        );
    }

    #[test]
    fn operator_views_round_trip_through_the_event_log() {
        let ticket = OperatorTicket::from_record(record("serving"), None, &[]).unwrap();
        let stored = serde_json::to_value(&ticket).unwrap();
        let back: OperatorTicket = serde_json::from_value(stored).unwrap();
        assert_eq!(back, ticket);
    }
}
