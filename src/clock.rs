//! The time source. Production uses the system clock; tests use a [`ShiftedClock`] to
//! cross a tenant's local midnight without waiting for it.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved by an adjustable offset: time keeps flowing (so issue order is
/// kept), but can jump to any moment.
#[derive(Default)]
pub struct ShiftedClock(Mutex<Duration>);

impl ShiftedClock {
    /// From now on the clock reads `moment`, and keeps running from there.
    pub fn jump_to(&self, moment: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = moment - Utc::now();
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
            + *self
                .0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
