//! Typed identifiers and validated names. Constructors parse; once a value exists it is valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn get(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A tenant: one site or organisation.
    TenantId
);
id_type!(
    /// A service (queue) of a tenant.
    ServiceId
);
id_type!(
    /// A counter (desk) of a tenant.
    CounterId
);
id_type!(
    /// A user (operator or admin) of a tenant.
    UserId
);
id_type!(
    /// A ticket.
    TicketId
);

/// Why a name given by a client was refused; the message is shown to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidName(pub String);

/// A tenant's URL name: lowercase letters, digits and inner hyphens, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if raw.is_empty()
            || raw.len() > 64
            || !ok_chars
            || raw.starts_with('-')
            || raw.ends_with('-')
        {
            return Err(InvalidName(format!(
                "'{raw}' is not a valid slug: use 1 to 64 lowercase letters, digits and inner hyphens"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Slug {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A service's ticket prefix: 1 to 4 letters, stored upper-case (`a` becomes `A`).
/// Letters only, so that the digits of a ticket code are never ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceCode(String);

impl ServiceCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let code = raw.trim().to_ascii_uppercase();
        if code.is_empty() || code.len() > 4 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidName(format!(
                "'{raw}' is not a valid service code: use 1 to 4 letters, like A or EX"
            )));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A human-facing name (tenant, service, counter): trimmed, 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(what: &str, raw: &str) -> Result<Self, InvalidName> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || name.chars().any(char::is_control) {
            return Err(InvalidName(format!(
                "{what} must be 1 to {} characters, without control characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login name: 1 to 64 characters of letters, digits, `.`, `_`, `-` and `@`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !ok {
            return Err(InvalidName(format!(
                "'{raw}' is not a valid username: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password accepted for a new user: 8 to 1024 bytes. Never printed.
pub struct NewPassword(String);

impl NewPassword {
    pub fn parse(raw: String) -> Result<Self, InvalidName> {
        if raw.chars().count() < 8 || raw.len() > 1024 {
            return Err(InvalidName(
                "password must be at least 8 characters (and at most 1024 bytes)".into(),
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lowercase_digits_and_inner_hyphens_only() {
        for ok in ["demo", "clinic-3", "a", "0", &"x".repeat(64)] {
            assert!(Slug::parse(ok).is_ok(), "{ok} should be a slug");
        }
        for bad in [
            "",
            "Demo",
            "-demo",
            "demo-",
            "de mo",
            "dé",
            "a/b",
            "demo\0",
            "de\u{1}mo",
            "demo\n",
            &"x".repeat(65),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad} should not be a slug");
        }
    }

    #[test]
    fn service_codes_are_one_to_four_letters_upper_cased() {
        assert_eq!(ServiceCode::parse("a").unwrap().as_str(), "A");
        assert_eq!(ServiceCode::parse(" ex ").unwrap().as_str(), "EX");
        for bad in ["", "A1", "ABCDE", "Ä", "A-"] {
            assert!(ServiceCode::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("name", "  Desk 3 ").unwrap().as_str(),
            "Desk 3"
        );
        assert!(DisplayName::parse("name", "   ").is_err());
        assert!(DisplayName::parse("name", "a\nb").is_err());
        assert!(DisplayName::parse("name", &"é".repeat(100)).is_ok());
        assert!(DisplayName::parse("name", &"é".repeat(101)).is_err());
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(Username::parse("ana.silva@desk").is_ok());
        assert!(Username::parse("ana silva").is_err());
        assert!(Username::parse("").is_err());
        assert!(NewPassword::parse("short".into()).is_err());
        assert!(NewPassword::parse("long enough".into()).is_ok());
        assert_eq!(
            format!("{:?}", NewPassword::parse("secret-pass".into()).unwrap()),
            "NewPassword(..)"
        );
    }
}
