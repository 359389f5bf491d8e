//! Rate limits (GCRA via `governor`): anonymous ticket issuing per client address, and
//! login attempts per client address and per username (against password guessing).
//! Each answers 429 with `Retry-After`.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Keys seen are forgotten once full again; checked every this many calls.
const FORGET_EVERY: u64 = 10_000;

pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    clock: DefaultClock,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_minute` on average, with bursts of up to `burst`.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            calls: AtomicU64::new(0),
        }
    }

    /// Counts one use by `key`; 429 with the wait when `key` is over its quota.
    pub fn check(&self, key: &K) -> Result<(), ApiError> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            // Keys whose quota is full again carry no information: keep memory bounded.
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
            }
        })
    }
}

/// The address a request came from (the TCP peer).
pub fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Every rate limit of a process.
pub struct RateLimits {
    pub issue_by_address: KeyedLimit<IpAddr>,
    pub login_by_address: KeyedLimit<IpAddr>,
    /// Keyed by (tenant slug, username), whether or not they exist.
    pub login_by_username: KeyedLimit<(String, String)>,
}

impl RateLimits {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            issue_by_address: KeyedLimit::new(config.issue_rate_per_minute, config.issue_burst),
            login_by_address: KeyedLimit::new(
                config.login_rate_per_minute,
                config.login_rate_per_minute,
            ),
            login_by_username: KeyedLimit::new(
                config.login_user_rate_per_minute,
                config.login_user_rate_per_minute,
            ),
        }
    }
}
