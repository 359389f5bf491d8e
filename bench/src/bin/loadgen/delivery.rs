//! What the sessions received, against the changes that were made.
//!
//! A session keeps, per `ticket_update`, its `seq` and when it was read ([`Record`]). After
//! a measured stretch, the changes are known with their `seq` and send time
//! ([`ChangeRef`]); each session's records are then judged against its tenant's changes: a
//! latency per (change × session) pair, missing, duplicated and out-of-order changes, and
//! frames for changes this run did not make. Results add up per group (one group per
//! server process), across sessions and across the processes that hold them.

use serde::{Deserialize, Serialize};

use nextup_bench::histogram::{Histogram, SparseHistogram};

/// One `ticket_update` as a session read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub seq: u32,
    /// Microseconds after the start of the measured stretch (the window epoch).
    pub at_us: u32,
}

/// A change made by this run: its place in the run's list, its `seq` in its tenant, and
/// when its request was sent ([`nextup_bench::sys::mono_ns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    pub index: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// The changes of one tenant, by `seq`.
#[derive(Debug, Default)]
pub struct TenantIndex {
    first: u64,
    /// Slot `seq - first`: the change with that seq, if this run made it.
    slots: Vec<Option<ChangeRef>>,
    expected: usize,
}

impl TenantIndex {
    pub fn new(changes: &[ChangeRef]) -> Self {
        let Some(first) = changes.iter().map(|c| c.seq).min() else {
            return Self::default();
        };
        let last = changes.iter().map(|c| c.seq).max().unwrap_or(first);
        let mut slots = vec![None; (last - first + 1) as usize];
        let mut expected = 0;
        for change in changes {
            let slot = &mut slots[(change.seq - first) as usize];
            if slot.is_none() {
                expected += 1;
            }
            *slot = Some(*change);
        }
        Self {
            first,
            slots,
            expected,
        }
    }

    fn slot(&self, seq: u64) -> Option<(usize, ChangeRef)> {
        let i = seq.checked_sub(self.first)? as usize;
        Some((i, (*self.slots.get(i)?)?))
    }
}

/// The results of one group, as a worker process sends them (and as they add up).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupDelivery {
    pub group: u32,
    pub sessions: u64,
    /// (change × session) pairs that should have arrived.
    pub pairs: u64,
    /// Send → receive, in microseconds, over every pair that arrived.
    pub latency: SparseHistogram,
    /// Per change (by index): how many sessions received it...
    pub received: Vec<u32>,
    /// ...and the latest of them, in microseconds after the send.
    pub last_us: Vec<u64>,
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// `ticket_update`s for changes this run did not make (another writer, or a frame
    /// that arrived after its stretch ended).
    pub unmatched: u64,
}

impl GroupDelivery {
    pub fn merge(&mut self, other: &GroupDelivery) {
        let mut latency = Histogram::from_sparse(&self.latency);
        latency.merge(&Histogram::from_sparse(&other.latency));
        self.latency = latency.to_sparse();
        if self.received.len() < other.received.len() {
            self.received.resize(other.received.len(), 0);
            self.last_us.resize(other.received.len(), 0);
        }
        for (i, (&n, &last)) in other.received.iter().zip(&other.last_us).enumerate() {
            self.received[i] += n;
            self.last_us[i] = self.last_us[i].max(last);
        }
        self.sessions += other.sessions;
        self.pairs += other.pairs;
        self.missing += other.missing;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.unmatched += other.unmatched;
    }

    /// Per change that reached at least one session: the time until the last one had it,
    /// in microseconds.
    pub fn lasts(&self) -> impl Iterator<Item = u64> + '_ {
        self.received
            .iter()
            .zip(&self.last_us)
            .filter(|(n, _)| **n > 0)
            .map(|(_, last)| *last)
    }
}

/// Accumulates one group's sessions inside a process.
pub struct GroupAcc {
    wire: GroupDelivery,
    latency: Histogram,
    seen: Vec<bool>,
}

impl GroupAcc {
    pub fn new(group: u32, changes: usize) -> Self {
        Self {
            wire: GroupDelivery {
                group,
                received: vec![0; changes],
                last_us: vec![0; changes],
                ..GroupDelivery::default()
            },
            latency: Histogram::default(),
            seen: Vec::new(),
        }
    }

    /// Judges one session's records (in arrival order) against its tenant's changes
    /// (`None`: its tenant had none). `epoch_ns` is when the records' clock started.
    pub fn add_session(&mut self, records: &[Record], epoch_ns: u64, index: Option<&TenantIndex>) {
        let w = &mut self.wire;
        w.sessions += 1;
        let Some(index) = index else {
            w.unmatched += records.len() as u64;
            return;
        };
        w.pairs += index.expected as u64;
        self.seen.clear();
        self.seen.resize(index.slots.len(), false);
        let mut highest = None;
        let mut arrived = 0;
        for record in records {
            let seq = u64::from(record.seq);
            let Some((slot, change)) = index.slot(seq) else {
                w.unmatched += 1;
                highest = highest.max(Some(seq));
                continue;
            };
            if self.seen[slot] {
                w.duplicated += 1;
                continue;
            }
            self.seen[slot] = true;
            arrived += 1;
            if highest.is_some_and(|h| seq < h) {
                w.out_of_order += 1;
            }
            highest = highest.max(Some(seq));
            let received_ns = epoch_ns + u64::from(record.at_us) * 1000;
            let delay_us = received_ns.saturating_sub(change.sent_ns) / 1000;
            self.latency.record(delay_us);
            let i = change.index as usize;
            if i < w.received.len() {
                w.received[i] += 1;
                w.last_us[i] = w.last_us[i].max(delay_us);
            }
        }
        w.missing += (index.expected - arrived) as u64;
    }

    pub fn finish(mut self) -> GroupDelivery {
        self.wire.latency = self.latency.to_sparse();
        self.wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 1_000_000_000;

    /// Changes 0..n of one tenant with seqs from `first`, sent 1 ms apart from the epoch.
    fn changes(first: u64, n: u32) -> Vec<ChangeRef> {
        (0..n)
            .map(|i| ChangeRef {
                index: i,
                seq: first + u64::from(i),
                sent_ns: EPOCH + u64::from(i) * 1_000_000,
            })
            .collect()
    }

    /// Seq `seq` read `delay_ms` after change `seq - first` was sent.
    fn at(seq: u32, first: u32, delay_ms: u32) -> Record {
        Record {
            seq,
            at_us: (seq - first) * 1000 + delay_ms * 1000,
        }
    }

    #[test]
    fn a_clean_session_gives_a_latency_per_change_and_nothing_else() {
        let index = TenantIndex::new(&changes(11, 3));
        let mut acc = GroupAcc::new(0, 3);
        acc.add_session(
            &[at(11, 11, 2), at(12, 11, 3), at(13, 11, 4)],
            EPOCH,
            Some(&index),
        );
        acc.add_session(
            &[at(11, 11, 5), at(12, 11, 1), at(13, 11, 1)],
            EPOCH,
            Some(&index),
        );
        let d = acc.finish();
        assert_eq!((d.sessions, d.pairs), (2, 6));
        assert_eq!(
            (d.missing, d.duplicated, d.out_of_order, d.unmatched),
            (0, 0, 0, 0)
        );
        assert_eq!(d.received, vec![2, 2, 2]);
        assert_eq!(d.last_us, vec![5000, 3000, 4000]);
        let latency = Histogram::from_sparse(&d.latency);
        assert_eq!(latency.count(), 6);
        assert_eq!(latency.max(), Some(5000));
        assert_eq!(d.lasts().collect::<Vec<_>>(), vec![5000, 3000, 4000]);
    }

    #[test]
    fn missing_duplicated_out_of_order_and_foreign_frames_are_counted() {
        let index = TenantIndex::new(&changes(1, 4));
        // (what, records, (missing, duplicated, out of order, unmatched))
        type Case = (&'static str, Vec<Record>, (u64, u64, u64, u64));
        let cases: Vec<Case> = vec![
            (
                "one missing",
                vec![at(1, 1, 1), at(2, 1, 1), at(4, 1, 1)],
                (1, 0, 0, 0),
            ),
            (
                "a duplicate",
                vec![
                    at(1, 1, 1),
                    at(2, 1, 1),
                    at(2, 1, 2),
                    at(3, 1, 1),
                    at(4, 1, 1),
                ],
                (0, 1, 0, 0),
            ),
            (
                "swapped",
                vec![at(1, 1, 1), at(3, 1, 1), at(2, 1, 2), at(4, 1, 1)],
                (0, 0, 1, 0),
            ),
            (
                "a change of another writer",
                vec![
                    at(1, 1, 1),
                    at(2, 1, 1),
                    at(3, 1, 1),
                    at(4, 1, 1),
                    at(5, 1, 1),
                ],
                (0, 0, 0, 1),
            ),
            ("nothing at all", vec![], (4, 0, 0, 0)),
        ];
        for (what, records, expected) in cases {
            let mut acc = GroupAcc::new(0, 4);
            acc.add_session(&records, EPOCH, Some(&index));
            let d = acc.finish();
            assert_eq!(
                (d.missing, d.duplicated, d.out_of_order, d.unmatched),
                expected,
                "{what}"
            );
            assert_eq!(d.pairs, 4, "{what}");
        }
    }

    #[test]
    fn gaps_in_the_changes_of_this_run_are_not_expected() {
        // Seq 2 was made by someone else: sessions get it, but it is not measured.
        let mut made = changes(1, 3);
        made[1].seq = 3;
        made[2].seq = 4;
        let index = TenantIndex::new(&made);
        let mut acc = GroupAcc::new(0, 3);
        acc.add_session(
            &[at(1, 1, 1), at(2, 1, 1), at(3, 1, 1), at(4, 1, 1)],
            EPOCH,
            Some(&index),
        );
        let d = acc.finish();
        assert_eq!((d.pairs, d.missing, d.unmatched), (3, 0, 1));
    }

    #[test]
    fn groups_from_several_processes_add_up() {
        let index = TenantIndex::new(&changes(1, 2));
        let mut a = GroupAcc::new(1, 2);
        a.add_session(&[at(1, 1, 3), at(2, 1, 1)], EPOCH, Some(&index));
        let mut b = GroupAcc::new(1, 2);
        b.add_session(&[at(1, 1, 1)], EPOCH, Some(&index));
        b.add_session(&[], EPOCH, None);
        let mut total = a.finish();
        total.merge(&b.finish());
        assert_eq!((total.sessions, total.pairs, total.missing), (3, 4, 1));
        assert_eq!(total.received, vec![2, 1]);
        assert_eq!(total.last_us, vec![3000, 1000]);
        assert_eq!(Histogram::from_sparse(&total.latency).count(), 3);
        let mut empty = GroupDelivery::default();
        empty.merge(&total);
        assert_eq!(empty.received, total.received);
    }
}
