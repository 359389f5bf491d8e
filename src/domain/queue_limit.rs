//! How far issuing without a token may grow a service's queue (contract §4: 409
//! `queue_full`). A kiosk is anonymous, so a flood of anonymous issues could otherwise grow a
//! queue, and everything that lists it, without bound. Operators are not held to it.

use std::collections::HashMap;
use std::hash::Hash;

/// The service already has as many waiting tickets as an issue may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this service already has {limit} tickets waiting, the most a ticket taken without an operator can join; try again later or ask at a desk"
)]
pub struct QueueFull {
    pub limit: u32,
}

/// Which issues of a batch join their service's queue, given in queue order with their
/// service and their limit (`None`: not limited). An issue is refused when its service
/// already has `limit` waiting tickets: `waiting` before the batch, plus the batch's issues
/// admitted before it (limited or not).
pub fn admit<S: Copy + Eq + Hash>(
    waiting: impl Fn(S) -> u32,
    issues: &[(S, Option<u32>)],
) -> Vec<Result<(), QueueFull>> {
    let mut joined: HashMap<S, u32> = HashMap::new();
    issues
        .iter()
        .map(|&(service, limit)| {
            let ahead = joined.entry(service).or_insert(0);
            match limit {
                Some(limit) if waiting(service).saturating_add(*ahead) >= limit => {
                    Err(QueueFull { limit })
                }
                _ => {
                    *ahead += 1;
                    Ok(())
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Result<(), QueueFull> = Err(QueueFull { limit: 3 });

    #[test]
    fn limited_issues_stop_at_the_limit_counting_the_ones_before_them() {
        let waiting = |_: char| 1;
        let issues = [('A', Some(3)); 4];
        assert_eq!(admit(waiting, &issues), [Ok(()), Ok(()), FULL, FULL]);
    }

    #[test]
    fn unlimited_issues_always_join_and_take_places() {
        let waiting = |_: char| 2;
        let issues = [('A', None), ('A', Some(3)), ('A', None)];
        assert_eq!(admit(waiting, &issues), [Ok(()), FULL, Ok(())]);
        assert_eq!(
            admit(|_| 7, &[('A', None)]),
            [Ok(())],
            "even past the limit"
        );
    }

    #[test]
    fn each_service_has_its_own_count() {
        let waiting = |service: char| if service == 'A' { 3 } else { 0 };
        let issues = [('A', Some(3)), ('B', Some(3)), ('B', Some(3))];
        assert_eq!(admit(waiting, &issues), [FULL, Ok(()), Ok(())]);
    }

    #[test]
    fn a_refused_issue_takes_no_place() {
        let issues = [('A', Some(1)), ('A', Some(1)), ('A', Some(2))];
        assert_eq!(
            admit(|_| 0, &issues),
            [Ok(()), Err(QueueFull { limit: 1 }), Ok(())]
        );
    }
}
