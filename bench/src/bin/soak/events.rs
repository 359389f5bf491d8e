//! The event log, read with `GET …/events?since=N` as a polling client would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use nextup_bench::api::{Api, ApiError, ChangeAction};
use nextup_bench::session::{Frame, FrameKind};
use uuid::Uuid;

use crate::Shared;

#[derive(Default)]
pub struct EventLog {
    /// Change `seq` is at index `seq - 1`.
    pub changes: Vec<(Uuid, ChangeAction)>,
    pub polls: u64,
    pub poll_failures: BTreeMap<String, u64>,
    pub violations: u64,
    pub first_violations: Vec<String>,
}

impl EventLog {
    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.first_violations.len() < 10 {
            self.first_violations.push(what);
        }
    }

    /// Appends `GET …/events?since=<len>`, checking that it continues the log exactly.
    pub fn append(&mut self, since: u64, seq: u64, frames: &[Frame]) {
        self.polls += 1;
        if since != self.changes.len() as u64 {
            return; // another poll got there first
        }
        if seq < since {
            self.violation(format!("events?since={since} answered seq {seq}"));
            return;
        }
        let expected = 2 * (seq - since) as usize;
        if frames.len() != expected {
            self.violation(format!(
                "events?since={since} (seq {seq}) gave {} messages, not {expected}",
                frames.len()
            ));
        }
        for (i, pair) in frames.chunks(2).enumerate() {
            let want = since + 1 + i as u64;
            let [update, queue] = pair else {
                self.violation(format!("events: change {want} has no queue_update"));
                break;
            };
            let well_formed = update.kind == FrameKind::TicketUpdate
                && queue.kind == FrameKind::QueueUpdate
                && update.seq == Some(want)
                && queue.seq == Some(want);
            match (well_formed, update.ticket, update.action) {
                (true, Some(ticket), Some(action)) => self.changes.push((ticket, action)),
                _ => {
                    self.violation(format!(
                        "events: messages for change {want} are {}/{:?} and {}/{:?}",
                        update.kind.as_str(),
                        update.seq,
                        queue.kind.as_str(),
                        queue.seq
                    ));
                    break;
                }
            }
        }
    }

    pub fn seq(&self) -> u64 {
        self.changes.len() as u64
    }
}

async fn poll_once(public: &Api, log: &Mutex<EventLog>) -> Result<u64, ApiError> {
    let since = log.lock().unwrap().seq();
    match public.events(since).await {
        Ok(events) => {
            let mut log = log.lock().unwrap();
            log.append(since, events.seq, &events.frames);
            Ok(events.seq)
        }
        Err(e) => {
            *log.lock()
                .unwrap()
                .poll_failures
                .entry(e.key())
                .or_default() += 1;
            Err(e)
        }
    }
}

pub async fn poll_events(
    public: Api,
    log: Arc<Mutex<EventLog>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(seq) = poll_once(&public, &log).await {
            shared.seq.store(seq, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads the log to its end; the server's final seq (the log itself may stop short of it
/// when an answer broke the rules, which the report shows).
pub async fn catch_up_log(public: &Api, log: &Mutex<EventLog>) -> anyhow::Result<u64> {
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut answers_without_progress = 0;
    loop {
        let before = log.lock().unwrap().seq();
        match poll_once(public, log).await {
            Ok(seq) => {
                let now = log.lock().unwrap().seq();
                if now == seq {
                    return Ok(seq);
                }
                answers_without_progress = if now == before {
                    answers_without_progress + 1
                } else {
                    0
                };
                if answers_without_progress >= 3 {
                    return Ok(seq);
                }
            }
            Err(e) if Instant::now() > give_up => {
                bail!("cannot read the event log to its end after the run: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, seq: u64) -> Frame {
        Frame {
            at: Instant::now(),
            kind,
            seq: Some(seq),
            ticket: Some(Uuid::from_u128(u128::from(seq))),
            action: Some(ChangeAction::Called),
            hello_seq: None,
        }
    }

    fn pairs(seqs: std::ops::RangeInclusive<u64>) -> Vec<Frame> {
        seqs.flat_map(|s| {
            [
                frame(FrameKind::TicketUpdate, s),
                frame(FrameKind::QueueUpdate, s),
            ]
        })
        .collect()
    }

    #[test]
    fn polls_that_continue_the_log_are_appended() {
        let mut log = EventLog::default();
        log.append(0, 2, &pairs(1..=2));
        log.append(2, 2, &[]);
        log.append(2, 3, &pairs(3..=3));
        assert_eq!(log.seq(), 3);
        assert_eq!(log.violations, 0);
        assert_eq!(log.changes[2].0, Uuid::from_u128(3));
    }

    #[test]
    fn polls_that_skip_repeat_or_split_changes_are_violations() {
        let cases = [
            (pairs(2..=3), 2, "ticket_update/Some(2)"),
            (pairs(1..=1), 2, "gave 2 messages, not 4"),
            (
                vec![
                    frame(FrameKind::TicketUpdate, 1),
                    frame(FrameKind::TicketUpdate, 1),
                ],
                1,
                "messages for change 1",
            ),
        ];
        for (frames, seq, expected) in cases {
            let mut log = EventLog::default();
            log.append(0, seq, &frames);
            assert!(
                log.first_violations.iter().any(|v| v.contains(expected)),
                "expected '{expected}' in {:?}",
                log.first_violations
            );
        }
    }
}
