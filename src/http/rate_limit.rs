//! Rate limits (GCRA via `governor`): anonymous ticket issuing per client address and per
//! tenant, and login attempts per client address and per username (against password
//! guessing). Each answers 429 with `Retry-After`. Also: who the client is, behind trusted
//! reverse proxies, and which key an address is counted under.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// What per-address limits and caps count a client address under: an IPv4 address as
/// itself, an IPv6 address by its /64 prefix (the usual size of one subscriber's network,
/// whose 2^64 addresses one client can rotate through at will), and an IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 peer) as its IPv4
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(address: IpAddr) -> Self {
        const PREFIX_64: u128 = !0 << 64;
        Self(match address {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & PREFIX_64)),
            },
        })
    }
}

/// The key of the request's client address (see [`client_address`]).
pub fn client_key(req: &HttpRequest, trusted_proxies: &[IpNet]) -> AddressKey {
    AddressKey::of(client_address(req, trusted_proxies))
}

/// Walks the chain right to left (each proxy appends the address it heard from) and stops
/// at the first hop we do not trust. A malformed entry stops the walk at the proxy that
/// passed it on, so garbage can never choose the address.
fn resolve_client<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
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

/// Every rate limit of a process.
pub struct RateLimits {
    pub issue_by_address: KeyedLimit<AddressKey>,
    /// Keyed by tenant slug: all addresses together (a flood from many addresses).
    pub issue_by_tenant: KeyedLimit<String>,
    pub login_by_address: KeyedLimit<AddressKey>,
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
    fn ipv6_addresses_are_counted_by_their_64_and_ipv4_ones_by_themselves() {
        let key = |raw: &str| AddressKey::of(ip(raw));
        // (case, address, the address that names its key)
        let cases = [
            ("IPv4", "198.51.100.7", "198.51.100.7"),
            (
                "IPv6 host bits dropped",
                "2001:db8:1:2:3:4:5:6",
                "2001:db8:1:2::",
            ),
            ("IPv6 /64 itself", "2001:db8:1:2::", "2001:db8:1:2::"),
            (
                "IPv6 all ones",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff:ffff::",
            ),
            ("IPv4-mapped", "::ffff:198.51.100.7", "198.51.100.7"),
            ("IPv6 loopback", "::1", "::"),
        ];
        for (case, address, expected) in cases {
            assert_eq!(key(address), AddressKey(ip(expected)), "{case}");
        }
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("198.51.100.7"), key("198.51.100.8"));
        assert_eq!(key("::ffff:198.51.100.7"), key("198.51.100.7"));
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
