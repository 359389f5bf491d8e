//! The arithmetic of issuing a batch of tickets together (see `ticketing::issuing`): their
//! numbers, and what the queue looked like at each one's seq.

/// Groups the tickets' number keys (a service and its day) into claims: each key once, in
/// key order (the order their rows are locked in), with how many numbers it takes.
pub fn number_claims<K: Ord + Copy>(keys: &[K]) -> Vec<(K, u32)> {
    let mut claims: Vec<(K, u32)> = Vec::new();
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    for key in sorted {
        match claims.last_mut() {
            Some((last, count)) if *last == key => *count += 1,
            _ => claims.push((key, 1)),
        }
    }
    claims
}

/// Each ticket's number, in the order given, from each claim's last number once claimed: a
/// claim of `n` numbers ending at `last` hands out `last - n + 1 ..= last`, in ticket order.
/// `None` if a key has no claim or a claim more numbers than exist below its last.
pub fn assign_numbers<K: Ord + Copy>(
    keys: &[K],
    claims: &[(K, u32)],
    lasts: &[u32],
) -> Option<Vec<u32>> {
    let mut next: Vec<u32> = claims
        .iter()
        .zip(lasts)
        .map(|((_, count), last)| (last + 1).checked_sub(*count))
        .collect::<Option<_>>()?;
    keys.iter()
        .map(|key| {
            let claim = claims.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
            let number = next[claim];
            next[claim] += 1;
            (number >= 1).then_some(number)
        })
        .collect()
}

/// A change as the waiting queue sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMove<T, C, P> {
    pub ticket: T,
    /// The queue the ticket is in after the change: its service and priority.
    pub class: C,
    /// Its place in that queue (a `call_order::CallOrder`): earlier places are called first.
    pub place: P,
    /// How the change moved the class's waiting count: +1, -1 or 0.
    pub delta: i32,
    /// Whether the ticket waits after the change.
    pub waiting: bool,
}

/// For changes in seq order, how many tickets were queued behind each waiting one in its
/// class at its own seq, from how many are behind it once all the changes are made
/// (`behind_after`, by change): the later changes of other tickets of its class, placed
/// behind it, are undone. 0 for a change after which the ticket does not wait.
pub fn behind_at_own_seq<T: PartialEq, C: PartialEq, P: PartialOrd>(
    moves: &[QueueMove<T, C, P>],
    behind_after: &[u32],
) -> Vec<u32> {
    moves
        .iter()
        .zip(behind_after)
        .enumerate()
        .map(|(k, (mine, &after))| {
            if !mine.waiting {
                return 0;
            }
            let later: i64 = moves[k + 1..]
                .iter()
                .filter(|m| m.ticket != mine.ticket && m.class == mine.class)
                .filter(|m| m.place > mine.place)
                .map(|m| i64::from(m.delta))
                .sum();
            u32::try_from((i64::from(after) - later).max(0)).unwrap_or(u32::MAX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_group_keys_in_key_order() {
        assert_eq!(
            number_claims(&["b", "a", "b", "c", "b"]),
            vec![("a", 1), ("b", 3), ("c", 1)]
        );
        assert!(number_claims::<u8>(&[]).is_empty());
    }

    #[test]
    fn numbers_follow_ticket_order_within_each_claim() {
        let keys = ["b", "a", "b", "b"];
        let claims = number_claims(&keys);
        // "a" was at 4 and got 1 more; "b" is new and got 3.
        let numbers = assign_numbers(&keys, &claims, &[5, 3]);
        assert_eq!(numbers, Some(vec![1, 5, 2, 3]));
    }

    #[test]
    fn a_claim_that_does_not_fit_below_its_last_is_refused() {
        assert_eq!(assign_numbers(&["a", "a"], &[("a", 2)], &[1]), None);
        assert_eq!(assign_numbers(&["x"], &[("a", 1)], &[1]), None);
    }

    fn moved(
        ticket: u8,
        class: char,
        place: u8,
        delta: i32,
        waiting: bool,
    ) -> QueueMove<u8, char, u8> {
        QueueMove {
            ticket,
            class,
            place,
            delta,
            waiting,
        }
    }

    #[test]
    fn tickets_issued_later_behind_a_ticket_did_not_exist_at_its_seq() {
        // Three issued into class a in place order, one into b.
        let moves = [
            moved(1, 'a', 1, 1, true),
            moved(2, 'b', 1, 1, true),
            moved(3, 'a', 2, 1, true),
            moved(4, 'a', 3, 1, true),
        ];
        // After the batch, 2 are behind ticket 1 and 1 behind ticket 3.
        assert_eq!(behind_at_own_seq(&moves, &[2, 0, 1, 0]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn tickets_called_later_were_still_behind_at_its_seq() {
        // Ticket 1 is reactivated at an early place; then ticket 5, behind it, is called.
        let moves = [moved(1, 'a', 1, 1, true), moved(5, 'a', 4, -1, false)];
        assert_eq!(behind_at_own_seq(&moves, &[3, 0]), vec![4, 0]);
    }

    #[test]
    fn later_changes_ahead_of_it_or_of_itself_do_not_count() {
        let moves = [
            moved(3, 'a', 5, 1, true),
            // placed ahead of ticket 3: not behind it
            moved(1, 'a', 2, 1, true),
            // ticket 3 itself, called later in the batch
            moved(3, 'a', 5, -1, false),
            // another class
            moved(9, 'b', 9, 1, true),
        ];
        // One ticket outside the batch is behind ticket 1 at the end; ticket 3 was too,
        // until it was called.
        assert_eq!(behind_at_own_seq(&moves, &[0, 1, 0, 0]), vec![0, 2, 0, 0]);
    }
}
