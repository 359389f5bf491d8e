//! The call order of contract §2: among waiting tickets, `priority` ones first, then the
//! oldest issue time, then the id as a stable tie-break.
//!
//! This module is the one statement of that rule in Rust: whatever orders or counts waiting
//! tickets goes through [`CallOrder`] or the functions here. SQL states it once as well, as
//! the function `call_key` (migration `20261207061600_call_order_and_busy_counter_once`),
//! which every query and the waiting indexes use with the id as the tie-break; the integration test
//! `call_order::the_database_and_the_domain_agree_on_the_call_order` holds the two together.
//! Pages do not know the rule: operator tickets carry [`CallOrder::sort_key`].

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
    }
}
