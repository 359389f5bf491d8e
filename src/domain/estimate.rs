//! Wait estimates (`estimated_wait_secs`).
//!
//! The estimate for a waiting ticket is `ahead × handle time ÷ desks`, where
//! - handle time is the mean time from call to finish of the service's last
//!   [`HISTORY_TICKETS`] finished tickets within [`HISTORY_WINDOW_DAYS`] days, or
//!   [`DEFAULT_HANDLE_SECS`] when the service has no such history yet;
//! - desks is the number of distinct counters that called a ticket of the service in the
//!   last [`DESK_WINDOW_MINS`] minutes, at least 1.
//!
//! A ticket with nobody ahead is next, so its estimate is 0. The estimate for a service
//! (queue summaries) is that of a ticket issued now: everyone waiting is ahead of it.

pub const HISTORY_TICKETS: i64 = 20;
pub const HISTORY_WINDOW_DAYS: i64 = 7;
pub const DESK_WINDOW_MINS: i64 = 60;
pub const DEFAULT_HANDLE_SECS: f64 = 300.0;

/// What the recent history of a service says about its pace.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServicePace {
    /// Mean seconds from call to finish, if the service has recent finished tickets.
    pub mean_handle_secs: Option<f64>,
    /// Distinct counters that recently called tickets of this service.
    pub recent_desks: u32,
}

impl ServicePace {
    pub fn estimated_wait_secs(&self, ahead: u32) -> u32 {
        let handle = self
            .mean_handle_secs
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .unwrap_or(DEFAULT_HANDLE_SECS);
        let desks = f64::from(self.recent_desks.max(1));
        let secs = (f64::from(ahead) * handle / desks).round();
        // Saturate rather than wrap for absurd inputs.
        if secs >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            secs as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_ahead_means_no_wait() {
        assert_eq!(ServicePace::default().estimated_wait_secs(0), 0);
    }

    #[test]
    fn without_history_the_default_handle_time_is_used() {
        let pace = ServicePace::default();
        assert_eq!(pace.estimated_wait_secs(3), 900);
    }

    #[test]
    fn history_and_parallel_desks_shorten_the_wait() {
        let pace = ServicePace {
            mean_handle_secs: Some(120.0),
            recent_desks: 1,
        };
        assert_eq!(pace.estimated_wait_secs(5), 600);
        let two_desks = ServicePace {
            recent_desks: 2,
            ..pace
        };
        assert_eq!(two_desks.estimated_wait_secs(5), 300);
    }

    #[test]
    fn nonsense_history_falls_back_to_the_default() {
        let pace = ServicePace {
            mean_handle_secs: Some(f64::NAN),
            recent_desks: 0,
        };
        assert_eq!(pace.estimated_wait_secs(1), 300);
        let huge = ServicePace {
            mean_handle_secs: Some(1e12),
            recent_desks: 1,
        };
        assert_eq!(huge.estimated_wait_secs(u32::MAX), u32::MAX);
    }
}
