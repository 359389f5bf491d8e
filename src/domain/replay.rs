//! Resuming from the event log: which `since` can be served by replaying the changes after
//! it, for WebSocket sessions (otherwise a snapshot) and `GET …/events` (otherwise 410).

/// A client further behind than this gets a snapshot (or 410) instead of a replay: a
/// snapshot is smaller than a long replay, and the answer's size stays bounded.
pub const MAX_REPLAY_EVENTS: i64 = 1000;

/// Whether a session asking for the events after `since` gets them replayed (`Some`), or a
/// snapshot: when it has no `since`, when `since` is negative or beyond the current `seq`
/// (a restored database), when the log no longer has every event after it (`oldest` is
/// the first seq kept), or when it is more than [`MAX_REPLAY_EVENTS`] behind.
pub fn replay_from(since: Option<i64>, seq: i64, oldest: i64) -> Option<i64> {
    since.filter(|&since| {
        since >= 0 && since <= seq && since + 1 >= oldest && seq - since <= MAX_REPLAY_EVENTS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_resume_by_replay_only_when_the_log_can_serve_it() {
        let cases = [
            ("no since", None, 10, 1, None),
            ("a few behind", Some(7), 10, 1, Some(7)),
            ("up to date", Some(10), 10, 1, Some(10)),
            ("from the very start", Some(0), 10, 1, Some(0)),
            ("negative", Some(-1), 10, 1, None),
            ("beyond the current seq", Some(11), 10, 1, None),
            ("older than the log", Some(3), 10, 5, None),
            ("right at the log's start", Some(4), 10, 5, Some(4)),
            ("exactly the replay limit", Some(0), 1000, 1, Some(0)),
            ("past the replay limit", Some(0), 1001, 1, None),
        ];
        for (case, since, seq, oldest, expected) in cases {
            assert_eq!(replay_from(since, seq, oldest), expected, "{case}");
        }
    }
}
