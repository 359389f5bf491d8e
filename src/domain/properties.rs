//! Property tests of the domain (issue 5): random sequences of actions over a few tickets
//! and desks, and random instants around daylight-saving changes.
//!
//! The oracles here are written from the contract, not from the code under test: the
//! transition table as the contract states it (per action: from where, to what) and the
//! desk rule as literal statuses. The models still *drive* the domain's functions, so a
//! change in `transition`, `holds_counter` or `CallOrder` shows up as a disagreement.

use chrono::{DateTime, Duration, NaiveDate, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::Config;

use super::call_order::{CallOrder, ahead_in_service};
use super::ids::ServiceCode;
use super::numbering::{service_day, ticket_code};
use super::ticket::{Action, Priority, Status, TransitionError, transition};

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files: the project's layout is fixed, and failures print their input.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Contract §2.1, row by row: the statuses an action is allowed from, and its target.
fn contract(action: Action) -> (&'static [Status], Status) {
    use Status::*;
    match action {
        Action::Call => (&[Waiting], Called),
        Action::Recall => (&[Called], Called),
        Action::Start => (&[Called], Serving),
        Action::Finish => (&[Serving], Done),
        Action::NoShow => (&[Called], NoShow),
        Action::Cancel => (&[Waiting, Called], Cancelled),
        Action::Transfer => (&[Called, Serving], Waiting),
        Action::Reactivate => (&[NoShow, Cancelled], Waiting),
    }
}

/// The contract's outcome of `action` in `from`: the new status, or `None` when refused.
fn contract_outcome(from: Status, action: Action) -> Option<Status> {
    let (allowed_from, to) = contract(action);
    allowed_from.contains(&from).then_some(to)
}

/// The statuses in which the contract says a ticket occupies its desk (§2.4), spelled out.
fn occupies_desk(status: Status) -> bool {
    matches!(status, Status::Called | Status::Serving)
}

fn is_terminal(status: Status) -> bool {
    matches!(
        status,
        Status::Done | Status::NoShow | Status::Cancelled | Status::Expired
    )
}

fn action() -> impl Strategy<Value = Action> {
    select(Action::ALL.to_vec())
}

proptest! {
    #![proptest_config(config(256))]

    /// Every step agrees with the contract's table, and a refusal names the status and
    /// action it refused; each ticket sits in exactly one status bucket; terminal statuses
    /// are left only by reactivate, and `done` never.
    #[test]
    fn random_actions_follow_the_contract_table(
        tickets in 1usize..=6,
        steps in prop::collection::vec((any::<Index>(), action()), 1..80),
    ) {
        check_contract_table(tickets, steps)?;
    }
}

fn check_contract_table(tickets: usize, steps: Vec<(Index, Action)>) -> Result<(), TestCaseError> {
    let mut status = vec![Status::Waiting; tickets];
    // The same tickets filed by status, as the queue lists them: moved only by what
    // `transition` answers.
    let mut buckets: Vec<(Status, Vec<usize>)> =
        Status::ALL.iter().map(|s| (*s, Vec::new())).collect();
    buckets[0].1 = (0..tickets).collect();

    for (step, (which, action)) in steps.into_iter().enumerate() {
        let ticket = which.index(tickets);
        let from = status[ticket];
        match (transition(from, action), contract_outcome(from, action)) {
            (Ok(to), Some(want)) => {
                prop_assert_eq!(to, want, "step {}: {} + {:?}", step, from, action);
                let leaving = buckets.iter_mut().find(|(s, _)| *s == from).unwrap();
                leaving.1.retain(|t| *t != ticket);
                let entering = buckets.iter_mut().find(|(s, _)| *s == to).unwrap();
                entering.1.push(ticket);
                status[ticket] = to;
            }
            (Err(error), None) => {
                prop_assert_eq!(error, TransitionError { from, action });
            }
            (got, want) => {
                return Err(TestCaseError::fail(format!(
                    "step {step}: {from} + {action:?} gave {got:?}, the contract says {want:?}"
                )));
            }
        }
        let to = status[ticket];
        if is_terminal(from) && to != from {
            prop_assert_eq!(action, Action::Reactivate, "left {} by {:?}", from, action);
        }
        prop_assert!(from != Status::Done || to == Status::Done, "done was left");

        for (t, own) in status.iter().enumerate() {
            let holding: Vec<Status> = buckets
                .iter()
                .filter(|(_, members)| members.contains(&t))
                .map(|(s, _)| *s)
                .collect();
            prop_assert_eq!(
                holding,
                vec![*own],
                "step {}: ticket {} is not in exactly its status",
                step,
                t
            );
        }
    }
    Ok(())
}

/// A ticket on the floor of the desk model.
#[derive(Debug, Clone)]
struct FloorTicket {
    id: u32,
    service: u8,
    priority: Priority,
    created_at: DateTime<Utc>,
    status: Status,
    desk: Option<usize>,
}

impl FloorTicket {
    fn call_order(&self) -> CallOrder<u32> {
        CallOrder {
            priority: self.priority,
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// The contract's call order spelled out: priority first, then oldest, then id.
    fn spec_key(&self) -> (bool, DateTime<Utc>, u32) {
        (self.priority == Priority::Normal, self.created_at, self.id)
    }
}

#[derive(Debug, Clone)]
enum FloorOp {
    /// A new ticket, `secs_later` after the previous one (0: the same instant).
    Issue {
        service: u8,
        priority: Priority,
        secs_later: u8,
    },
    CallNext {
        desk: Index,
    },
    Call {
        ticket: Index,
        desk: Index,
    },
    Act {
        ticket: Index,
        action: Action,
    },
}

fn floor_op() -> impl Strategy<Value = FloorOp> {
    let priority = prop_oneof![3 => Just(Priority::Normal), 1 => Just(Priority::Priority)];
    let issue =
        (0u8..3, priority, 0u8..3).prop_map(|(service, priority, secs_later)| FloorOp::Issue {
            service,
            priority,
            secs_later,
        });
    let call =
        (any::<Index>(), any::<Index>()).prop_map(|(ticket, desk)| FloorOp::Call { ticket, desk });
    let act =
        (any::<Index>(), action()).prop_map(|(ticket, action)| FloorOp::Act { ticket, action });
    prop_oneof![
        3 => issue,
        3 => any::<Index>().prop_map(|desk| FloorOp::CallNext { desk }),
        1 => call,
        5 => act,
    ]
}

/// Desks and tickets driven only by the domain: `transition` decides every move,
/// `holds_counter` decides whether a desk is busy and whether a ticket keeps its desk,
/// and `CallOrder` picks the next ticket.
struct Floor {
    desks: usize,
    tickets: Vec<FloorTicket>,
    clock: DateTime<Utc>,
}

#[derive(Debug, PartialEq)]
enum Refusal {
    CounterBusy,
    Invalid(TransitionError),
    NothingWaiting,
}

impl Floor {
    fn busy(&self, desk: usize) -> bool {
        self.tickets
            .iter()
            .any(|t| t.desk == Some(desk) && t.status.holds_counter())
    }

    fn call(&mut self, ticket: usize, desk: usize) -> Result<(), Refusal> {
        let to = transition(self.tickets[ticket].status, Action::Call).map_err(Refusal::Invalid)?;
        if self.busy(desk) {
            return Err(Refusal::CounterBusy);
        }
        let t = &mut self.tickets[ticket];
        t.status = to;
        t.desk = Some(desk);
        Ok(())
    }

    fn call_next(&mut self, desk: usize) -> Result<usize, Refusal> {
        if self.busy(desk) {
            return Err(Refusal::CounterBusy);
        }
        let next = (0..self.tickets.len())
            .filter(|&i| self.tickets[i].status == Status::Waiting)
            .min_by_key(|&i| self.tickets[i].call_order())
            .ok_or(Refusal::NothingWaiting)?;
        self.call(next, desk)?;
        Ok(next)
    }

    fn act(&mut self, ticket: usize, action: Action) -> Result<(), Refusal> {
        let t = &mut self.tickets[ticket];
        let to = transition(t.status, action).map_err(Refusal::Invalid)?;
        t.status = to;
        if !to.holds_counter() {
            t.desk = None;
        }
        if action == Action::Transfer {
            t.service = (t.service + 1) % 3;
        }
        Ok(())
    }

    /// Desks with a ticket the contract says occupies them.
    fn spec_occupied(&self, desk: usize) -> usize {
        self.tickets
            .iter()
            .filter(|t| t.desk == Some(desk) && occupies_desk(t.status))
            .count()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// However desks call, recall, start, finish, cancel, transfer and reactivate, no desk
    /// ever holds two called or serving tickets; every called or serving ticket is at a
    /// desk and no other ticket is; a desk is refused as busy exactly when it holds one;
    /// call-next takes the contract's next ticket, and `ahead` counts the contract's way.
    #[test]
    fn desks_never_hold_two_active_tickets(
        desks in 1usize..=3,
        ops in prop::collection::vec(floor_op(), 1..120),
    ) {
        check_floor(desks, ops)?;
    }
}

fn check_floor(desks: usize, ops: Vec<FloorOp>) -> Result<(), TestCaseError> {
    let start = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
    let mut floor = Floor {
        desks,
        tickets: Vec::new(),
        clock: start,
    };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            FloorOp::Issue {
                service,
                priority,
                secs_later,
            } => {
                floor.clock += Duration::seconds(secs_later.into());
                floor.tickets.push(FloorTicket {
                    id: floor.tickets.len() as u32,
                    service,
                    priority,
                    created_at: floor.clock,
                    status: Status::Waiting,
                    desk: None,
                });
            }
            FloorOp::CallNext { desk } => {
                let desk = desk.index(floor.desks);
                let occupied = floor.spec_occupied(desk) > 0;
                let first = floor
                    .tickets
                    .iter()
                    .filter(|t| t.status == Status::Waiting)
                    .map(FloorTicket::spec_key)
                    .min();
                match floor.call_next(desk) {
                    Ok(called) => {
                        prop_assert!(!occupied, "step {}: desk {} was occupied", step, desk);
                        let called = &floor.tickets[called];
                        prop_assert_eq!(Some(called.spec_key()), first, "step {}", step);
                        prop_assert_eq!(called.desk, Some(desk));
                    }
                    Err(Refusal::CounterBusy) => {
                        prop_assert!(occupied, "step {}: free desk {} refused", step, desk)
                    }
                    Err(Refusal::NothingWaiting) => {
                        prop_assert!(!occupied && first.is_none(), "step {}", step)
                    }
                    Err(other) => {
                        return Err(TestCaseError::fail(format!("step {step}: {other:?}")));
                    }
                }
            }
            FloorOp::Call { ticket, desk } => {
                if floor.tickets.is_empty() {
                    continue;
                }
                let ticket = ticket.index(floor.tickets.len());
                let desk = desk.index(floor.desks);
                let waiting = floor.tickets[ticket].status == Status::Waiting;
                let occupied = floor.spec_occupied(desk) > 0;
                match floor.call(ticket, desk) {
                    Ok(()) => prop_assert!(waiting && !occupied, "step {}: a refused call", step),
                    Err(Refusal::Invalid(_)) => prop_assert!(!waiting, "step {}", step),
                    Err(Refusal::CounterBusy) => {
                        prop_assert!(waiting && occupied, "step {}", step)
                    }
                    Err(other) => {
                        return Err(TestCaseError::fail(format!("step {step}: {other:?}")));
                    }
                }
            }
            FloorOp::Act { ticket, action } => {
                // Calling needs a desk: the Call and CallNext ops cover it.
                if floor.tickets.is_empty() || action == Action::Call {
                    continue;
                }
                let ticket = ticket.index(floor.tickets.len());
                let from = floor.tickets[ticket].status;
                let outcome = floor.act(ticket, action);
                let allowed = contract_outcome(from, action).is_some();
                prop_assert_eq!(outcome.is_ok(), allowed, "step {}", step);
            }
        }
        check_floor_invariants(&floor, step)?;
    }
    Ok(())
}

fn check_floor_invariants(floor: &Floor, step: usize) -> Result<(), TestCaseError> {
    for desk in 0..floor.desks {
        prop_assert!(
            floor.spec_occupied(desk) <= 1,
            "step {}: desk {} holds {:?}",
            step,
            desk,
            floor
                .tickets
                .iter()
                .filter(|t| t.desk == Some(desk))
                .collect::<Vec<_>>()
        );
    }
    for t in &floor.tickets {
        let at_desk = t.desk.is_some();
        prop_assert_eq!(at_desk, occupies_desk(t.status), "step {}: {:?}", step, t);
    }

    let mut waiting: Vec<&FloorTicket> = floor
        .tickets
        .iter()
        .filter(|t| t.status == Status::Waiting)
        .collect();
    waiting.sort_by_key(|t| t.call_order());
    let ahead = ahead_in_service(waiting.iter().map(|t| t.service));
    for (t, ahead) in waiting.iter().zip(ahead) {
        let before = waiting
            .iter()
            .filter(|u| u.service == t.service && u.spec_key() < t.spec_key())
            .count();
        prop_assert_eq!(ahead as usize, before, "step {}: ahead of {}", step, t.id);
    }
    Ok(())
}

/// Zones whose clocks change: by an hour at 02:00 or 03:00 (Berlin, New York), at
/// midnight until 2019 (São Paulo), by half an hour (Lord Howe); and UTC as a control.
const ZONES: [&str; 5] = [
    "America/Sao_Paulo",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "UTC",
];

fn offset_secs(tz: Tz, at: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instants of `year` at which `tz` changes its UTC offset, to the second.
fn offset_changes(tz: Tz, year: i32) -> Vec<DateTime<Utc>> {
    let mut changes = Vec::new();
    let mut day = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap();
    while day < end {
        let next = day + Duration::days(1);
        if offset_secs(tz, day) != offset_secs(tz, next) {
            // The first second with the new offset, by bisection over whole seconds.
            let at = |secs| DateTime::from_timestamp(secs, 0).unwrap();
            let (mut old, mut new) = (day.timestamp(), next.timestamp());
            while new - old > 1 {
                let mid = old + (new - old) / 2;
                if offset_secs(tz, at(mid)) == offset_secs(tz, at(old)) {
                    old = mid;
                } else {
                    new = mid;
                }
            }
            changes.push(at(new));
        }
        day = next;
    }
    changes
}

fn seconds_into_local_day(tz: Tz, at: DateTime<Utc>) -> i64 {
    at.with_timezone(&tz)
        .time()
        .num_seconds_from_midnight()
        .into()
}

fn step_secs() -> impl Strategy<Value = i64> {
    prop_oneof![1i64..=600, 600i64..=6 * 3600]
}

proptest! {
    #![proptest_config(config(128))]

    /// Walking forward through a clock change, the service day never goes back, never
    /// skips a day, stays within a day of the UTC date, and turns only at local midnight.
    #[test]
    fn the_service_day_never_goes_back_across_clock_changes(
        zone in select(ZONES.to_vec()),
        year in 2000i32..=2035,
        which in any::<Index>(),
        lead_secs in 0i64..=2 * 86_400,
        steps in prop::collection::vec(step_secs(), 10..60),
    ) {
        check_day_walk(zone, year, which, lead_secs, steps)?;
    }

    /// Distinct (service, number) pairs never share a code, including past 999 where the
    /// number gets a fourth digit; the digits read back as the number, and codes of the
    /// three-digit range sort like their numbers.
    #[test]
    fn ticket_codes_never_collide(
        first in "[a-zA-Z]{1,4}",
        second in "[a-zA-Z]{1,4}",
        a in number(),
        b in number(),
    ) {
        let first = ServiceCode::parse(&first).unwrap();
        let second = ServiceCode::parse(&second).unwrap();
        check_codes(&first, &second, a, b)?;
    }
}

fn check_day_walk(
    zone: &str,
    year: i32,
    which: Index,
    lead_secs: i64,
    steps: Vec<i64>,
) -> Result<(), TestCaseError> {
    let tz: Tz = zone.parse().unwrap();
    let changes = offset_changes(tz, year);
    if zone != "UTC" && !(zone == "America/Sao_Paulo" && year >= 2019) {
        prop_assert!(changes.len() >= 2, "{} {}: {:?}", zone, year, changes);
    }
    let anchor = if changes.is_empty() {
        let new_year = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
        new_year + Duration::days(which.index(365) as i64)
    } else {
        changes[which.index(changes.len())]
    };
    let mut at = anchor - Duration::seconds(lead_secs);
    let mut day = service_day(at, tz);
    for step in steps {
        let next_at = at + Duration::seconds(step);
        let next_day = service_day(next_at, tz);
        let between = format!("{zone}: {day} at {at}, {next_day} at {next_at}");
        prop_assert!(next_day >= day, "went back: {}", between);
        prop_assert!(next_day - day <= Duration::days(1), "skipped: {}", between);
        let from_utc = (next_day - next_at.date_naive()).num_days();
        prop_assert!(from_utc.abs() <= 1, "far from the UTC date: {}", between);
        if next_day > day {
            // The day turned inside (at, next_at]: local wall time there is just past
            // midnight (plus at most an hour, when the clock jumps at midnight).
            let into_day = seconds_into_local_day(tz, next_at);
            prop_assert!(
                into_day < step + 3600,
                "turned {} s into the local day: {}",
                into_day,
                between
            );
        }
        at = next_at;
        day = next_day;
    }
    Ok(())
}

fn check_codes(
    first: &ServiceCode,
    second: &ServiceCode,
    a: u32,
    b: u32,
) -> Result<(), TestCaseError> {
    let code_a = ticket_code(first, a);
    let code_b = ticket_code(second, b);
    let same = first == second && a == b;
    prop_assert_eq!(code_a == code_b, same, "{} vs {}", code_a, code_b);
    prop_assert_eq!(ticket_code(first, b) == code_a, a == b);

    let digits = code_a.strip_prefix(first.as_str()).unwrap();
    let all_digits = digits.bytes().all(|d| d.is_ascii_digit());
    prop_assert!(digits.len() >= 3 && all_digits, "{}", code_a);
    prop_assert_eq!(digits.parse::<u32>().unwrap(), a);
    let padded_once = digits.len() == 3 || !digits.starts_with('0');
    prop_assert!(padded_once, "{} is padded beyond three digits", code_a);
    if a <= 999 && b <= 999 {
        prop_assert_eq!(code_a.cmp(&ticket_code(first, b)), a.cmp(&b));
    }
    Ok(())
}

fn number() -> impl Strategy<Value = u32> {
    prop_oneof![
        1u32..=1_200,
        990u32..=1_010,
        9_990u32..=10_010,
        1u32..=u32::MAX
    ]
}

#[test]
fn the_zones_used_change_their_clocks_as_expected() {
    // The DST walk above relies on finding these changes; pin a few known ones.
    let at = |zone: &str, year| offset_changes(zone.parse().unwrap(), year);
    let berlin = at("Europe/Berlin", 2026);
    assert_eq!(
        berlin,
        vec![
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 25, 1, 0, 0).unwrap(),
        ]
    );
    // Lord Howe moves by 30 minutes, at 02:00 local.
    let lord_howe = at("Australia/Lord_Howe", 2026);
    assert_eq!(lord_howe.len(), 2);
    let tz: Tz = "Australia/Lord_Howe".parse().unwrap();
    let shift =
        offset_secs(tz, lord_howe[0]) - offset_secs(tz, lord_howe[0] - Duration::seconds(1));
    assert_eq!(shift.abs(), 1800);
    // São Paulo's summer time began at local midnight (so 00:00 did not exist) until 2018.
    let sao_paulo = at("America/Sao_Paulo", 2018);
    assert_eq!(sao_paulo.len(), 2);
    let sp: Tz = "America/Sao_Paulo".parse().unwrap();
    let spring = sao_paulo[1];
    assert_eq!(spring.with_timezone(&sp).time().hour(), 1);
    assert_eq!(
        service_day(spring, sp),
        NaiveDate::from_ymd_opt(2018, 11, 4).unwrap()
    );
    assert_eq!(
        service_day(spring - Duration::seconds(1), sp),
        NaiveDate::from_ymd_opt(2018, 11, 3).unwrap()
    );
    assert!(at("America/Sao_Paulo", 2020).is_empty());
}
