//! What the audit log records (contract §9): the actions, who did them, and to what.

use crate::domain::ids::UserId;

/// An action recorded in the audit log, stored and answered by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    LoginFailed,
    ServiceCreated,
    ServiceUpdated,
    CounterCreated,
    CounterUpdated,
    UserCreated,
    UserUpdated,
    SettingsUpdated,
    DayClosed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::ServiceCreated => "service_created",
            Action::ServiceUpdated => "service_updated",
            Action::CounterCreated => "counter_created",
            Action::CounterUpdated => "counter_updated",
            Action::UserCreated => "user_created",
            Action::UserUpdated => "user_updated",
            Action::SettingsUpdated => "settings_updated",
            Action::DayClosed => "day_closed",
        }
    }
}

/// The user who acted, with the username of that moment.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: UserId,
    pub username: String,
}

/// What an entry is about, with its name of that moment.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    pub id: uuid::Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Service,
    Counter,
    User,
    /// The tenant itself: its settings, its day.
    Tenant,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Service => "service",
            TargetKind::Counter => "counter",
            TargetKind::User => "user",
            TargetKind::Tenant => "tenant",
        }
    }
}

/// The limit of `GET …/audit` entries: 100 unless asked, at most [`MAX_LIMIT`].
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Reads `?limit=`: a whole number from 1 to [`MAX_LIMIT`].
pub fn parse_limit(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit must be a whole number from 1 to {MAX_LIMIT} (the default is {DEFAULT_LIMIT})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_defaults_to_100_and_is_bounded() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "-1", "ten", "", "1.5", "99999999999"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
