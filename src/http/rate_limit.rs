//! Rate limits (GCRA via `governor`): anonymous ticket issuing per client address and per
//! tenant, and login attempts per client address. Each answers 429 with `Retry-After`.
//! Failed logins are counted on their own (see [`LoginFailures`]): refused per username
//! and address, slowed per username. Also: who the client is, behind trusted reverse
//! proxies, and which key an address is counted under.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::domain::ids::fold_username;
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
        self.limiter
            .check_key(key)
            .map_err(|not_until| rate_limited(not_until.wait_time_from(self.clock.now())))
    }
}

/// 429 with the wait in whole seconds, rounded up.
fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
    }
}

/// Recent failures per key, as a leaky bucket: one failure is forgotten every `interval`,
/// and at most `most` are remembered (so an attack is forgotten within `most × interval`
/// of its end). governor answers only "allow one more, and count it"; the login limits
/// also need to read a count without adding to it, and to forget a key.
pub struct RecentFailures<K: Hash + Eq + Clone> {
    interval: Duration,
    most: u32,
    /// When each key's count is back to zero.
    clear_at: Mutex<HashMap<K, Instant>>,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> RecentFailures<K> {
    /// Forgets `per_minute` failures a minute; remembers at most `most`.
    pub fn new(per_minute: u32, most: u32) -> Self {
        Self {
            interval: Duration::from_secs(60) / per_minute.max(1),
            most: most.max(1),
            clear_at: Mutex::default(),
            calls: AtomicU64::new(0),
        }
    }

    fn entries(&self, now: Instant) -> std::sync::MutexGuard<'_, HashMap<K, Instant>> {
        let mut entries = self.clear_at.lock().unwrap_or_else(PoisonError::into_inner);
        if self.calls.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            entries.retain(|_, clear_at| *clear_at > now);
        }
        entries
    }

    fn count_in(&self, clear_at: Option<&Instant>, now: Instant) -> u32 {
        let left = clear_at.map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
        left.as_nanos().div_ceil(self.interval.as_nanos().max(1)) as u32
    }

    /// How many failures `key` has had recently.
    pub fn count(&self, key: &K, now: Instant) -> u32 {
        self.count_in(self.entries(now).get(key), now)
    }

    /// Counts one failure.
    pub fn record(&self, key: K, now: Instant) {
        let mut entries = self.entries(now);
        self.add_one(entries.entry(key).or_insert(now), now);
    }

    fn add_one(&self, clear_at: &mut Instant, now: Instant) {
        *clear_at = ((*clear_at).max(now) + self.interval).min(now + self.interval * self.most);
    }

    /// When `key` has `limit` failures or more: how long until it has fewer.
    fn wait_in(&self, clear_at: Option<&Instant>, limit: u32, now: Instant) -> Option<Duration> {
        let left = clear_at?.saturating_duration_since(now);
        (self.count_in(clear_at, now) >= limit)
            .then(|| left - self.interval * limit.saturating_sub(1))
    }

    /// Counts one failure unless `key` already has `limit`; then says how long until it
    /// has fewer. Atomic, so that concurrent attempts cannot all slip under the limit.
    pub fn record_below(&self, key: K, limit: u32, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries(now);
        let clear_at = entries.entry(key).or_insert(now);
        if let Some(wait) = self.wait_in(Some(clear_at), limit, now) {
            return Err(wait);
        }
        self.add_one(clear_at, now);
        Ok(())
    }

    pub fn forget(&self, key: &K) {
        self.clear_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// A username of a tenant as login finds it, whether or not it exists: folded as usernames
/// are compared (`Ana` and `ana` are one account, and share its limits), and both parts cut
/// to 64 characters (the longest slug and username there can be), so that keys stay small.
pub type LoginName = (String, String);

pub fn login_name(tenant: &str, username: &str) -> LoginName {
    let cut = |s: &str| s.chars().take(64).collect::<String>();
    (cut(tenant), fold_username(&cut(username)))
}

/// Failed logins. Someone who does not know a password must not be able to keep its owner
/// out, so failures are refused only per username *and* client address: a guesser is
/// refused after `allowed` failures, while the owner, from an address that has not failed,
/// is never refused. Across all addresses a username's failures only slow its logins down
/// (a guesser with many addresses), by up to `slowdown_max` per attempt.
pub struct LoginFailures {
    from_address: RecentFailures<(LoginName, AddressKey)>,
    anywhere: RecentFailures<LoginName>,
    allowed: u32,
    slowdown_max: Duration,
}

impl LoginFailures {
    /// `allowed` failures a minute (and at once) per username and address; the same
    /// number from anywhere before logins of the username are slowed.
    pub fn new(allowed: u32, slowdown_max: Duration) -> Self {
        let allowed = allowed.max(1);
        Self {
            from_address: RecentFailures::new(allowed, allowed),
            // Twice the allowance: enough to reach the longest slow-down.
            anywhere: RecentFailures::new(allowed, allowed.saturating_mul(2)),
            allowed,
            slowdown_max,
        }
    }

    /// Before the password is checked: 429 when this address has used up its failures for
    /// this username (a right password does not help, or guessing would go on), else how
    /// long to hold the attempt. The attempt counts as a failure until [`Self::succeeded`].
    pub fn begin(&self, name: &LoginName, address: AddressKey) -> Result<Duration, ApiError> {
        let now = Instant::now();
        self.from_address
            .record_below((name.clone(), address), self.allowed, now)
            .map_err(rate_limited)?;
        let recent = self.anywhere.count(name, now);
        Ok(slowdown(recent, self.allowed, self.slowdown_max))
    }

    /// The password was wrong (or the user unknown).
    pub fn failed(&self, name: LoginName) {
        self.anywhere.record(name, Instant::now());
    }

    /// The password was right: this address starts afresh for this username. The failures
    /// from elsewhere stay: they are someone else's.
    pub fn succeeded(&self, name: LoginName, address: AddressKey) {
        self.from_address.forget(&(name, address));
    }
}

/// How long to hold a login of a username that had `recent` failures from anywhere: not at
/// all within the allowance, then `max / allowed` more for each failure beyond it, up to
/// `max`.
pub fn slowdown(recent: u32, allowed: u32, max: Duration) -> Duration {
    let allowed = allowed.max(1);
    if recent < allowed {
        return Duration::ZERO;
    }
    let beyond = recent - allowed + 1;
    (max.saturating_mul(beyond) / allowed).min(max)
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
    pub issue_by_address: KeyedLimit<AddressKey>,
    /// Keyed by tenant slug: all addresses together (a flood from many addresses).
    pub issue_by_tenant: KeyedLimit<String>,
    /// Keyed by tenant slug: the tenant's kiosks (requests with its kiosk key), which
    /// count against neither of the above.
    pub issue_by_kiosk: KeyedLimit<String>,
    /// Every attempt, right or wrong.
    pub login_by_address: KeyedLimit<AddressKey>,
    pub login_failures: LoginFailures,
}

impl RateLimits {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            issue_by_address: KeyedLimit::new(config.issue_rate_per_minute, config.issue_burst),
            issue_by_tenant: KeyedLimit::new(
                config.issue_tenant_rate_per_minute,
                config.issue_tenant_burst,
            ),
            issue_by_kiosk: KeyedLimit::new(
                config.issue_tenant_rate_per_minute,
                config.issue_tenant_burst,
            ),
            login_by_address: KeyedLimit::new(
                config.login_rate_per_minute,
                config.login_rate_per_minute,
            ),
            login_failures: LoginFailures::new(
                config.login_user_rate_per_minute,
                config.login_slowdown_max,
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
    fn failures_are_forgotten_one_per_interval_and_remembered_up_to_a_cap() {
        let failures = RecentFailures::new(6, 3); // one forgotten every 10 s
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let key = "bruno";
        assert_eq!(failures.count(&key, t0), 0);
        for _ in 0..5 {
            failures.record(key, t0);
        }
        assert_eq!(failures.count(&key, t0), 3, "capped at most");
        assert_eq!(failures.count(&key, at(1)), 3);
        assert_eq!(failures.count(&key, at(10)), 2);
        assert_eq!(failures.count(&key, at(29)), 1);
        assert_eq!(failures.count(&key, at(30)), 0);
        assert_eq!(failures.count(&"ana", t0), 0, "keys are separate");
        failures.forget(&key);
        assert_eq!(failures.count(&key, t0), 0);
    }

    #[test]
    fn record_below_refuses_at_the_limit_and_says_until_when() {
        let failures = RecentFailures::new(6, 3);
        let t0 = Instant::now();
        assert!(failures.record_below("k", 2, t0).is_ok());
        assert!(failures.record_below("k", 2, t0).is_ok());
        // Two recorded (clear at 20 s): below two again once one is forgotten, at 10 s.
        assert_eq!(
            failures.record_below("k", 2, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(failures.count(&"k", t0), 2, "a refusal is not counted");
        assert!(
            failures
                .record_below("k", 2, t0 + Duration::from_secs(10))
                .is_ok()
        );
    }

    #[test]
    fn logins_are_slowed_beyond_the_allowance_up_to_the_most() {
        let max = Duration::from_secs(3);
        let cases = [
            (0, 0),
            (4, 0),
            (5, 600),
            (6, 1200),
            (9, 3000),
            (10, 3000),
            (500, 3000),
        ];
        for (recent, millis) in cases {
            assert_eq!(
                slowdown(recent, 5, max),
                Duration::from_millis(millis),
                "{recent} recent failures"
            );
        }
        assert_eq!(
            slowdown(1_000_000, 1_000_000, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_guesser_is_refused_per_address_while_the_owner_gets_in() {
        let failures = LoginFailures::new(2, Duration::from_secs(2));
        let bruno = login_name("clinic", "bruno");
        let guesser = AddressKey::of(ip("198.51.100.1"));
        let owner = AddressKey::of(ip("203.0.113.9"));
        for _ in 0..2 {
            assert_eq!(failures.begin(&bruno, guesser).unwrap(), Duration::ZERO);
            failures.failed(bruno.clone());
        }
        assert!(matches!(
            failures.begin(&bruno, guesser),
            Err(ApiError::RateLimited {
                retry_after_secs: 30
            })
        ));
        // The owner is slowed (two failures from anywhere), not refused; getting in does
        // not forgive the guesser.
        assert_eq!(
            failures.begin(&bruno, owner).unwrap(),
            Duration::from_secs(1)
        );
        failures.succeeded(bruno.clone(), owner);
        assert!(failures.begin(&bruno, guesser).is_err());
        // Another username from the guesser's address is not refused.
        assert!(
            failures
                .begin(&login_name("clinic", "ana"), guesser)
                .is_ok()
        );
    }

    #[test]
    fn login_names_are_cut_to_the_longest_possible() {
        let long = "x".repeat(70_000);
        let (tenant, username) = login_name(&long, &long);
        assert_eq!((tenant.len(), username.len()), (64, 64));
        assert_eq!(login_name("clinic", "ANA"), login_name("clinic", "ana"));
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
