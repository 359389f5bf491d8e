//! The checks, the readable summary and the JSON line.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nextup_bench::api::ChangeAction;
use nextup_bench::session::{Frame, FrameKind, Session, SessionStats};
use nextup_bench::stats::Summary;
use serde_json::json;
use uuid::Uuid;

use crate::events::EventLog;
use crate::workers::{Failure, WorkerLog};
use crate::{Args, RECOVERY_GRACE, SLUG};

#[derive(Debug, Clone, Copy, Default)]
pub struct CutWindow {
    pub start: Option<Instant>,
    pub end: Option<Instant>,
}

pub struct Report<'a> {
    pub args: &'a Args,
    pub ran_for: Duration,
    pub interrupted: bool,
    pub final_seq: u64,
    pub log: EventLog,
    pub worker_logs: Vec<WorkerLog>,
    /// Label, seq of the first snapshot, the session.
    pub sessions: Vec<(String, u64, Session)>,
    /// `Err(n)`: n sessions had not caught up after 60 s.
    pub caught_up: Result<(), usize>,
    pub cut: CutWindow,
    /// Baseline, peak, after (KiB).
    pub rss: (u64, u64, u64),
    pub open_sessions: Option<f64>,
    pub server_log: (u64, u64, PathBuf),
    pub exit: anyhow::Result<Option<i32>>,
}

struct Check {
    name: &'static str,
    passed: bool,
    detail: String,
}

fn check(name: &'static str, passed: bool, detail: String) -> Check {
    Check {
        name,
        passed,
        detail,
    }
}

/// What one session's `ticket_update`s say against the expected `start+1..=final`.
#[derive(Default)]
struct Delivery {
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    beyond: u64,
    content_mismatches: u64,
    first_missing: Option<u64>,
}

fn delivery(frames: &[Frame], start: u64, final_seq: u64, log: &EventLog) -> Delivery {
    let mut result = Delivery::default();
    let span = final_seq.saturating_sub(start) as usize;
    let mut seen = vec![0u32; span];
    let mut previous = start;
    for frame in frames.iter().filter(|f| f.kind == FrameKind::TicketUpdate) {
        let Some(seq) = frame.seq else { continue };
        if seq <= previous {
            result.out_of_order += 1;
        }
        previous = previous.max(seq);
        if seq <= start || seq > final_seq {
            result.beyond += 1;
            continue;
        }
        seen[(seq - start - 1) as usize] += 1;
        let logged = log.changes.get((seq - 1) as usize);
        if logged != frame.ticket.zip(frame.action).as_ref() {
            result.content_mismatches += 1;
        }
    }
    for (i, count) in seen.iter().enumerate() {
        match count {
            0 => {
                result.missing += 1;
                result.first_missing.get_or_insert(start + 1 + i as u64);
            }
            1 => {}
            n => result.duplicates += u64::from(n - 1),
        }
    }
    // A duplicate also shows as out of order; count it once.
    result.out_of_order = result.out_of_order.saturating_sub(result.duplicates);
    result
}

fn overlaps(started: Instant, latency: Duration, from: Instant, to: Instant) -> bool {
    started <= to && started + latency >= from
}

fn add(map: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *map.entry(k.clone()).or_default() += v;
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The outage as the workers saw it.
struct Outage {
    secs: f64,
    latencies_503: Vec<Duration>,
    /// Other failures during it (besides 409s), by key.
    other: BTreeMap<String, u64>,
    /// From the restore to the first 2xx change.
    recovered_after: Option<Duration>,
}

impl Report<'_> {
    /// Per-session delivery, resumes, ordering, content and catch-up; the sessions' totals.
    fn check_sessions(&self, checks: &mut Vec<Check>) -> SessionStats {
        let final_seq = self.final_seq;
        let mut totals = SessionStats::default();
        let mut bad_delivery = Vec::new();
        let mut content_mismatches = 0;
        for (label, start, session) in &self.sessions {
            let stats = session.stats();
            totals.connections += stats.connections;
            totals.frames += stats.frames;
            totals.ticket_updates += stats.ticket_updates;
            totals.queue_updates += stats.queue_updates;
            totals.snapshots += stats.snapshots;
            totals.pongs += stats.pongs;
            totals.snapshots_on_resume += stats.snapshots_on_resume;
            for &(since, seq) in stats.first_resume_snapshots.iter().take(2) {
                if totals.first_resume_snapshots.len() < 5 {
                    totals.first_resume_snapshots.push((since, seq));
                }
            }
            totals.violations += stats.violations;
            add(&mut totals.handshake_failures, &stats.handshake_failures);
            add(&mut totals.ends, &stats.ends);
            if totals.first_violations.len() < 5 {
                for v in stats.first_violations.iter().take(2) {
                    totals.first_violations.push(format!("{label}: {v}"));
                }
            }
            let d = delivery(session.frames(), *start, final_seq, &self.log);
            content_mismatches += d.content_mismatches;
            if d.missing + d.duplicates + d.out_of_order + d.beyond > 0 {
                bad_delivery.push(format!(
                    "{label}: {} missing{}, {} duplicated, {} out of order, {} outside {}..={final_seq}",
                    d.missing,
                    d.first_missing
                        .map_or(String::new(), |s| format!(" (first {s})")),
                    d.duplicates,
                    d.out_of_order,
                    d.beyond,
                    start + 1
                ));
            }
        }
        let session_count = self.sessions.len();
        let starts: Vec<u64> = self.sessions.iter().map(|(_, s, _)| *s).collect();
        let from = starts.iter().min().copied().unwrap_or(0) + 1;
        checks.push(check(
            "every session received each ticket_update exactly once, in order",
            bad_delivery.is_empty(),
            if bad_delivery.is_empty() {
                format!("{session_count} sessions × seq {from}..={final_seq}")
            } else {
                format!(
                    "{} of {session_count} sessions wrong; {}",
                    bad_delivery.len(),
                    bad_delivery
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
        ));
        checks.push(check(
            "every resume was a replay, never a snapshot",
            totals.snapshots_on_resume == 0,
            format!(
                "{} resumes, {} answered with a snapshot{}",
                totals.connections.saturating_sub(session_count as u64),
                totals.snapshots_on_resume,
                if totals.first_resume_snapshots.is_empty() {
                    String::new()
                } else {
                    let examples: Vec<String> = totals
                        .first_resume_snapshots
                        .iter()
                        .map(|(since, seq)| format!("since={since} → snapshot at {seq}"))
                        .collect();
                    format!(
                        " ({}; a since over 1000 changes behind gets a snapshot by design)",
                        examples.join(", ")
                    )
                }
            ),
        ));
        checks.push(check(
            "ordering rules: hello first, ticket_update and queue_update adjacent, seq order",
            totals.violations == 0,
            if totals.violations == 0 {
                format!("{} frames", totals.frames)
            } else {
                format!(
                    "{} breaches; {}",
                    totals.violations,
                    totals.first_violations.join("; ")
                )
            },
        ));
        checks.push(check(
            "sessions' ticket_updates match the event log (ticket and action)",
            content_mismatches == 0,
            format!("{content_mismatches} mismatches"),
        ));
        checks.push(check(
            "every session caught up to the final seq",
            self.caught_up.is_ok(),
            match self.caught_up {
                Ok(()) => format!("final seq {final_seq}"),
                Err(n) => format!("{n} sessions behind {final_seq} after 60 s"),
            },
        ));

        totals
    }

    fn check_log(&self, checks: &mut Vec<Check>) {
        let final_seq = self.final_seq;
        checks.push(check(
            "event log (GET …/events) is gapless, in pairs, and continues each poll exactly",
            self.log.violations == 0 && self.log.seq() == final_seq,
            if self.log.violations == 0 {
                format!("{} changes in {} polls", self.log.seq(), self.log.polls)
            } else {
                format!(
                    "{} breaches; {}",
                    self.log.violations,
                    self.log.first_violations.join("; ")
                )
            },
        ));
    }

    /// The workers' 2xx answers against the log, both ways; the 2xx latencies.
    fn check_changes(&self, checks: &mut Vec<Check>) -> Vec<Duration> {
        let mut logged: HashMap<(Uuid, ChangeAction), u64> = HashMap::new();
        for key in &self.log.changes {
            *logged.entry(*key).or_default() += 1;
        }
        let mut missing_from_log = Vec::new();
        let mut recorded = 0u64;
        let mut ok_latencies = Vec::new();
        for log in &self.worker_logs {
            for change in &log.changes {
                recorded += 1;
                ok_latencies.push(change.latency);
                match logged.get_mut(&(change.ticket, change.action)) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => missing_from_log.push(format!(
                        "{} {}",
                        change.action.as_str(),
                        change.ticket
                    )),
                }
            }
        }
        checks.push(check(
            "every 2xx change answered to a worker is in the event log",
            missing_from_log.is_empty(),
            format!(
                "{recorded} answered, {} missing{}",
                missing_from_log.len(),
                if missing_from_log.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (e.g. {})",
                        missing_from_log[..missing_from_log.len().min(3)].join(", ")
                    )
                }
            ),
        ));
        // Changes in the log that no 2xx answered: explained only by a request that got no
        // answer at all.
        let failures: Vec<&Failure> = self.worker_logs.iter().flat_map(|l| &l.failures).collect();
        let mut used = vec![false; failures.len()];
        let mut unexplained = Vec::new();
        let mut after_error_answer = Vec::new();
        let mut after_no_answer = 0u64;
        let leftovers: Vec<(Uuid, ChangeAction)> = logged
            .iter()
            .flat_map(|(key, n)| std::iter::repeat_n(*key, *n as usize))
            .collect();
        for (ticket, action) in leftovers {
            let candidate = (0..failures.len())
                .filter(|&i| !used[i] && failures[i].change == action)
                .filter(|&i| failures[i].ticket.is_none_or(|t| t == ticket))
                .min_by_key(|&i| {
                    (
                        failures[i].ticket.is_none(),
                        failures[i].error.status.is_some(),
                    )
                });
            match candidate {
                Some(i) => {
                    used[i] = true;
                    if failures[i].error.status.is_none() {
                        after_no_answer += 1;
                    } else {
                        after_error_answer.push(format!(
                            "{} {ticket} happened though {} was answered {}",
                            action.as_str(),
                            failures[i].op,
                            failures[i].error.key()
                        ));
                    }
                }
                None => unexplained.push(format!("{} {ticket}", action.as_str())),
            }
        }
        checks.push(check(
            "no change happened that a worker was told had failed",
            unexplained.is_empty() && after_error_answer.is_empty(),
            format!(
                "{} changes without a 2xx: {after_no_answer} after a request with no answer, {} after an error answer, {} unexplained{}",
                after_no_answer + after_error_answer.len() as u64 + unexplained.len() as u64,
                after_error_answer.len(),
                unexplained.len(),
                after_error_answer
                    .iter()
                    .chain(&unexplained)
                    .take(3)
                    .map(|s| format!("; {s}"))
                    .collect::<String>()
            ),
        ));

        ok_latencies
    }

    /// Errors by key, which of them were expected, and the outage.
    fn check_errors(&self, checks: &mut Vec<Check>) -> (BTreeMap<String, u64>, Option<Outage>) {
        let mut failures: Vec<&Failure> =
            self.worker_logs.iter().flat_map(|l| &l.failures).collect();
        let window = self.cut.start.zip(self.cut.end);
        let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
        let mut unexpected: BTreeMap<String, u64> = BTreeMap::new();
        let mut in_cut_503 = Vec::new();
        let mut in_cut_other: BTreeMap<String, u64> = BTreeMap::new();
        failures.sort_by_key(|f| f.started);
        for f in &failures {
            let key = f.error.key();
            *by_key.entry(key.clone()).or_default() += 1;
            let in_cut = window.is_some_and(|(from, to)| {
                overlaps(f.started, f.latency, from, to + RECOVERY_GRACE)
            });
            let expected = f.error.is(409, "invalid_transition")
                || f.error.is(409, "counter_busy")
                || (in_cut && f.error.is(503, "database_unavailable"));
            if !expected {
                *unexpected.entry(format!("{} → {key}", f.op)).or_default() += 1;
            }
            if in_cut {
                if f.error.is(503, "database_unavailable") {
                    in_cut_503.push(f.latency);
                } else if f.error.status != Some(409) {
                    *in_cut_other.entry(key).or_default() += 1;
                }
            }
        }
        checks.push(check(
            "no unexpected errors (only 409 invalid_transition/counter_busy, and 503 during the outage)",
            unexpected.is_empty(),
            if unexpected.is_empty() {
                "none".to_owned()
            } else {
                format!("{unexpected:?}")
            },
        ));
        let Some((from, to)) = window else {
            return (by_key, None);
        };
        let cut_503 = Summary::of_millis(&in_cut_503);
        {
            let max_ms = self.args.max_503_secs * 1e3;
            let slowest = cut_503.map_or(0.0, |s| s.max);
            checks.push(check(
                "the outage was answered with 503 database_unavailable, quickly",
                cut_503.is_some() && slowest <= max_ms,
                match cut_503 {
                    Some(s) => format!("{} (limit {max_ms:.0} ms)", s.brief(" ms")),
                    None => "no 503 during the outage: did the cut reach the server?".to_owned(),
                },
            ));
            let recovered_after = self
                .worker_logs
                .iter()
                .flat_map(|l| &l.changes)
                .filter(|c| c.started >= to)
                .map(|c| (c.started + c.latency).duration_since(to))
                .min();
            checks.push(check(
                "changes succeeded again within 30 s of the restore",
                recovered_after.is_some_and(|d| d <= Duration::from_secs(30)),
                match recovered_after {
                    Some(d) => format!(
                        "first 2xx change {:.1} s after the restore",
                        d.as_secs_f64()
                    ),
                    None => "no 2xx change after the restore".to_owned(),
                },
            ));
            let outage = Outage {
                secs: to.duration_since(from).as_secs_f64(),
                latencies_503: in_cut_503,
                other: in_cut_other,
                recovered_after,
            };
            (by_key, Some(outage))
        }
    }

    fn check_server(&self, checks: &mut Vec<Check>) {
        checks.push(check(
            "the server reports no open session after every client closed",
            self.open_sessions == Some(0.0),
            match self.open_sessions {
                Some(n) => format!("nextup_ws_sessions{{tenant=\"{SLUG}\"}} = {n}"),
                None => "metric not readable".to_owned(),
            },
        ));
        checks.push(check(
            "SIGTERM: the server exits with status 0",
            matches!(self.exit, Ok(Some(0))),
            match &self.exit {
                Ok(code) => format!("exit status {code:?}"),
                Err(e) => format!("{e:#}"),
            },
        ));
        let (baseline, _, after) = self.rss;
        let growth = mib(after) - mib(baseline);
        if let Some(limit) = self.args.max_rss_growth_mib {
            checks.push(check(
                "RSS after the run is within the allowed growth",
                growth <= limit,
                format!("+{growth:.1} MiB (limit {limit} MiB)"),
            ));
        }
    }

    /// Runs the checks, prints the summary and the JSON line; whether every check passed.
    pub fn print(self) -> bool {
        let final_seq = self.final_seq;
        let mut checks = Vec::new();
        let totals = self.check_sessions(&mut checks);
        self.check_log(&mut checks);
        let ok_latencies = self.check_changes(&mut checks);
        let (by_key, outage) = self.check_errors(&mut checks);
        self.check_server(&mut checks);
        let session_count = self.sessions.len();
        let recorded = ok_latencies.len();
        let (baseline, peak, after) = self.rss;
        let growth = mib(after) - mib(baseline);

        let requests: u64 = self.worker_logs.iter().map(|l| l.requests).sum();
        let nothing_waiting: u64 = self.worker_logs.iter().map(|l| l.nothing_waiting).sum();
        let reconnects = totals.connections.saturating_sub(session_count as u64);
        let passed = checks.iter().all(|c| c.passed);
        let ok = Summary::of_millis(&ok_latencies);

        println!();
        println!(
            "soak: {} — {:.1} min{}, final seq {final_seq}",
            if passed { "PASS" } else { "FAIL" },
            self.ran_for.as_secs_f64() / 60.0,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        println!(
            "  changes: {final_seq} in the log; {recorded} answered 2xx of {requests} requests ({nothing_waiting} call-next with nobody waiting)"
        );
        if let Some(ok) = ok {
            println!("  2xx latency: {}", ok.brief(" ms"));
        }
        println!("  errors: {by_key:?}");
        println!(
            "  sessions: {session_count} ({} operator), {} frames, {} ticket_updates, {reconnects} reconnects",
            self.args.operator_sessions.min(session_count),
            totals.frames,
            totals.ticket_updates
        );
        println!("  handshake failures: {:?}", totals.handshake_failures);
        println!("  connection ends: {:?}", totals.ends);
        let cut_503 = outage
            .as_ref()
            .and_then(|o| Summary::of_millis(&o.latencies_503));
        if let Some(outage) = &outage {
            println!(
                "  outage: {:.1} s; 503s: {}; other failures in it: {:?}; event-log poll failures: {:?}",
                outage.secs,
                cut_503.map_or("none".to_owned(), |s| s.brief(" ms")),
                outage.other,
                self.log.poll_failures
            );
        }
        println!(
            "  RSS: baseline {:.1} MiB, peak {:.1} MiB, after {:.1} MiB ({growth:+.1} MiB)",
            mib(baseline),
            mib(peak),
            mib(after)
        );
        println!(
            "  server log: {} ERROR and {} WARN lines ({})",
            self.server_log.0,
            self.server_log.1,
            self.server_log.2.display()
        );
        for c in &checks {
            println!(
                "  [{}] {}: {}",
                if c.passed { " ok " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        let summary = json!({
            "tool": "soak",
            "passed": passed,
            "minutes": self.ran_for.as_secs_f64() / 60.0,
            "interrupted": self.interrupted,
            "final_seq": final_seq,
            "requests": requests,
            "changes_2xx": recorded,
            "latency_2xx_ms": ok,
            "errors": by_key,
            "sessions": session_count,
            "frames": totals.frames,
            "ticket_updates": totals.ticket_updates,
            "reconnects": reconnects,
            "snapshots_on_resume": totals.snapshots_on_resume,
            "handshake_failures": totals.handshake_failures,
            "connection_ends": totals.ends,
            "outage": outage.as_ref().map(|o| json!({
                "secs": o.secs,
                "count_503": o.latencies_503.len(),
                "latency_503_ms": cut_503,
                "other_failures": o.other,
                "recovered_after_secs": o.recovered_after.map(|d| d.as_secs_f64()),
            })),
            "rss_kib": {"baseline": baseline, "peak": peak, "after": after},
            "server_log": {"errors": self.server_log.0, "warnings": self.server_log.1},
            "checks": checks.iter().map(|c| json!({
                "name": c.name, "passed": c.passed, "detail": c.detail
            })).collect::<Vec<_>>(),
        });
        println!("{summary}");
        passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(seq: u64, ticket: Uuid) -> Frame {
        Frame {
            at: Instant::now(),
            kind: FrameKind::TicketUpdate,
            seq: Some(seq),
            ticket: Some(ticket),
            action: Some(ChangeAction::Issued),
            hello_seq: None,
        }
    }

    fn log_of(tickets: &[Uuid]) -> EventLog {
        EventLog {
            changes: tickets.iter().map(|t| (*t, ChangeAction::Issued)).collect(),
            ..EventLog::default()
        }
    }

    #[test]
    fn delivery_counts_missing_duplicated_reordered_and_different_changes() {
        let t: Vec<Uuid> = (1..=4u128).map(Uuid::from_u128).collect();
        let log = log_of(&t);

        let exact: Vec<Frame> = (1..=4).map(|s| update(s, t[s as usize - 1])).collect();
        let d = delivery(&exact, 0, 4, &log);
        assert_eq!(
            (d.missing, d.duplicates, d.out_of_order, d.beyond),
            (0, 0, 0, 0)
        );
        assert_eq!(d.content_mismatches, 0);

        let gap = [update(1, t[0]), update(2, t[1]), update(4, t[3])];
        let d = delivery(&gap, 0, 4, &log);
        assert_eq!((d.missing, d.first_missing), (1, Some(3)));

        let twice = [
            update(1, t[0]),
            update(2, t[1]),
            update(2, t[1]),
            update(3, t[2]),
        ];
        let d = delivery(&twice, 0, 3, &log);
        assert_eq!((d.duplicates, d.out_of_order, d.missing), (1, 0, 0));

        let swapped = [update(2, t[1]), update(1, t[0])];
        let d = delivery(&swapped, 0, 2, &log);
        assert_eq!((d.duplicates, d.out_of_order, d.missing), (0, 1, 0));

        let wrong = [update(1, t[3])];
        assert_eq!(delivery(&wrong, 0, 1, &log).content_mismatches, 1);
        assert_eq!(delivery(&exact, 0, 3, &log).beyond, 1);
    }
}
