//! Rate limits (GCRA via `governor`): anonymous ticket issuing per client address and per
//! tenant, and login attempts per client address and per username (against password
//! guessing). Each answers 429 with `Retry-After`. Also: who the client is, behind trusted
//! reverse proxies.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

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

/// The address a request came from: the TCP peer, unless the peer is one of
/// `TRUSTED_PROXIES`; then the nearest address in `X-Forwarded-For` that is not a trusted
/// proxy. Anyone can write `X-Forwarded-For`, so it is only read from proxies we run.
pub fn client_address(req: &HttpRequest, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarded = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    resolve_client(peer, forwarded, trusted_proxies)
}

/// Walks the chain right to left (each proxy appends the address it heard from) and stops
/// at the first hop we do not trust. A malformed entry stops the walk at the proxy that
/// passed it on, so garbage can never choose the address.
fn resolve_client<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| is_trusted_proxy(ip, trusted_proxies);
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// Whether `ip` is one of `TRUSTED_PROXIES`.
fn is_trusted_proxy(ip: &IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(ip))
}

/// Whether the request's TCP peer is one of `TRUSTED_PROXIES`: only then may the headers
/// that proxies write (`X-Forwarded-Host`, `X-Forwarded-Proto`, `Forwarded`) be believed.
pub fn from_trusted_proxy(req: &HttpRequest, trusted_proxies: &[IpNet]) -> bool {
    req.peer_addr()
        .is_some_and(|peer| is_trusted_proxy(&peer.ip(), trusted_proxies))
}

/// Every rate limit of a process.
pub struct RateLimits {
    pub issue_by_address: KeyedLimit<IpAddr>,
    /// Keyed by tenant slug: all addresses together (a flood from many addresses).
    pub issue_by_tenant: KeyedLimit<String>,
    pub login_by_address: KeyedLimit<IpAddr>,
    /// Keyed by (tenant slug, username), whether or not they exist.
    pub login_by_username: KeyedLimit<(String, String)>,
}

impl RateLimits {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            issue_by_address: KeyedLimit::new(config.issue_rate_per_minute, config.issue_burst),
            issue_by_tenant: KeyedLimit::new(
                config.issue_tenant_rate_per_minute,
                config.issue_tenant_burst,
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // (case, TCP peer, X-Forwarded-For lines, trusted proxies, expected client)
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a [IpNet], &'a str);
        let cases: [Case; 8] = [
            (
                "no proxies configured",
                "203.0.113.9",
                &["198.51.100.1"],
                &[],
                "203.0.113.9",
            ),
            (
                "peer is not a proxy",
                "203.0.113.9",
                &["198.51.100.1"],
                &proxies,
                "203.0.113.9",
            ),
            (
                "one trusted hop",
                "10.0.0.2",
                &["198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "spoofed entries left of the real client are ignored",
                "10.0.0.2",
                &["1.2.3.4, 198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "chained trusted proxies, several header lines",
                "10.0.0.2",
                &["198.51.100.1, 10.0.0.9", "10.0.0.5"],
                &proxies,
                "198.51.100.1",
            ),
            (
                "proxy sent no header",
                "10.0.0.2",
                &[],
                &proxies,
                "10.0.0.2",
            ),
            (
                "garbage stops at the proxy",
                "10.0.0.2",
                &["not-an-ip"],
                &proxies,
                "10.0.0.2",
            ),
            (
                "only proxies in the chain",
                "10.0.0.2",
                &["10.0.0.7"],
                &proxies,
                "10.0.0.7",
            ),
        ];
        for (case, peer, header, trusted, expected) in cases {
            assert_eq!(
                resolve_client(ip(peer), header.iter().copied(), trusted),
                ip(expected),
                "{case}"
            );
        }
    }
}
