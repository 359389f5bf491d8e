//! `serve --demo`: the tenant `demo`, ready to try.

use anyhow::Context;
use chrono::{DateTime, Timelike, Utc};
use sqlx::PgPool;

use crate::auth::kiosk_key;
use crate::auth::password::hash_password;
use crate::db;
use crate::domain::business_day::{OpeningHours, Range, WEEKDAYS};
use crate::domain::ids::{DisplayName, ServiceCode, Slug, Username};
use crate::domain::role::Role;
use crate::domain::settings::Settings;

pub const SLUG: &str = "demo";

const SERVICES: [(&str, &str); 3] = [("A", "General"), ("E", "Exams"), ("P", "Pharmacy")];
const COUNTERS: [&str; 3] = ["Desk 1", "Desk 2", "Desk 3"];
/// Demo logins; printed at start-up, so they are not secrets.
const USERS: [(&str, &str, Role); 3] = [
    ("admin", "demo-admin", Role::Admin),
    ("ana", "demo-operator", Role::Operator),
    ("bruno", "demo-operator", Role::Operator),
];

pub struct DemoLogins {
    created: bool,
    kiosk_key: String,
}

/// Creates the demo tenant unless it exists (then leaves it as it is).
pub async fn seed(pool: &PgPool) -> anyhow::Result<DemoLogins> {
    let created = create(pool).await?;
    let kiosk_key = db::kiosk_keys::kiosk_key(&mut *pool.acquire().await?, SLUG)
        .await?
        .context("the demo tenant has no kiosk key")?;
    Ok(DemoLogins { created, kiosk_key })
}

/// Whether the tenant was created (rather than found).
async fn create(pool: &PgPool) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    let slug = Slug::parse(SLUG)?;
    if db::tenants::find_tenant(&mut tx, SLUG).await?.is_some() {
        return Ok(false);
    }
    let name = DisplayName::parse("name", "Demo Clinic")?;
    let tenant = match db::tenants::insert_tenant(&mut tx, &slug, &name, chrono_tz::UTC).await {
        // Another process seeded it at the same moment.
        Err(db::Error::Conflict(db::Conflict::SlugTaken)) => return Ok(false),
        other => other.context("creating the demo tenant")?,
    };
    for (code, name) in SERVICES {
        let code = ServiceCode::parse(code)?;
        let name = DisplayName::parse("name", name)?;
        db::services::insert_service(&mut tx, tenant.id, &code, &name).await?;
    }
    for name in COUNTERS {
        db::counters::insert_counter(&mut tx, tenant.id, &DisplayName::parse("name", name)?)
            .await?;
    }
    for (username, password, role) in USERS {
        let hash = hash_password(password)?;
        db::users::insert_user(&mut tx, tenant.id, &Username::parse(username)?, &hash, role)
            .await?;
    }
    let settings = Settings {
        opening_hours: Some(hours_around(Utc::now())),
        ..Settings::default()
    };
    db::tenants::update_settings(&mut tx, tenant.id, tenant.timezone, &settings).await?;
    tx.commit().await?;
    Ok(true)
}

/// The demo's opening hours: every day from the start of the hour before `now` (UTC, the
/// demo's zone) to the start of the tenth hour after `now`'s, at most to midnight, so that a
/// new demo is open and a visitor can see real hours at work (the kiosk's "closed, opens at
/// …" outside them).
fn hours_around(now: DateTime<Utc>) -> OpeningHours {
    let hour = u16::try_from(now.hour()).unwrap_or(0);
    let start = hour.saturating_sub(1) * 60;
    let end = ((hour + 10) * 60).min(24 * 60);
    let range = Range::new(start, end).map(|r| vec![r]).unwrap_or_default();
    OpeningHours::from_days(&WEEKDAYS.map(|(_, day)| (day, range.clone())))
}

impl DemoLogins {
    pub fn print(&self, base_url: &str) {
        let state = if self.created {
            "created"
        } else {
            "already there, left as it was"
        };
        println!();
        println!("demo tenant '{SLUG}' {state}");
        println!("  logins (tenant '{SLUG}'):");
        for (username, password, role) in USERS {
            println!("    {role:<8} {username} / {password}");
        }
        println!("  pages:");
        // With its key, so that the kiosk is not limited like an anonymous client.
        println!(
            "    kiosk     {base_url}{}",
            kiosk_key::page_path(SLUG, &self.kiosk_key)
        );
        println!("    display   {base_url}/t/{SLUG}/display  (one room: ?services=A,E)");
        println!("    operator  {base_url}/t/{SLUG}/operator");
        println!("    queue API {base_url}/api/v1/tenants/{SLUG}/queue");
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::business_day::BusinessDay;
    use chrono::TimeZone;

    #[test]
    fn a_new_demo_is_open_whatever_the_hour() {
        for hour in 0..24 {
            let now = Utc.with_ymd_and_hms(2026, 12, 7, hour, 30, 0).unwrap();
            let hours = hours_around(now);
            let day = BusinessDay {
                tz: chrono_tz::UTC,
                hours: Some(&hours),
            };
            assert!(day.is_open(now), "created at {hour}:30");
        }
    }
}
