//! Caps on live WebSocket sessions per client address (an IPv6 client by its /64, see
//! [`AddressKey`]) and per tenant, so that one script cannot hold the memory and fan-out
//! work of thousands of sessions.
//!
//! A handshake takes a [`SessionPermit`] before anything else is done for it; the session
//! actor owns the permit, so every way a session ends gives its place back.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::ids::TenantId;
use crate::error::{ApiError, SessionLimit};
use crate::http::rate_limit::AddressKey;

pub struct SessionCaps {
    per_address: usize,
    per_tenant: usize,
    open: Mutex<OpenSessions>,
}

#[derive(Default)]
struct OpenSessions {
    by_address: HashMap<AddressKey, usize>,
    by_tenant: HashMap<TenantId, usize>,
}

/// One admitted session's place under both caps, given back on drop.
pub struct SessionPermit {
    caps: Arc<SessionCaps>,
    address: AddressKey,
    tenant: TenantId,
}

impl SessionCaps {
    pub fn new(per_address: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            per_address,
            per_tenant,
            open: Mutex::default(),
        })
    }

    /// Admits one more session from `address` to `tenant`, or says which cap it hits.
    pub fn admit(
        self: &Arc<Self>,
        address: IpAddr,
        tenant: TenantId,
    ) -> Result<SessionPermit, ApiError> {
        let address = AddressKey::of(address);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.by_address.get(&address).copied().unwrap_or(0) >= self.per_address {
            return Err(ApiError::TooManySessions(SessionLimit::PerAddress));
        }
        if open.by_tenant.get(&tenant).copied().unwrap_or(0) >= self.per_tenant {
            return Err(ApiError::TooManySessions(SessionLimit::PerTenant));
        }
        *open.by_address.entry(address).or_default() += 1;
        *open.by_tenant.entry(tenant).or_default() += 1;
        Ok(SessionPermit {
            caps: self.clone(),
            address,
            tenant,
        })
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        release(&mut open.by_address, &self.address);
        release(&mut open.by_tenant, &self.tenant);
    }
}

/// One fewer; keys at zero are removed so the maps only hold live addresses and tenants.
fn release<K: Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cap_is_enforced_and_dropping_a_permit_frees_its_place() {
        let caps = SessionCaps::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let (clinic, office) = (TenantId::new(), TenantId::new());

        let first = caps.admit(a, clinic).unwrap();
        let _second = caps.admit(a, clinic).unwrap();
        assert!(matches!(
            caps.admit(a, office),
            Err(ApiError::TooManySessions(SessionLimit::PerAddress))
        ));
        let _third = caps.admit(b, clinic).unwrap();
        assert!(matches!(
            caps.admit(b, clinic),
            Err(ApiError::TooManySessions(SessionLimit::PerTenant))
        ));
        assert!(
            caps.admit(b, office).is_ok(),
            "another tenant is not affected"
        );

        drop(first);
        assert!(
            caps.admit(a, office).is_ok(),
            "the address has a place again"
        );
        let _again = caps.admit(b, clinic).unwrap();
    }

    #[test]
    fn the_addresses_of_one_ipv6_64_share_a_cap() {
        let caps = SessionCaps::new(2, 10);
        let tenant = TenantId::new();
        let ip = |raw: &str| -> IpAddr { raw.parse().unwrap() };
        let _first = caps.admit(ip("2001:db8:1:2::1"), tenant).unwrap();
        let _second = caps.admit(ip("2001:db8:1:2::2"), tenant).unwrap();
        assert!(matches!(
            caps.admit(ip("2001:db8:1:2:ffff::3"), tenant),
            Err(ApiError::TooManySessions(SessionLimit::PerAddress))
        ));
        assert!(caps.admit(ip("2001:db8:1:3::1"), tenant).is_ok());
    }

    #[test]
    fn nothing_is_kept_for_addresses_and_tenants_without_sessions() {
        let caps = SessionCaps::new(10, 10);
        let permits: Vec<_> = (0..5)
            .map(|i| {
                caps.admit(IpAddr::from([192, 0, 2, i]), TenantId::new())
                    .unwrap()
            })
            .collect();
        drop(permits);
        let open = caps.open.lock().unwrap();
        assert!(open.by_address.is_empty() && open.by_tenant.is_empty());
    }
}
