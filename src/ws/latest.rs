//! The latest seq of each tenant as this process knows it, so that a client polling
//! `GET …/queue` with a current `If-None-Match` gets its 304 without touching the database.
//!
//! Every committed change reaches this process: its own through `publish`, the others'
//! through the listener's NOTIFY. That only holds while the listener is connected, so the
//! board is trusted only then, and is wiped on every (re)connection: changes made while it
//! was away were never announced. A value learnt from a database read is kept only if no
//! wipe happened since that read began (`epoch`), or it could hide such a change.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use crate::domain::ids::TenantId;

#[derive(Default)]
pub struct LatestSeqs {
    state: RwLock<Board>,
}

#[derive(Default)]
struct Board {
    /// Whether every commit is being announced to this process right now.
    live: bool,
    /// Bumped on every wipe.
    epoch: u64,
    tenants: HashMap<String, TenantId>,
    latest: HashMap<TenantId, i64>,
}

/// Taken before a database read whose seq is then [`LatestSeqs::learn`]t.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(u64);

impl LatestSeqs {
    /// The tenant's latest seq, when this process is sure of it.
    pub fn known(&self, slug: &str) -> Option<i64> {
        let board = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !board.live {
            return None;
        }
        board.latest.get(board.tenants.get(slug)?).copied()
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.read().epoch)
    }

    /// A seq read from the database (in a read that began at `epoch`).
    pub fn learn(&self, slug: &str, tenant: TenantId, seq: i64, epoch: Epoch) {
        let mut board = self.write();
        if board.epoch != epoch.0 || !board.live {
            return;
        }
        board.tenants.entry(slug.to_owned()).or_insert(tenant);
        raise(&mut board.latest, tenant, seq);
    }

    /// A change committed (announced by this process or another).
    pub fn committed(&self, tenant: TenantId, seq: i64) {
        let mut board = self.write();
        if board.live {
            raise(&mut board.latest, tenant, seq);
        }
    }

    /// The listener is connected (`true`) or lost (`false`); either way, forget all seqs.
    pub fn set_live(&self, live: bool) {
        let mut board = self.write();
        board.live = live;
        board.epoch += 1;
        board.latest.clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Board> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Board> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn raise(latest: &mut HashMap<TenantId, i64>, tenant: TenantId, seq: i64) {
    let known = latest.entry(tenant).or_insert(seq);
    *known = (*known).max(seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_known_until_the_listener_is_live_and_a_read_taught_it() {
        let board = LatestSeqs::default();
        let clinic = TenantId::new();
        board.learn("clinic", clinic, 5, board.epoch());
        assert_eq!(board.known("clinic"), None, "not live: not learnt");

        board.set_live(true);
        assert_eq!(board.known("clinic"), None);
        board.learn("clinic", clinic, 5, board.epoch());
        assert_eq!(board.known("clinic"), Some(5));
        board.committed(clinic, 6);
        assert_eq!(board.known("clinic"), Some(6));
        board.learn("clinic", clinic, 5, board.epoch());
        assert_eq!(
            board.known("clinic"),
            Some(6),
            "a late read never lowers it"
        );
    }

    #[test]
    fn a_lost_listener_forgets_everything_and_stale_reads_are_not_learnt() {
        let board = LatestSeqs::default();
        let clinic = TenantId::new();
        board.set_live(true);
        board.learn("clinic", clinic, 5, board.epoch());

        let read_began = board.epoch();
        board.set_live(false);
        assert_eq!(board.known("clinic"), None);
        board.set_live(true);
        assert_eq!(
            board.known("clinic"),
            None,
            "changes while away were never announced"
        );
        board.learn("clinic", clinic, 5, read_began);
        assert_eq!(
            board.known("clinic"),
            None,
            "read before the wipe: not trusted"
        );
        board.learn("clinic", clinic, 7, board.epoch());
        assert_eq!(board.known("clinic"), Some(7));
    }
}
