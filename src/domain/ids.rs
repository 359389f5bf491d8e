//! Typed identifiers and validated names. Constructors parse; once a value exists it is valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, MixedScript};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
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

/// A login name: 1 to 64 characters of letters and digits, all letters of one script, and
/// `.`, `_`, `-` and `@`; kept in Unicode NFC, otherwise as entered. Two names are the same
/// user when their [`fold_username`] keys are equal (`Ana`, `ana` and a decomposed `ána`
/// with `ána`).
///
/// One script per name, because a Cyrillic `а` among Latin letters makes a name that looks
/// like another user's (`аna` and `ana`): UTS #39 mixed-script detection refuses those. The
/// letters must also be allowed in identifiers by UTS #39's General Security Profile, which
/// leaves out compatibility forms (fullwidth `ａ`, ligatures, superscripts) and obsolete or
/// invisible characters. A name written wholly in a look-alike script (all-Cyrillic `аое`)
/// is still one script and is accepted: users are created by the tenant's admins, and telling
/// such names apart would refuse real names in those scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let name: String = raw.nfc().collect();
        let chars = name.chars().count();
        let allowed = |c: char| {
            matches!(c, '.' | '_' | '-' | '@') || (c.is_alphanumeric() && c.identifier_allowed())
        };
        if chars == 0 || chars > Self::MAX_CHARS || !name.chars().all(allowed) {
            return Err(InvalidName(format!(
                "'{raw}' is not a valid username: use 1 to {} letters, digits, '.', '_', '-' or '@'",
                Self::MAX_CHARS
            )));
        }
        if !name.as_str().is_single_script() {
            return Err(InvalidName(format!(
                "'{raw}' mixes letters of different scripts (such as Latin and Cyrillic), \
                 which makes it look like another name: use letters of one script"
            )));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key two names must not share in a tenant, and logins look users up by.
    pub fn key(&self) -> String {
        fold_username(&self.0)
    }
}

/// A username as compared: NFC, then lower case (Unicode's, not a locale's), so `ANA`,
/// `Ana` and `ana` are one name. Login folds what was typed the same way.
pub fn fold_username(raw: &str) -> String {
    let lower = raw.nfc().collect::<String>().to_lowercase();
    // Lower-casing may leave a sequence NFC would compose: compose it again.
    lower.nfc().collect()
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
    fn usernames_are_kept_composed_and_compared_folded() {
        let decomposed = Username::parse("Jose\u{301}").unwrap();
        assert_eq!(decomposed.as_str(), "Jos\u{e9}", "stored in NFC, case kept");
        assert_eq!(decomposed.key(), "jos\u{e9}");
        for same in ["ana", "Ana", "ANA", "aNa"] {
            assert_eq!(Username::parse(same).unwrap().key(), "ana", "{same}");
        }
        assert_eq!(fold_username("JOSE\u{301}"), "jos\u{e9}");
        assert_eq!(
            fold_username("\u{410}\u{41d}\u{41d}\u{410}"),
            "\u{430}\u{43d}\u{43d}\u{430}"
        );
        assert_eq!(
            Username::parse(&"\u{e9}".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
        assert!(Username::parse(&"\u{e9}".repeat(65)).is_err());
    }

    #[test]
    fn usernames_keep_to_one_script_and_plain_characters() {
        for ok in [
            "jos\u{e9}.silva",
            "\u{430}\u{43d}\u{43d}\u{430}",     // анна, all Cyrillic
            "\u{3b1}\u{3bd}\u{3bd}\u{3b1}_2",   // αννα_2, all Greek
            "\u{7530}\u{4e2d}\u{3055}\u{3093}", // 田中さん: Han and Hiragana are one (Japanese)
            "desk-3@clinic",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "\u{430}na",    // Cyrillic а with Latin na
            "p\u{430}ypal", // the same inside a name
            "ana\u{3b1}",   // Latin and Greek
            "\u{ff41}na",   // fullwidth ａ
            "\u{fb01}le",   // the ligature ﬁ
            "ana\u{b2}",    // superscript two
            "ana\u{200b}",  // zero-width space
            "ana\u{0}",
            "ana silva",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let err = Username::parse("\u{430}na").unwrap_err();
        assert!(err.0.contains("scripts"), "{err}");
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
