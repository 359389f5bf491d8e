//! Ticket numbering: a service's numbers restart at 1 every day at local midnight of the
//! tenant's time zone, and a ticket's code is the service code followed by at least three
//! digits (`A001`, …, `A999`, `A1000`).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::ids::ServiceCode;

/// The tenant-local calendar day that `now` falls on: the day a ticket's number belongs to.
pub fn service_day(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The code shown to people for the `number`-th ticket of a service on its day.
pub fn ticket_code(service: &ServiceCode, number: u32) -> String {
    format!("{}{:03}", service.as_str(), number)
}

/// Parses an IANA time-zone name such as `America/Sao_Paulo`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("'{name}' is not an IANA time zone name (like Europe/Lisbon or UTC)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn codes_have_at_least_three_digits() {
        let a = ServiceCode::parse("A").unwrap();
        assert_eq!(ticket_code(&a, 1), "A001");
        assert_eq!(ticket_code(&a, 42), "A042");
        assert_eq!(ticket_code(&a, 999), "A999");
        assert_eq!(ticket_code(&a, 1000), "A1000");
        assert_eq!(ticket_code(&ServiceCode::parse("EX").unwrap(), 7), "EX007");
    }

    #[test]
    fn the_day_turns_at_local_midnight_not_at_utc_midnight() {
        let sao_paulo = parse_timezone("America/Sao_Paulo").unwrap(); // UTC-3, no DST since 2019
        // 02:59 UTC is still 23:59 of the previous day in São Paulo.
        assert_eq!(
            service_day(utc(2026, 3, 10, 2, 59), sao_paulo),
            NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
        );
        assert_eq!(
            service_day(utc(2026, 3, 10, 3, 0), sao_paulo),
            NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
        );
        let tokyo = parse_timezone("Asia/Tokyo").unwrap(); // UTC+9
        assert_eq!(
            service_day(utc(2026, 3, 9, 15, 0), tokyo),
            NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
        );
    }

    #[test]
    fn daylight_saving_changes_do_not_move_the_day_boundary() {
        let lisbon = parse_timezone("Europe/Lisbon").unwrap();
        // 2026-03-29: clocks go from 01:00 to 02:00 local. Midnight is unaffected.
        assert_eq!(
            service_day(utc(2026, 3, 28, 23, 59), lisbon),
            NaiveDate::from_ymd_opt(2026, 3, 28).unwrap()
        );
        assert_eq!(
            service_day(utc(2026, 3, 29, 0, 0), lisbon),
            NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()
        );
        // Summer time (UTC+1): 23:30 UTC is already the next day locally.
        assert_eq!(
            service_day(utc(2026, 7, 1, 23, 30), lisbon),
            NaiveDate::from_ymd_opt(2026, 7, 2).unwrap()
        );
    }

    #[test]
    fn time_zone_names_are_checked() {
        assert!(parse_timezone("UTC").is_ok());
        assert!(parse_timezone("America/Sao_Paulo").is_ok());
        let err = parse_timezone("Mars/Olympus").unwrap_err();
        assert!(err.contains("Mars/Olympus"), "{err}");
    }
}
