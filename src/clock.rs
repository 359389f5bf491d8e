//! The time source. Production uses the system clock; tests use a [`ShiftedClock`] to
//! cross a tenant's local midnight without waiting for it.

use std::sync::Mutex;

use chrono::{DateTime, Duration, SubsecRound, Utc};

pub trait Clock: Send + Sync + 'static {
    /// The current time in microseconds, the precision PostgreSQL stores: a time sent to
    /// clients before it was stored reads the same as after.
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
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
        let offset = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (Utc::now() + offset).trunc_subsecs(6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    #[test]
    fn clocks_tick_in_microseconds() {
        assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
        let shifted = ShiftedClock::default();
        shifted.jump_to(Utc::now() + Duration::nanoseconds(123_456_789));
        assert_eq!(shifted.now().nanosecond() % 1_000, 0);
    }
}
