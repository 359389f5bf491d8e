//! Kiosk keys: a secret per tenant (stored in the database, shown and rotated with
//! `nextup tenant kiosk-key`) that the tenant's kiosk pages send as `X-Kiosk-Key` when
//! they issue a ticket. It proves only "this is one of our kiosks", so it grants nothing
//! but a quota of its own for anonymous issuing (see `http::tickets`).

/// The request header that carries the key.
pub const HEADER: &str = "x-kiosk-key";

/// The kiosk page of a tenant with its key, which the page takes from the URL fragment
/// (never sent to a server, so never in an access log) and keeps.
pub fn page_path(slug: &str, key: &str) -> String {
    format!("/t/{slug}/totem#kiosk_key={key}")
}

/// Whether `presented` is the tenant's key, compared in constant time, so that the time
/// of a refusal says nothing about how much of a guess was right. (The length is no
/// secret: every key has 64 hex digits.)
pub fn matches(presented: &[u8], stored: &str) -> bool {
    use subtle::ConstantTimeEq;
    presented.ct_eq(stored.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        let key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(matches(key.as_bytes(), key));
        for wrong in [
            "",
            "0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        ] {
            assert!(!matches(wrong.as_bytes(), key), "{wrong}");
        }
    }
}
