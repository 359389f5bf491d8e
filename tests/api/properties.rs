//! Property test over the real API (issue 5): random sequences of operations on one tenant,
//! most of them aimed at tickets and desks that cannot take them.
//!
//! A model driven by the domain's rules (`transition`, `holds_counter`, `CallOrder`,
//! `ticket_code`, `service_day`) predicts every answer; after each step the server's
//! answer, its event log, its queue snapshot and its database are checked against the
//! model and against the invariants of the issue: no desk holds two called or serving
//! tickets, no code repeats on a service day, each ticket has one status, seqs have no
//! gaps and replaying the events gives every ticket's status.
//!
//! Each case runs on a fresh actix system on the test thread (proptest's runner is
//! synchronous, so nothing nests), with its own server and database. Shrinking is bounded:
//! every attempt replays a whole case against a new server.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use nextup::domain::call_order::{CallOrder, ahead_in_service};
use nextup::domain::ids::ServiceCode;
use nextup::domain::numbering::{service_day, ticket_code};
use nextup::domain::ticket::{Action, Priority, Status, transition};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use sqlx::Row;
use uuid::Uuid;

use crate::helpers::*;

/// A ticket chosen among those issued so far, among those at a desk (any ticket while no
/// desk holds one), or one that does not exist.
#[derive(Debug, Clone)]
enum Target {
    Issued(Index),
    AtDesk(Index),
    Unknown,
}

#[derive(Debug, Clone)]
enum Op {
    Issue {
        service: Index,
        priority: Priority,
    },
    /// Call-next at a desk, from every service or from one.
    CallNext {
        desk: Index,
        only: Option<Index>,
    },
    Call {
        ticket: Target,
        desk: Index,
    },
    /// recall, start, finish, no-show, cancel or reactivate.
    Act {
        ticket: Target,
        action: Action,
    },
    Transfer {
        ticket: Target,
        service: Index,
    },
    /// The clock jumps to the tenant's next local midnight.
    NextDay,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        8 => any::<Index>().prop_map(Target::Issued),
        6 => any::<Index>().prop_map(Target::AtDesk),
        1 => Just(Target::Unknown),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let priority = prop_oneof![3 => Just(Priority::Normal), 1 => Just(Priority::Priority)];
    let plain_action = select(vec![
        Action::Recall,
        Action::Start,
        Action::Finish,
        Action::NoShow,
        Action::Cancel,
        Action::Reactivate,
    ]);
    let issue =
        (any::<Index>(), priority).prop_map(|(service, priority)| Op::Issue { service, priority });
    let call_next = (any::<Index>(), prop::option::weighted(0.25, any::<Index>()))
        .prop_map(|(desk, only)| Op::CallNext { desk, only });
    let call = (target(), any::<Index>()).prop_map(|(ticket, desk)| Op::Call { ticket, desk });
    let act = (target(), plain_action).prop_map(|(ticket, action)| Op::Act { ticket, action });
    let transfer =
        (target(), any::<Index>()).prop_map(|(ticket, service)| Op::Transfer { ticket, service });
    prop_oneof![
        5 => issue,
        4 => call_next,
        2 => call,
        8 => act,
        2 => transfer,
        1 => Just(Op::NextDay),
    ]
}

const ZONES: [&str; 4] = [
    "UTC",
    "America/Sao_Paulo",
    "Europe/Berlin",
    "Australia/Lord_Howe",
];

/// Six cases keep the suite quick (each is a server and a database); `PROPTEST_CASES=200`
/// soaks. Shrinking is short, since a case cannot shrink below 30 steps: a failure prints
/// every step it took instead.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(6);
    ProptestConfig {
        cases,
        max_shrink_iters: 12,
        // No regression files in the source tree; the failure message has the steps.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// 30 to 60 random operations on one tenant with two or three services and desks;
    /// every answer is the one the model predicts and every invariant holds after each.
    #[test]
    fn random_operations_keep_every_queue_invariant(
        timezone in select(ZONES.to_vec()),
        services in 2usize..=3,
        desks in 2usize..=3,
        ops in prop::collection::vec(op(), 30..=60),
    ) {
        actix_web::rt::System::new().block_on(run_case(timezone, services, desks, ops))?;
    }
}

#[derive(Debug, Clone)]
struct ModelTicket {
    id: String,
    code: String,
    service: usize,
    priority: Priority,
    created_at: DateTime<Utc>,
    status: Status,
    /// The counter the projection shows: set by a call, kept once done.
    desk: Option<usize>,
    call_count: u64,
    /// The step of the last call or recall: the `called` list shows the latest first.
    called_step: usize,
    /// The tenant-local day it was issued on, which its number belongs to.
    day: NaiveDate,
}

impl Model {
    /// Contract §8, at local midnight: each ticket still waiting or called expires, each
    /// being served is finished, one change each in issue order. Returns the tickets
    /// changed, in that order, with the event action of each.
    fn close_the_day(&mut self) -> Vec<(usize, &'static str, Status)> {
        let mut open: Vec<usize> = (0..self.tickets.len())
            .filter(|&i| {
                matches!(
                    self.tickets[i].status,
                    Status::Waiting | Status::Called | Status::Serving
                )
            })
            .collect();
        open.sort_by_key(|&i| (self.tickets[i].created_at, self.tickets[i].id.clone()));
        let mut closed = Vec::new();
        for i in open {
            let ticket = &mut self.tickets[i];
            let previous = ticket.status;
            let action = if previous == Status::Serving {
                ticket.status = Status::Done;
                "finished"
            } else {
                ticket.status = Status::Expired;
                ticket.desk = None;
                "expired"
            };
            self.seq += 1;
            closed.push((i, action, previous));
        }
        closed
    }
}

impl ModelTicket {
    fn call_order(&self) -> CallOrder<Uuid> {
        CallOrder {
            priority: self.priority,
            created_at: self.created_at,
            id: self.id.parse().unwrap(),
        }
    }
}

struct Model {
    services: Vec<(String, ServiceCode)>,
    desks: Vec<String>,
    tickets: Vec<ModelTicket>,
    /// The tenant's current local day, and the last number handed out on it per service.
    today: NaiveDate,
    numbers: HashMap<usize, u32>,
    seq: u64,
}

/// What the model expects an operation to do.
enum Outcome {
    /// A committed change: the ticket at `index` (a new one when `None`) becomes `after`.
    Change {
        index: Option<usize>,
        after: ModelTicket,
        event: &'static str,
        previous: Option<Status>,
    },
    NothingWaiting,
    Refused(u16, &'static str),
}

const INVALID_TRANSITION: Outcome = Outcome::Refused(409, "invalid_transition");

impl Model {
    fn busy(&self, desk: usize) -> bool {
        self.tickets
            .iter()
            .any(|t| t.desk == Some(desk) && t.status.holds_counter())
    }

    /// The operation in words, with the ticket, desk and service it resolves to now.
    fn describe(&self, op: &Op) -> String {
        let ticket = |target: &Target| match self.resolve(target) {
            Some(i) => {
                let t = &self.tickets[i];
                format!("ticket {i} ({} {})", t.code, t.status)
            }
            None => "an unknown ticket".to_owned(),
        };
        let desk = |d: &Index| format!("desk {}", d.index(self.desks.len()) + 1);
        let service = |s: &Index| {
            self.services[s.index(self.services.len())]
                .1
                .as_str()
                .to_owned()
        };
        match op {
            Op::Issue {
                service: s,
                priority,
            } => {
                format!("issue {} {}", service(s), priority.as_str())
            }
            Op::CallNext { desk: d, only } => match only {
                None => format!("call-next at {}", desk(d)),
                Some(s) => format!("call-next at {} from {}", desk(d), service(s)),
            },
            Op::Call { ticket: t, desk: d } => format!("call {} to {}", ticket(t), desk(d)),
            Op::Act { ticket: t, action } => format!("{} {}", action.path_name(), ticket(t)),
            Op::Transfer {
                ticket: t,
                service: s,
            } => {
                format!("transfer {} to {}", ticket(t), service(s))
            }
            Op::NextDay => "the clock jumps to the next local midnight".to_owned(),
        }
    }

    fn resolve(&self, target: &Target) -> Option<usize> {
        let at_desk: Vec<usize> = (0..self.tickets.len())
            .filter(|&i| self.tickets[i].status.holds_counter())
            .collect();
        match target {
            Target::AtDesk(i) if !at_desk.is_empty() => Some(at_desk[i.index(at_desk.len())]),
            Target::Issued(i) | Target::AtDesk(i) if !self.tickets.is_empty() => {
                Some(i.index(self.tickets.len()))
            }
            _ => None,
        }
    }

    /// The ticket after `action`, following contract §2.1's effects on counter and calls;
    /// `None` when `transition` refuses it.
    fn moved(&self, index: usize, action: Action, step: usize) -> Option<ModelTicket> {
        let mut ticket = self.tickets[index].clone();
        let to = transition(ticket.status, action).ok()?;
        match to {
            Status::Waiting => {
                ticket.desk = None;
                ticket.call_count = 0;
            }
            Status::NoShow | Status::Cancelled | Status::Expired => ticket.desk = None,
            Status::Called | Status::Serving | Status::Done => {}
        }
        if matches!(action, Action::Call | Action::Recall) {
            ticket.call_count += 1;
            ticket.called_step = step;
        }
        ticket.status = to;
        Some(ticket)
    }

    fn change(&self, index: usize, action: Action, after: ModelTicket) -> Outcome {
        Outcome::Change {
            index: Some(index),
            previous: Some(self.tickets[index].status),
            event: action.event().as_str(),
            after,
        }
    }

    fn predict(&self, op: &Op, step: usize) -> Outcome {
        match op {
            Op::Issue { service, priority } => {
                let service = service.index(self.services.len());
                let number = self.numbers.get(&service).copied().unwrap_or(0) + 1;
                Outcome::Change {
                    index: None,
                    after: ModelTicket {
                        id: String::new(),
                        code: ticket_code(&self.services[service].1, number),
                        service,
                        priority: *priority,
                        created_at: DateTime::<Utc>::MIN_UTC,
                        status: Status::Waiting,
                        desk: None,
                        call_count: 0,
                        called_step: 0,
                        day: self.today,
                    },
                    event: "issued",
                    previous: None,
                }
            }
            Op::CallNext { desk, only } => {
                let desk = desk.index(self.desks.len());
                if self.busy(desk) {
                    return Outcome::Refused(409, "counter_busy");
                }
                let only = only.as_ref().map(|s| s.index(self.services.len()));
                let next = (0..self.tickets.len())
                    .filter(|&i| self.tickets[i].status == Status::Waiting)
                    // No earlier day's ticket is ever called (contract §8).
                    .filter(|&i| self.tickets[i].day == self.today)
                    .filter(|&i| only.is_none_or(|s| self.tickets[i].service == s))
                    .min_by_key(|&i| self.tickets[i].call_order());
                match next {
                    None => Outcome::NothingWaiting,
                    Some(i) => self.call(i, desk, step),
                }
            }
            Op::Call { ticket, desk } => match self.resolve(ticket) {
                None => Outcome::Refused(404, "ticket_not_found"),
                Some(i) => self.call(i, desk.index(self.desks.len()), step),
            },
            Op::Act { ticket, action } => match self.resolve(ticket) {
                None => Outcome::Refused(404, "ticket_not_found"),
                Some(i) => match self.moved(i, *action, step) {
                    Some(after) => self.change(i, *action, after),
                    None => INVALID_TRANSITION,
                },
            },
            Op::Transfer { ticket, service } => {
                let Some(i) = self.resolve(ticket) else {
                    return Outcome::Refused(404, "ticket_not_found");
                };
                let Some(mut after) = self.moved(i, Action::Transfer, step) else {
                    return INVALID_TRANSITION;
                };
                let service = service.index(self.services.len());
                if service == self.tickets[i].service {
                    return Outcome::Refused(422, "same_service");
                }
                after.service = service;
                self.change(i, Action::Transfer, after)
            }
            Op::NextDay => unreachable!("the clock is not an API call"),
        }
    }

    fn call(&self, index: usize, desk: usize, step: usize) -> Outcome {
        match self.moved(index, Action::Call, step) {
            None => INVALID_TRANSITION,
            Some(_) if self.busy(desk) => Outcome::Refused(409, "counter_busy"),
            Some(mut after) => {
                after.desk = Some(desk);
                self.change(index, Action::Call, after)
            }
        }
    }
}

fn api(slug: &str, rest: &str) -> String {
    format!("/api/v1/tenants/{slug}/{rest}")
}

/// The first instant of `hour` o'clock local time on `day` (the next hour if it is skipped).
fn local_instant(tz: Tz, day: NaiveDate, hour: u32) -> DateTime<Utc> {
    (hour..hour + 3)
        .find_map(|h| {
            tz.from_local_datetime(&day.and_hms_opt(h, 0, 0).unwrap())
                .earliest()
        })
        .expect("an existing local hour")
        .with_timezone(&Utc)
}

async fn run_case(
    timezone: &'static str,
    services: usize,
    desks: usize,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let app = TestApp::spawn().await;
    let site = app.site_in("props", timezone, services, desks).await;
    let tz: Tz = timezone.parse().unwrap();
    // Local noon, far from the day's end: only NextDay changes the service day.
    let today = service_day(Utc::now(), tz);
    app.clock.jump_to(local_instant(tz, today, 12));

    let mut model = Model {
        services: (0..services)
            .map(|i| {
                let code = char::from(b'A' + i as u8).to_string();
                (site.services[i].clone(), ServiceCode::parse(&code).unwrap())
            })
            .collect(),
        desks: site.counters.clone(),
        tickets: Vec::new(),
        today,
        numbers: HashMap::new(),
        seq: 0,
    };

    let mut trace = Vec::new();
    let result = run_steps(&app, &site, tz, &mut model, &ops, &mut trace).await;
    result.map_err(|e| TestCaseError::fail(format!("{e}\nthe steps:\n{}", trace.join("\n"))))
}

async fn run_steps(
    app: &TestApp,
    site: &Site,
    tz: Tz,
    model: &mut Model,
    ops: &[Op],
    trace: &mut Vec<String>,
) -> Result<(), TestCaseError> {
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step}: {}", model.describe(op));
        if let Op::NextDay = op {
            model.today = model.today.succ_opt().unwrap();
            let seq_before = model.seq;
            let closed = model.close_the_day();
            app.clock.jump_to(local_instant(tz, model.today, 0));
            model.numbers.clear();
            trace.push(context.clone());
            check_day_closed(app, site, model, seq_before, &closed, &context).await?;
        } else {
            let outcome = model.predict(op, step);
            let reply = send(app, site, model, op).await;
            let answer = match reply.body["error"]["code"].as_str() {
                Some(code) => code.to_owned(),
                None => format!("{} {}", reply.body["code"], reply.body["status"]),
            };
            trace.push(format!("{context} -> {} {answer}", reply.status));
            check_answer(model, &context, &reply, &outcome)?;
            let seq_before = model.seq;
            let mut logged = None;
            if let Outcome::Change {
                index,
                mut after,
                event,
                previous,
            } = outcome
            {
                after.created_at = serde_json::from_value(reply.body["created_at"].clone())
                    .map_err(|e| TestCaseError::fail(format!("{context}: created_at: {e}")))?;
                after.id = reply.body["id"].as_str().unwrap().to_owned();
                let index = match index {
                    Some(index) => index,
                    None => {
                        *model.numbers.entry(after.service).or_insert(0) += 1;
                        model.tickets.push(after.clone());
                        model.tickets.len() - 1
                    }
                };
                model.tickets[index] = after;
                model.seq += 1;
                logged = Some((index, event, previous));
            }
            check_new_events(app, site, model, seq_before, logged, &context).await?;
        }
        check_queue(app, site, model, &context).await?;
        check_database(app, model, &context).await?;
    }
    check_replay(app, site, model).await
}

async fn send(app: &TestApp, site: &Site, model: &Model, op: &Op) -> Reply {
    let token = Some(site.operator.as_str());
    let ticket_path = |target: &Target, rest: &str| {
        let id = match model.resolve(target) {
            Some(i) => model.tickets[i].id.clone(),
            None => Uuid::new_v4().to_string(),
        };
        api(&site.slug, &format!("tickets/{id}/{rest}"))
    };
    match op {
        Op::Issue { service, priority } => {
            let service = &model.services[service.index(model.services.len())].0;
            let body = json!({ "service_id": service, "priority": priority.as_str() });
            app.post(&api(&site.slug, "tickets"), None, body).await
        }
        Op::CallNext { desk, only } => {
            let desk = &model.desks[desk.index(model.desks.len())];
            let body = match only {
                None => json!({}),
                Some(s) => {
                    json!({ "service_ids": [model.services[s.index(model.services.len())].0] })
                }
            };
            let path = api(&site.slug, &format!("counters/{desk}/call"));
            app.post(&path, token, body).await
        }
        Op::Call { ticket, desk } => {
            let desk = &model.desks[desk.index(model.desks.len())];
            let body = json!({ "counter_id": desk });
            app.post(&ticket_path(ticket, "call"), token, body).await
        }
        Op::Act { ticket, action } => {
            app.post(&ticket_path(ticket, action.path_name()), token, json!({}))
                .await
        }
        Op::Transfer { ticket, service } => {
            let service = &model.services[service.index(model.services.len())].0;
            let body = json!({ "service_id": service });
            app.post(&ticket_path(ticket, "transfer"), token, body)
                .await
        }
        Op::NextDay => unreachable!("the clock is not an API call"),
    }
}

/// The answer is a success or a contract error, and exactly the one the model predicts.
fn check_answer(
    model: &Model,
    context: &str,
    reply: &Reply,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.status < 500,
        "{}: server error {}: {}",
        context,
        reply.status,
        reply.raw
    );
    if reply.status >= 400 {
        let error = &reply.body["error"];
        prop_assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty())
                && error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: not a contract error body: {}",
            context,
            reply.raw
        );
    }
    match outcome {
        Outcome::Refused(status, code) => {
            prop_assert_eq!(reply.status, *status, "{}: {}", context, reply.raw);
            prop_assert_eq!(&reply.body["error"]["code"], code, "{}", context);
        }
        Outcome::NothingWaiting => {
            prop_assert_eq!(reply.status, 204, "{}: {}", context, reply.raw);
        }
        Outcome::Change { index, after, .. } => {
            let expected_status = if index.is_some() { 200 } else { 201 };
            prop_assert_eq!(reply.status, expected_status, "{}: {}", context, reply.raw);
            if index.is_some() {
                prop_assert_eq!(
                    reply.body["id"].as_str(),
                    Some(after.id.as_str()),
                    "{}",
                    context
                );
            }
            check_ticket(model, context, &reply.body, after)?;
        }
    }
    Ok(())
}

/// A ticket projection shows what the model holds for it.
fn check_ticket(
    model: &Model,
    context: &str,
    body: &Value,
    expected: &ModelTicket,
) -> Result<(), TestCaseError> {
    let field = |name: &str| body[name].as_str().map(str::to_owned);
    prop_assert_eq!(
        field("status"),
        Some(expected.status.as_str().to_owned()),
        "{}: {}",
        context,
        body
    );
    prop_assert_eq!(
        field("code"),
        Some(expected.code.clone()),
        "{}: {}",
        context,
        body
    );
    prop_assert_eq!(
        field("priority"),
        Some(expected.priority.as_str().to_owned()),
        "{}",
        context
    );
    prop_assert_eq!(
        body["call_count"].as_u64(),
        Some(expected.call_count),
        "{}: {}",
        context,
        body
    );
    prop_assert_eq!(
        body["service"]["id"].as_str(),
        Some(model.services[expected.service].0.as_str()),
        "{}: {}",
        context,
        body
    );
    prop_assert_eq!(
        body["counter"]["id"].as_str(),
        expected.desk.map(|d| model.desks[d].as_str()),
        "{}: {}",
        context,
        body
    );
    Ok(())
}

/// The change (or its absence) is in the event log with the next seq and nothing else:
/// the ticket as it now is, the action and the status it left.
/// The automatic close of the day (it runs within a second of midnight): waits for its
/// events, then checks each against the model's close.
async fn check_day_closed(
    app: &TestApp,
    site: &Site,
    model: &Model,
    since: u64,
    closed: &[(usize, &'static str, Status)],
    context: &str,
) -> Result<(), TestCaseError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = app
            .get(&api(&site.slug, &format!("events?since={since}")), None)
            .await
            .expect(200);
        if log["seq"].as_u64() == Some(model.seq) || std::time::Instant::now() > deadline {
            break log;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    prop_assert_eq!(log["seq"].as_u64(), Some(model.seq), "{}: {}", context, log);
    let updates: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "ticket_update")
        .collect();
    prop_assert_eq!(updates.len(), closed.len(), "{}", context);
    for (update, (index, action, previous)) in updates.into_iter().zip(closed) {
        let ticket = &model.tickets[*index];
        let data = &update["data"];
        prop_assert_eq!(
            data["action"].as_str(),
            Some(*action),
            "{}: {}",
            context,
            update
        );
        prop_assert_eq!(data["previous_status"].as_str(), Some(previous.as_str()));
        prop_assert_eq!(data["ticket"]["id"].as_str(), Some(ticket.id.as_str()));
        check_ticket(model, context, &data["ticket"], ticket)?;
    }
    Ok(())
}

async fn check_new_events(
    app: &TestApp,
    site: &Site,
    model: &Model,
    since: u64,
    logged: Option<(usize, &str, Option<Status>)>,
    context: &str,
) -> Result<(), TestCaseError> {
    let log = app
        .get(&api(&site.slug, &format!("events?since={since}")), None)
        .await
        .expect(200);
    prop_assert_eq!(log["seq"].as_u64(), Some(model.seq), "{}: {}", context, log);
    let messages = log["events"].as_array().unwrap();
    let Some((index, action, previous)) = logged else {
        prop_assert!(
            messages.is_empty(),
            "{}: a refused operation logged {:?}",
            context,
            messages
        );
        return Ok(());
    };
    prop_assert_eq!(messages.len(), 2, "{}: {:?}", context, messages);
    let (update, queue) = (&messages[0], &messages[1]);
    prop_assert_eq!(update["type"].as_str(), Some("ticket_update"));
    prop_assert_eq!(queue["type"].as_str(), Some("queue_update"));
    prop_assert_eq!(update["seq"].as_u64(), Some(model.seq), "{}", context);
    prop_assert_eq!(queue["seq"].as_u64(), Some(model.seq), "{}", context);
    let data = &update["data"];
    prop_assert_eq!(
        data["action"].as_str(),
        Some(action),
        "{}: {}",
        context,
        update
    );
    prop_assert_eq!(
        data["previous_status"].as_str(),
        previous.map(Status::as_str),
        "{}",
        context
    );
    let ticket = &model.tickets[index];
    prop_assert_eq!(
        data["ticket"]["id"].as_str(),
        Some(ticket.id.as_str()),
        "{}",
        context
    );
    check_ticket(model, context, &data["ticket"], ticket)?;
    let waiting: u64 = queue["data"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["waiting"].as_u64().unwrap())
        .sum();
    let model_waiting = model
        .tickets
        .iter()
        .filter(|t| t.status == Status::Waiting)
        .count();
    prop_assert_eq!(waiting, model_waiting as u64, "{}: {}", context, queue);
    Ok(())
}

/// The queue snapshot lists exactly the model's waiting tickets in call order (with their
/// `ahead`) and its called and serving tickets, latest call first, each at its desk.
async fn check_queue(
    app: &TestApp,
    site: &Site,
    model: &Model,
    context: &str,
) -> Result<(), TestCaseError> {
    let queue = app.queue(site).await;
    prop_assert_eq!(queue["seq"].as_u64(), Some(model.seq), "{}", context);

    let mut waiting: Vec<&ModelTicket> = model
        .tickets
        .iter()
        .filter(|t| t.status == Status::Waiting)
        .collect();
    waiting.sort_by_key(|t| t.call_order());
    let listed = queue["waiting"].as_array().unwrap();
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let expected: Vec<String> = waiting.iter().map(|t| t.id.clone()).collect();
    prop_assert_eq!(ids(listed), expected, "{}: waiting list", context);
    let ahead = ahead_in_service(waiting.iter().map(|t| t.service));
    for ((ticket, listed), ahead) in waiting.iter().zip(listed).zip(ahead) {
        check_ticket(model, context, listed, ticket)?;
        prop_assert_eq!(
            listed["ahead"].as_u64(),
            Some(u64::from(ahead)),
            "{}: {}",
            context,
            listed
        );
    }

    let mut called: Vec<&ModelTicket> = model
        .tickets
        .iter()
        .filter(|t| t.status.holds_counter())
        .collect();
    called.sort_by_key(|t| std::cmp::Reverse(t.called_step));
    let listed = queue["called"].as_array().unwrap();
    let expected: Vec<String> = called.iter().map(|t| t.id.clone()).collect();
    prop_assert_eq!(ids(listed), expected, "{}: called list", context);
    for (ticket, listed) in called.iter().zip(listed) {
        check_ticket(model, context, listed, ticket)?;
    }
    Ok(())
}

/// The database itself: one known status per ticket, the model's; no counter with two
/// called or serving tickets, none of those without a counter; no code twice on a day; the
/// services' waiting counts equal to their waiting tickets.
async fn check_database(app: &TestApp, model: &Model, context: &str) -> Result<(), TestCaseError> {
    let rows = sqlx::query("select id, status, counter_id, code, service_day from tickets")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    prop_assert_eq!(rows.len(), model.tickets.len(), "{}", context);
    let mut active_at: HashMap<Uuid, usize> = HashMap::new();
    let mut codes: HashSet<(NaiveDate, String)> = HashSet::new();
    for row in &rows {
        let id: Uuid = row.get("id");
        let status: String = row.get("status");
        let counter: Option<Uuid> = row.get("counter_id");
        let code: String = row.get("code");
        let day: NaiveDate = row.get("service_day");
        let status: Status = status
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        let ticket = model.tickets.iter().find(|t| t.id == id.to_string());
        prop_assert!(
            ticket.is_some(),
            "{}: unknown ticket {} in the database",
            context,
            id
        );
        let ticket = ticket.unwrap();
        prop_assert_eq!(status, ticket.status, "{}: ticket {}", context, ticket.code);
        prop_assert_eq!(
            day,
            ticket.day,
            "{}: service day of {}",
            context,
            ticket.code
        );
        if matches!(status, Status::Called | Status::Serving) {
            prop_assert!(
                counter.is_some(),
                "{}: {} {} without a counter",
                context,
                ticket.code,
                status
            );
            let held = active_at.entry(counter.unwrap()).or_insert(0);
            *held += 1;
            prop_assert_eq!(
                *held,
                1,
                "{}: counter {:?} holds two active tickets",
                context,
                counter
            );
            let desk = ticket.desk.map(|d| model.desks[d].clone());
            prop_assert_eq!(counter.map(|c| c.to_string()), desk, "{}", context);
        }
        prop_assert!(
            codes.insert((day, code.clone())),
            "{}: {} twice on {}",
            context,
            code,
            day
        );
    }
    // The waiting counts kept on each service equal a count of its waiting tickets.
    let drift: Vec<(String, i64, i64)> = sqlx::query_as(
        "select s.code, (s.waiting_normal + s.waiting_priority)::int8,
                (select count(*) from tickets t where t.service_id = s.id and t.status = 'waiting')
           from services s
          where s.waiting_normal + s.waiting_priority
                <> (select count(*) from tickets t where t.service_id = s.id and t.status = 'waiting')
             or s.waiting_priority
                <> (select count(*) from tickets t where t.service_id = s.id
                       and t.status = 'waiting' and t.priority = 'priority')",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    prop_assert!(
        drift.is_empty(),
        "{}: waiting counts drifted: {:?}",
        context,
        drift
    );
    Ok(())
}

/// At the end: seqs run 1..=n in the log and in the table, each change's previous status is
/// what the log said before, its new status is `transition`'s, and replaying the log gives
/// every ticket's final status.
async fn check_replay(app: &TestApp, site: &Site, model: &Model) -> Result<(), TestCaseError> {
    let seqs: Vec<i64> = sqlx::query_scalar("select seq from events order by seq")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    prop_assert_eq!(seqs, (1..=model.seq as i64).collect::<Vec<_>>());

    let log = app
        .get(&api(&site.slug, "events?since=0"), None)
        .await
        .expect(200);
    let messages = log["events"].as_array().unwrap();
    prop_assert_eq!(messages.len() as u64, 2 * model.seq);
    let mut replayed: HashMap<String, Status> = HashMap::new();
    for (i, pair) in messages.chunks(2).enumerate() {
        let seq = i as u64 + 1;
        let update = &pair[0];
        prop_assert_eq!(
            update["type"].as_str(),
            Some("ticket_update"),
            "seq {}",
            seq
        );
        prop_assert_eq!(update["seq"].as_u64(), Some(seq));
        prop_assert_eq!(
            pair[1]["type"].as_str(),
            Some("queue_update"),
            "seq {}",
            seq
        );
        prop_assert_eq!(pair[1]["seq"].as_u64(), Some(seq));
        let data = &update["data"];
        let id = data["ticket"]["id"].as_str().unwrap().to_owned();
        let status: Status = data["ticket"]["status"].as_str().unwrap().parse().unwrap();
        let previous = replayed.get(&id).copied();
        prop_assert_eq!(
            data["previous_status"].as_str(),
            previous.map(Status::as_str),
            "seq {}: {}",
            seq,
            update
        );
        let action = data["action"].as_str().unwrap();
        let expected = match previous {
            None => {
                prop_assert_eq!(action, "issued", "seq {}", seq);
                Status::Waiting
            }
            // Closing the day (contract §8).
            Some(Status::Waiting | Status::Called) if action == "expired" => Status::Expired,
            Some(Status::Serving) if action == "finished" => Status::Done,
            Some(previous) => {
                let action = Action::ALL
                    .into_iter()
                    .find(|a| a.event().as_str() == action);
                prop_assert!(action.is_some(), "seq {}: unknown action {}", seq, update);
                transition(previous, action.unwrap()).map_err(|e| {
                    TestCaseError::fail(format!("seq {seq}: logged an illegal change: {e}"))
                })?
            }
        };
        prop_assert_eq!(status, expected, "seq {}: {}", seq, update);
        replayed.insert(id, status);
    }
    let finals: HashMap<String, Status> = model
        .tickets
        .iter()
        .map(|t| (t.id.clone(), t.status))
        .collect();
    prop_assert_eq!(replayed, finals);
    Ok(())
}
