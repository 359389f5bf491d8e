//! Turns at a tenant's seq: the serialised end of a change, taken in the process first.
//!
//! Taking the seq locks the tenant's sequence row until commit. When many requests of one
//! tenant reach that point together, PostgreSQL queues them on the row lock, and every
//! commit wakes every waiter to race for the row again: with 32 writers most of the
//! database's CPU went to that herd. Each process therefore lines its own writers up here,
//! so at most one of them per tenant waits on the row; the others wait in a cheap async
//! queue, in arrival order. Other processes still meet at the row lock, which stays the
//! authority.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::domain::ids::TenantId;

/// One queue per tenant that has written since the process started.
#[derive(Default)]
pub struct SeqTurns {
    by_tenant: Mutex<HashMap<TenantId, Arc<AsyncMutex<()>>>>,
}

/// This request's turn at its tenant's seq; the next writer goes when it is dropped.
pub type Turn = OwnedMutexGuard<()>;

impl SeqTurns {
    /// Waits until no other request of this process is in the tenant's serialised section.
    pub async fn take(&self, tenant: TenantId) -> Turn {
        let queue = self
            .by_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant)
            .or_default()
            .clone();
        queue.lock_owned().await
    }
}
