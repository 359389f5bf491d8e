//! The rules of changing a user's account (contract §9): which changes refuse the user's
//! earlier tokens, and the one that would leave a tenant without an active admin.

use super::role::Role;

/// What an account change may touch: a user's role and whether they may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub role: Role,
    pub active: bool,
}

impl Standing {
    pub fn is_active_admin(self) -> bool {
        self.active && self.role == Role::Admin
    }
}

/// A change to an account, as asked: only the fields given change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub role: Option<Role>,
    pub active: Option<bool>,
    /// A new password is set (its value is none of these rules' business).
    pub password: bool,
}

/// Why an account change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant would have no active admin left, and nobody could administer it.
    LastAdmin,
}

/// The outcome of a change that may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub after: Standing,
    /// Every token issued to the user before the change is to be refused: they were
    /// deactivated, their role changed (tokens carry the role), or their password did.
    pub revokes_tokens: bool,
}

impl AccountChange {
    pub fn is_empty(self) -> bool {
        self == Self::default()
    }

    /// Decides the change of an account now standing `before`, in a tenant that has
    /// `other_active_admins` active admins besides this user.
    pub fn decide(self, before: Standing, other_active_admins: u64) -> Result<Decision, Refusal> {
        let after = Standing {
            role: self.role.unwrap_or(before.role),
            active: self.active.unwrap_or(before.active),
        };
        if before.is_active_admin() && !after.is_active_admin() && other_active_admins == 0 {
            return Err(Refusal::LastAdmin);
        }
        let revokes_tokens =
            self.password || after.role != before.role || (before.active && !after.active);
        Ok(Decision {
            after,
            revokes_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE_ADMIN: Standing = Standing {
        role: Role::Admin,
        active: true,
    };
    const ACTIVE_OPERATOR: Standing = Standing {
        role: Role::Operator,
        active: true,
    };
    const INACTIVE_OPERATOR: Standing = Standing {
        role: Role::Operator,
        active: false,
    };

    fn change(role: Option<Role>, active: Option<bool>, password: bool) -> AccountChange {
        AccountChange {
            role,
            active,
            password,
        }
    }

    #[test]
    fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
        for asked in [
            change(Some(Role::Operator), None, false),
            change(None, Some(false), false),
            change(Some(Role::Operator), Some(false), true),
        ] {
            assert_eq!(
                asked.decide(ACTIVE_ADMIN, 0),
                Err(Refusal::LastAdmin),
                "{asked:?}"
            );
            assert!(asked.decide(ACTIVE_ADMIN, 1).is_ok(), "{asked:?}");
        }
    }

    #[test]
    fn the_last_admin_may_still_change_their_password_or_stay_as_they_are() {
        for asked in [
            change(None, None, true),
            change(Some(Role::Admin), Some(true), false),
            AccountChange::default(),
        ] {
            assert!(asked.decide(ACTIVE_ADMIN, 0).is_ok(), "{asked:?}");
        }
    }

    #[test]
    fn changes_that_do_not_touch_an_active_admin_need_no_other_admin() {
        let promote = change(Some(Role::Admin), None, false);
        assert_eq!(
            promote.decide(ACTIVE_OPERATOR, 0).unwrap().after,
            ACTIVE_ADMIN
        );
        let deactivate = change(None, Some(false), false);
        assert!(deactivate.decide(ACTIVE_OPERATOR, 0).is_ok());
        // An inactive admin is no admin: demoting one leaves the count as it was.
        let inactive_admin = Standing {
            role: Role::Admin,
            active: false,
        };
        assert!(
            change(Some(Role::Operator), None, false)
                .decide(inactive_admin, 0)
                .is_ok()
        );
    }

    #[test]
    fn deactivation_role_and_password_changes_revoke_tokens() {
        let revokes = |asked: AccountChange, before: Standing| {
            asked.decide(before, 1).unwrap().revokes_tokens
        };
        assert!(revokes(change(None, Some(false), false), ACTIVE_OPERATOR));
        assert!(revokes(
            change(Some(Role::Admin), None, false),
            ACTIVE_OPERATOR
        ));
        assert!(revokes(change(None, None, true), ACTIVE_OPERATOR));
        // Nothing that leaves the role and the access as they were revokes anything.
        assert!(!revokes(
            change(Some(Role::Operator), None, false),
            ACTIVE_OPERATOR
        ));
        assert!(!revokes(change(None, Some(true), false), ACTIVE_OPERATOR));
        assert!(!revokes(AccountChange::default(), ACTIVE_OPERATOR));
        // Reactivating gives back access; the tokens were revoked when it was taken away.
        assert!(!revokes(change(None, Some(true), false), INACTIVE_OPERATOR));
        assert!(!revokes(
            change(None, Some(false), false),
            INACTIVE_OPERATOR
        ));
    }
}
