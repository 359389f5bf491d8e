//! The call order of contract §2: among waiting tickets, `priority` ones first, then the
//! oldest issue time, then the id as a stable tie-break.
//!
//! This module is the one statement of that rule in Rust: whatever orders or counts waiting
//! tickets goes through [`CallOrder`] or the functions here. SQL states it once as well, as
//! the function `call_key` (migration `20261207061600_call_order_and_busy_counter_once`),
//! which every query and the waiting indexes use with the id as the tie-break; the integration test
//! `call_order::the_database_and_the_domain_agree_on_the_call_order` holds the two together.
//! Pages do not know the rule: operator tickets carry [`CallOrder::sort_key`].
//!
//! The fair call order of contract §8 (`priority_ratio`) is stated here too: a counter that
//! was called `priority_ratio` priority tickets in a row is on a fair [`Turn`], on which it
//! takes the oldest normal ticket if one waits ([`CallOrder::turn_key`]); its streak moves
//! by [`streak_after`]. SQL states the same as the functions `fair_turn`, `turn_key` and
//! `streak_after` (migration `20261207100000_call_policy`), which both call-next statements
//! and the next-call preview use; `call_policy::the_database_and_the_domain_agree_on_fair_turns`
//! holds the two together.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;

use chrono::{DateTime, Utc};

use super::ids::TicketId;
use super::ticket::{Priority, WaitingCounts};

/// The rank of a priority class: every waiting ticket of a lower rank is called before any
/// ticket of a higher one.
fn class_rank(priority: Priority) -> u8 {
    match priority {
        Priority::Priority => 0,
        Priority::Normal => 1,
    }
}

/// A waiting ticket's place in the call order: call-next takes the smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOrder<Id> {
    pub priority: Priority,
    pub created_at: DateTime<Utc>,
    pub id: Id,
}

impl<Id> CallOrder<Id> {
    pub fn new(priority: Priority, created_at: DateTime<Utc>, id: Id) -> Self {
        CallOrder {
            priority,
            created_at,
            id,
        }
    }
}

impl<Id: Ord> Ord for CallOrder<Id> {
    fn cmp(&self, other: &Self) -> Ordering {
        class_rank(self.priority)
            .cmp(&class_rank(other.priority))
            .then(self.created_at.cmp(&other.created_at))
            .then(self.id.cmp(&other.id))
    }
}

impl<Id: Ord> PartialOrd for CallOrder<Id> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What bounds a call-next besides the services asked for (contract §8): the tenant's fair
/// ratio, and the start of the current business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// `None`: priority tickets always first.
    pub priority_ratio: Option<u32>,
    /// No ticket issued before this instant (the day's last automatic close) is called: a
    /// day's leftovers never spill into the next day, even before the close has expired
    /// them.
    pub issued_since: DateTime<Utc>,
}

/// Which order a counter's next call-next takes waiting tickets in (contract §8,
/// `priority_ratio`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Turn {
    /// The call order: priority tickets first.
    Usual,
    /// After `priority_ratio` priority tickets in a row: the oldest normal ticket first,
    /// and a priority ticket only when no normal one waits.
    Fair,
}

impl Turn {
    /// The turn of a counter that was called `priority_streak` priority tickets in a row,
    /// under the tenant's `priority_ratio` (`None`: priority tickets always first).
    pub fn of(priority_streak: u32, priority_ratio: Option<u32>) -> Turn {
        match priority_ratio {
            Some(ratio) if priority_streak >= ratio => Turn::Fair,
            _ => Turn::Usual,
        }
    }
}

/// A counter's streak of priority tickets called in a row, after a ticket of `called`
/// priority is called to it (by call-next or by calling that ticket).
pub fn streak_after(priority_streak: u32, called: Priority) -> u32 {
    match called {
        Priority::Priority => priority_streak.saturating_add(1).min(i32::MAX as u32),
        Priority::Normal => 0,
    }
}

impl<Id: Ord + Copy> CallOrder<Id> {
    /// The order a counter on `turn` takes waiting tickets in, smallest first: the call
    /// order, but on a fair turn with normal tickets before priority ones.
    pub fn turn_key(&self, turn: Turn) -> (u8, DateTime<Utc>, Id) {
        let rank = class_rank(self.priority);
        let rank = match turn {
            Turn::Usual => rank,
            Turn::Fair => 1 - rank,
        };
        (rank, self.created_at, self.id)
    }
}

/// The ticket a counter on `turn` takes among `waiting` (any order), if any.
pub fn next_for_turn<Id: Ord + Copy>(
    turn: Turn,
    waiting: impl IntoIterator<Item = CallOrder<Id>>,
) -> Option<CallOrder<Id>> {
    waiting.into_iter().min_by_key(|place| place.turn_key(turn))
}

/// Why a ticket is the one a counter takes next: the `reason` of the next-call preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextReason {
    /// A priority ticket, taken before normal ones.
    Priority,
    /// A normal ticket, next in the call order: no priority ticket waits.
    WaitedLongest,
    /// A normal ticket taken on a fair turn although a priority ticket waits.
    FairTurn,
}

impl NextReason {
    /// The reason for taking a ticket of `taken` priority, when a priority ticket waits
    /// (`priority_waits`, among the requested services) or not.
    pub fn of(taken: Priority, priority_waits: bool) -> NextReason {
        match (taken, priority_waits) {
            (Priority::Priority, _) => NextReason::Priority,
            (Priority::Normal, false) => NextReason::WaitedLongest,
            (Priority::Normal, true) => NextReason::FairTurn,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NextReason::Priority => "priority",
            NextReason::WaitedLongest => "waited_longest",
            NextReason::FairTurn => "fair_turn",
        }
    }
}

impl CallOrder<TicketId> {
    /// The place as a string whose plain (code unit by code unit) order is the call order,
    /// so that a page can keep a list in call order without knowing the rule. Fixed width:
    /// the class rank, the issue time as offset-binary seconds and nanoseconds, and the id,
    /// all in lowercase hex.
    pub fn sort_key(&self) -> String {
        // Offset binary: flipping the sign bit makes the order of the bits that of the number.
        let secs = self.created_at.timestamp() as u64 ^ (1 << 63);
        let nanos = self.created_at.timestamp_subsec_nanos();
        format!(
            "{:x}{secs:016x}{nanos:08x}{}",
            class_rank(self.priority),
            self.id.get().simple()
        )
    }
}

/// For tickets listed in call order, how many tickets of the same service come before each:
/// the `ahead` of contract §3.
pub fn ahead_in_service<S: Eq + Hash>(
    services_in_call_order: impl IntoIterator<Item = S>,
) -> Vec<u32> {
    let mut seen: HashMap<S, u32> = HashMap::new();
    services_in_call_order
        .into_iter()
        .map(|service| {
            let count = seen.entry(service).or_insert(0);
            let ahead = *count;
            *count += 1;
            ahead
        })
        .collect()
}

/// `ahead` of a waiting ticket from its service's counts (which include the ticket) and the
/// number of tickets of its priority class queued *behind* it: the tickets of the classes
/// ranked before its own are all ahead, and so are the earlier ones of its class. Counting
/// those behind is cheap for the common case, a ticket just issued, which has none.
pub fn ahead_from_counts(priority: Priority, counts: WaitingCounts, behind_in_class: u32) -> u32 {
    let classes_before: u32 = Priority::ALL
        .into_iter()
        .filter(|&other| class_rank(other) < class_rank(priority))
        .map(|other| counts.of(other))
        .sum();
    let ahead_in_class = counts
        .of(priority)
        .saturating_sub(1)
        .saturating_sub(behind_in_class);
    classes_before + ahead_in_class
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn call_order_puts_priority_first_then_oldest_then_id() {
        let order = |priority, secs, id| CallOrder::new(priority, at(secs), id);
        let mut tickets = [
            order(Priority::Normal, 1, 1),
            order(Priority::Priority, 9, 2),
            order(Priority::Normal, 0, 3),
            order(Priority::Priority, 5, 4),
            order(Priority::Normal, 0, 0),
        ];
        tickets.sort();
        let ids: Vec<_> = tickets.iter().map(|o| o.id).collect();
        assert_eq!(ids, vec![4, 2, 0, 3, 1]);
    }

    #[test]
    fn ahead_from_counts_matches_counting_the_queue() {
        // A service's queue in call order.
        let queue = [
            Priority::Priority,
            Priority::Priority,
            Priority::Normal,
            Priority::Normal,
            Priority::Normal,
        ];
        let counts = WaitingCounts {
            normal: 3,
            priority: 2,
        };
        let aheads: Vec<u32> = queue
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let behind = queue[i + 1..].iter().filter(|&&q| q == p).count() as u32;
                ahead_from_counts(p, counts, behind)
            })
            .collect();
        assert_eq!(
            aheads,
            [0, 1, 2, 3, 4],
            "each ticket has everyone before it ahead"
        );
        assert_eq!(
            ahead_from_counts(Priority::Normal, WaitingCounts::default(), 0),
            0,
            "inconsistent counts never underflow"
        );
    }

    #[test]
    fn ahead_counts_only_earlier_tickets_of_the_same_service() {
        assert_eq!(
            ahead_in_service(["A", "B", "A", "A", "B", "C"]),
            vec![0, 0, 1, 2, 1, 0]
        );
        assert!(ahead_in_service(Vec::<&str>::new()).is_empty());
    }

    #[test]
    fn sort_keys_have_one_width() {
        let early = CallOrder::new(Priority::Normal, at(-1_700_000_000), TicketId::new());
        let late = CallOrder::new(Priority::Priority, at(1 << 40), TicketId::new());
        assert_eq!(early.sort_key().len(), late.sort_key().len());
        assert!(late.sort_key() < early.sort_key(), "priority first");
    }

    #[test]
    fn a_counter_is_on_a_fair_turn_once_its_streak_reaches_the_ratio() {
        let cases = [
            (0, None, Turn::Usual, "no ratio: priority always first"),
            (
                1_000,
                None,
                Turn::Usual,
                "no ratio, however long the streak",
            ),
            (0, Some(1), Turn::Usual, "nothing called yet"),
            (1, Some(1), Turn::Fair, "ratio 1 after one priority"),
            (1, Some(2), Turn::Usual, "ratio 2 after one priority"),
            (2, Some(2), Turn::Fair, "ratio 2 after two"),
            (
                3,
                Some(2),
                Turn::Fair,
                "past the ratio: no normal waited last time",
            ),
            (
                i32::MAX as u32,
                Some(i32::MAX as u32),
                Turn::Fair,
                "the largest ratio",
            ),
        ];
        for (streak, ratio, turn, why) in cases {
            assert_eq!(Turn::of(streak, ratio), turn, "{why}");
        }
    }

    #[test]
    fn a_priority_call_lengthens_the_streak_and_a_normal_one_ends_it() {
        let cases = [
            (0, Priority::Priority, 1),
            (4, Priority::Priority, 5),
            (4, Priority::Normal, 0),
            (0, Priority::Normal, 0),
            (i32::MAX as u32, Priority::Priority, i32::MAX as u32),
        ];
        for (streak, called, after) in cases {
            assert_eq!(streak_after(streak, called), after, "{streak} + {called:?}");
        }
    }

    /// One counter calls until nobody waits, from tickets issued in the order of `queue`
    /// (`P` priority, `N` normal), under `ratio`: the classes it calls, in order.
    fn calls_at_one_counter(ratio: Option<u32>, queue: &str) -> String {
        let mut waiting = issued(queue);
        let mut desk = Desk::default();
        let mut called = String::new();
        while let Some(next) = desk.call(ratio, &mut waiting) {
            called.push(class_letter(next.priority));
        }
        called
    }

    fn issued(queue: &str) -> Vec<CallOrder<u32>> {
        queue
            .chars()
            .enumerate()
            .map(|(i, class)| {
                let priority = match class {
                    'P' => Priority::Priority,
                    _ => Priority::Normal,
                };
                CallOrder::new(priority, at(i as i64), i as u32)
            })
            .collect()
    }

    fn class_letter(priority: Priority) -> char {
        match priority {
            Priority::Priority => 'P',
            Priority::Normal => 'N',
        }
    }

    /// A counter's streak, as the database keeps it.
    #[derive(Default)]
    struct Desk {
        streak: u32,
    }

    impl Desk {
        fn call(
            &mut self,
            ratio: Option<u32>,
            waiting: &mut Vec<CallOrder<u32>>,
        ) -> Option<CallOrder<u32>> {
            let next = next_for_turn(Turn::of(self.streak, ratio), waiting.iter().copied())?;
            waiting.retain(|w| w.id != next.id);
            self.streak = streak_after(self.streak, next.priority);
            Some(next)
        }
    }

    #[test]
    fn call_sequences_follow_the_ratio() {
        let cases = [
            (
                None,
                "PPPPPPNNNN",
                "PPPPPPNNNN",
                "no ratio: strict priority",
            ),
            (Some(2), "PPPPPPNNNN", "PPNPPNPPNN", "ratio 2"),
            (
                Some(2),
                "NNNNPPPPPP",
                "PPNPPNPPNN",
                "issue order does not matter",
            ),
            (Some(1), "PPPPPPNNNN", "PNPNPNPNPP", "ratio 1 alternates"),
            (
                Some(3),
                "PPPPPPPPN",
                "PPPNPPPPP",
                "one fair turn, then no normal waits",
            ),
            (
                Some(1),
                "PPPP",
                "PPPP",
                "a fair turn with no normal waiting takes priority",
            ),
            (Some(2), "NNNN", "NNNN", "only normal tickets"),
            (Some(2), "", "", "nobody waits"),
        ];
        for (ratio, queue, expected, why) in cases {
            assert_eq!(calls_at_one_counter(ratio, queue), expected, "{why}");
        }
    }

    #[test]
    fn a_fair_turn_takes_the_oldest_normal_ticket() {
        // Issued: N0 P1 N2 P3; at a fair turn N0 goes first, then N2, then the priorities.
        let waiting = issued("NPNP");
        let order: Vec<u32> = {
            let mut sorted = waiting.clone();
            sorted.sort_by_key(|w| w.turn_key(Turn::Fair));
            sorted.iter().map(|w| w.id).collect()
        };
        assert_eq!(order, [0, 2, 1, 3]);
        let usual: Vec<u32> = {
            let mut sorted = waiting.clone();
            sorted.sort_by_key(|w| w.turn_key(Turn::Usual));
            sorted.iter().map(|w| w.id).collect()
        };
        assert_eq!(usual, [1, 3, 0, 2], "the usual turn is the call order");
    }

    #[test]
    fn each_counter_keeps_its_own_streak() {
        // Two counters take turns calling from one queue under ratio 2.
        let mut waiting = issued("PPPPPPPPNNNN");
        let mut desks = [Desk::default(), Desk::default()];
        let mut called = [String::new(), String::new()];
        'calling: loop {
            for (desk, calls) in desks.iter_mut().zip(&mut called) {
                match desk.call(Some(2), &mut waiting) {
                    Some(next) => calls.push(class_letter(next.priority)),
                    None => break 'calling,
                }
            }
        }
        assert_eq!(called, ["PPNPPN", "PPNPPN"]);
    }

    #[test]
    fn the_reason_names_why_a_ticket_comes_next() {
        let cases = [
            (Priority::Priority, true, NextReason::Priority),
            (Priority::Priority, false, NextReason::Priority),
            (Priority::Normal, false, NextReason::WaitedLongest),
            (Priority::Normal, true, NextReason::FairTurn),
        ];
        for (taken, priority_waits, reason) in cases {
            assert_eq!(NextReason::of(taken, priority_waits), reason);
        }
        assert_eq!(NextReason::FairTurn.as_str(), "fair_turn");
        assert_eq!(NextReason::WaitedLongest.as_str(), "waited_longest");
    }

    fn place() -> impl Strategy<Value = CallOrder<TicketId>> {
        let priority = prop_oneof![Just(Priority::Normal), Just(Priority::Priority)];
        // Few distinct instants and ids, so ties on the first fields are common.
        let secs = prop_oneof![Just(-70_000_000_000i64), -3i64..3, Just(90_000_000_000)];
        let nanos = prop_oneof![Just(0u32), Just(999_999_999), 0u32..1_000_000_000];
        let id = prop_oneof![Just(0u128), Just(u128::MAX), 0u128..4, any::<u128>()];
        (priority, secs, nanos, id).prop_map(|(priority, secs, nanos, id)| {
            let created_at = Utc.timestamp_opt(secs, nanos).unwrap();
            CallOrder::new(priority, created_at, TicketId::from(Uuid::from_u128(id)))
        })
    }

    proptest! {
        /// Pages compare sort keys as strings: that must give the call order itself.
        #[test]
        fn sort_keys_compare_as_their_places_do(a in place(), b in place()) {
            prop_assert_eq!(a.sort_key().cmp(&b.sort_key()), a.cmp(&b));
        }

        /// A usual turn takes the first ticket in the call order; a fair turn the oldest
        /// normal ticket if one waits, else the first in the call order.
        #[test]
        fn turns_take_what_the_ratio_says(waiting in proptest::collection::vec(place(), 0..12)) {
            let first = waiting.iter().copied().min();
            prop_assert_eq!(next_for_turn(Turn::Usual, waiting.iter().copied()), first);
            let oldest_normal = waiting
                .iter()
                .copied()
                .filter(|w| w.priority == Priority::Normal)
                .min();
            prop_assert_eq!(
                next_for_turn(Turn::Fair, waiting.iter().copied()),
                oldest_normal.or(first)
            );
        }
    }
}
