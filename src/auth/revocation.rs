//! Revoked tokens (contract §9): a token is refused once its user has moved to a later
//! token generation (deactivated, or their role or password changed).
//!
//! Checking costs no database round trip in the common case: each process keeps the
//! generation of every user whose token it has checked, and learns of each revocation
//! through a notification (`nextup_tokens`, sent at commit by a trigger on `users`, heard
//! by the event feed's listener) — at once on the process that made the change, within a
//! moment on the others. What is kept is trusted only while the listener hears the
//! database: while it cannot, every check reads the user's generation from the database,
//! and when it hears again it forgets what it kept (it may have missed a change) and reads
//! the revocations it missed, so that their WebSocket sessions are closed too.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::PgPool;

use super::token::Claims;
use crate::db;
use crate::domain::ids::UserId;
use crate::error::ApiError;

#[derive(Default)]
pub struct TokenGenerations {
    /// The highest generation seen of each user checked or revoked.
    known: RwLock<HashMap<UserId, i32>>,
    /// Whether the listener hears the database, so that `known` is kept up to date.
    live: AtomicBool,
    /// Counts the times the listener started hearing again: a generation read from the
    /// database during an earlier period may be older than a change missed since.
    heard_since: AtomicU64,
}

impl TokenGenerations {
    /// Refuses the token if its user has moved on to a later generation (or is gone).
    pub async fn check(&self, db: &PgPool, claims: &Claims) -> Result<(), ApiError> {
        let current = match self.trusted(claims.sub) {
            Some(generation) => generation,
            None => {
                let period = self.heard_since.load(Ordering::Acquire);
                let mut conn = db.acquire().await?;
                let generation =
                    db::users::token_generation(&mut conn, claims.tenant_id, claims.sub)
                        .await?
                        .ok_or(ApiError::TokenRevoked)?;
                drop(conn);
                self.remember(claims.sub, generation, period);
                generation
            }
        };
        if claims.generation < current {
            return Err(ApiError::TokenRevoked);
        }
        Ok(())
    }

    /// Whether tokens of `generation` are revoked, as far as this process knows without
    /// asking the database.
    pub fn is_known_revoked(&self, user: UserId, generation: i32) -> bool {
        self.read()
            .get(&user)
            .is_some_and(|&known| generation < known)
    }

    /// The user's tokens before `generation` are revoked (a change of this process, or one
    /// announced by the database).
    pub fn revoked(&self, user: UserId, generation: i32) {
        let mut known = self.write();
        let entry = known.entry(user).or_insert(generation);
        *entry = (*entry).max(generation);
    }

    /// The listener lost the database: nothing kept can be trusted until it hears again.
    pub fn feed_lost(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// The listener hears the database again (or for the first time): what is kept may
    /// have missed changes, so it is forgotten; from here on every change is announced.
    pub fn feed_heard(&self) {
        let mut known = self.write();
        known.clear();
        self.heard_since.fetch_add(1, Ordering::AcqRel);
        self.live.store(true, Ordering::Release);
    }

    fn trusted(&self, user: UserId) -> Option<i32> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.read().get(&user).copied()
    }

    /// Keeps a generation read from the database, if no change can have been missed since
    /// the read began (the listener heard throughout). Generations only grow, so a read
    /// that raced with an announced change keeps the higher one.
    fn remember(&self, user: UserId, generation: i32, period: u64) {
        let mut known = self.write();
        if !self.live.load(Ordering::Acquire) || self.heard_since.load(Ordering::Acquire) != period
        {
            return;
        }
        let entry = known.entry(user).or_insert(generation);
        *entry = (*entry).max(generation);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<UserId, i32>> {
        self.known.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, i32>> {
        self.known.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_trusted_until_the_feed_is_heard() {
        let generations = TokenGenerations::default();
        let user = UserId::new();
        generations.remember(user, 2, 0);
        assert_eq!(generations.trusted(user), None);
        generations.feed_heard();
        let period = generations.heard_since.load(Ordering::Acquire);
        generations.remember(user, 2, period);
        assert_eq!(generations.trusted(user), Some(2));
        generations.feed_lost();
        assert_eq!(generations.trusted(user), None);
    }

    #[test]
    fn hearing_again_forgets_what_was_kept_and_reads_from_before_are_dropped() {
        let generations = TokenGenerations::default();
        let user = UserId::new();
        generations.feed_heard();
        let before = generations.heard_since.load(Ordering::Acquire);
        generations.remember(user, 1, before);
        generations.feed_lost();
        generations.feed_heard();
        assert_eq!(generations.trusted(user), None);
        // A read begun before the listener heard again may predate a missed change.
        generations.remember(user, 1, before);
        assert_eq!(generations.trusted(user), None);
    }

    #[test]
    fn generations_only_grow() {
        let generations = TokenGenerations::default();
        let user = UserId::new();
        generations.feed_heard();
        generations.revoked(user, 3);
        let period = generations.heard_since.load(Ordering::Acquire);
        // A read that began before the revocation was announced comes back with less.
        generations.remember(user, 2, period);
        assert_eq!(generations.trusted(user), Some(3));
        generations.revoked(user, 1);
        assert_eq!(generations.trusted(user), Some(3));
        assert!(generations.is_known_revoked(user, 2));
        assert!(!generations.is_known_revoked(user, 3));
        assert!(!generations.is_known_revoked(UserId::new(), 0));
    }
}
