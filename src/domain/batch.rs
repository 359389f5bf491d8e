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

/// For tickets in seq order, how many *later* ones share each one's class (its service and
/// priority). Counted after the whole batch is in, those are queued behind it, but at its
/// own seq they did not exist yet.
pub fn later_in_same_class<K: Eq>(classes: &[K]) -> Vec<u32> {
    classes
        .iter()
        .enumerate()
        .map(|(i, class)| classes[i + 1..].iter().filter(|c| *c == class).count() as u32)
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

    #[test]
    fn later_tickets_of_the_same_class_are_counted() {
        assert_eq!(
            later_in_same_class(&[("s", 0), ("t", 0), ("s", 0), ("s", 1), ("s", 0)]),
            vec![2, 0, 1, 0, 0]
        );
    }
}
