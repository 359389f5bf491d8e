//! The business day of contract §8: opening hours, whether a tenant is open, when it opens,
//! and when its day closes by itself.
//!
//! Opening hours are wall-clock ranges of a weekday in the tenant's time zone. Each range
//! start and end becomes an instant of that day by one rule ([`local_instant`]): a time that
//! happens twice (the hour repeated when clocks go back) is its first occurrence, and a time
//! that does not happen (the hour skipped when clocks go forward) is the first instant after
//! the jump. Every question below is then answered with instants, so the answers agree with
//! each other on DST days too.
//!
//! A day closes by itself at the end of its last opening range, and at local midnight in any
//! case ([`last_close`], [`next_close`]). Which tickets a close ends is decided by their issue
//! time: those issued before the close instant, whenever the close actually runs.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::{Map, Value};

/// The weekdays as the settings name them, Monday first.
pub const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

const MINUTES_PER_DAY: u16 = 24 * 60;

/// One opening range of a day, in minutes after local midnight: `start < end ≤ 24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    start: u16,
    end: u16,
}

impl Range {
    /// A range from `start` to `end` minutes past midnight, or `None` unless `start < end ≤ 1440`.
    pub fn new(start: u16, end: u16) -> Option<Range> {
        (start < end && end <= MINUTES_PER_DAY).then_some(Range { start, end })
    }
}

/// A tenant's opening hours: the ranges of each weekday, sorted and not overlapping. A
/// weekday without ranges is closed all day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpeningHours {
    /// Indexed by `Weekday::num_days_from_monday`.
    days: [Vec<Range>; 7],
}

/// A settings value that is not valid: names the field (`opening_hours.mon[1]`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidSetting {
    pub field: String,
    pub reason: String,
}

impl InvalidSetting {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl OpeningHours {
    /// The hours of a week from its ranges per weekday (for tests and the demo).
    pub fn from_days(days: &[(Weekday, Vec<Range>)]) -> OpeningHours {
        let mut hours = OpeningHours::default();
        for (day, ranges) in days {
            hours.days[day.num_days_from_monday() as usize] = ranges.clone();
        }
        for ranges in &mut hours.days {
            ranges.sort_by_key(|r| r.start);
        }
        hours
    }

    /// Parses the settings' JSON form: an object of weekday → list of `["HH:MM", "HH:MM"]`.
    pub fn from_json(value: &Value) -> Result<OpeningHours, InvalidSetting> {
        const FIELD: &str = "opening_hours";
        let object = value.as_object().ok_or_else(|| {
            InvalidSetting::new(
                FIELD,
                "must be null or an object of weekdays (mon … sun) to lists of [\"HH:MM\", \"HH:MM\"] ranges",
            )
        })?;
        let mut hours = OpeningHours::default();
        for (name, ranges) in object {
            let Some((_, weekday)) = WEEKDAYS.iter().find(|(day, _)| day == name) else {
                return Err(InvalidSetting::new(
                    format!("{FIELD}.{name}"),
                    "is not a weekday: use mon, tue, wed, thu, fri, sat or sun",
                ));
            };
            let field = format!("{FIELD}.{name}");
            let list = ranges.as_array().ok_or_else(|| {
                InvalidSetting::new(&field, "must be a list of [\"HH:MM\", \"HH:MM\"] ranges")
            })?;
            let mut day = Vec::with_capacity(list.len());
            for (i, range) in list.iter().enumerate() {
                day.push(parse_range(range, &format!("{field}[{i}]"))?);
            }
            day.sort_by_key(|r| r.start);
            if let Some(pair) = day.windows(2).find(|pair| pair[1].start < pair[0].end) {
                return Err(InvalidSetting::new(
                    &field,
                    format!(
                        "ranges {} and {} overlap",
                        format_range(pair[0]),
                        format_range(pair[1])
                    ),
                ));
            }
            hours.days[weekday.num_days_from_monday() as usize] = day;
        }
        Ok(hours)
    }

    /// The JSON form, every weekday present (an empty list for a closed day).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, weekday) in WEEKDAYS {
            let ranges = self
                .ranges(weekday)
                .iter()
                .map(|r| Value::from(vec![format_minute(r.start), format_minute(r.end)]))
                .collect();
            object.insert(name.to_owned(), Value::Array(ranges));
        }
        Value::Object(object)
    }

    pub fn ranges(&self, weekday: Weekday) -> &[Range] {
        &self.days[weekday.num_days_from_monday() as usize]
    }

    fn never_open(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }
}

fn parse_range(value: &Value, field: &str) -> Result<Range, InvalidSetting> {
    let shape = || InvalidSetting::new(field, "must be a [\"HH:MM\", \"HH:MM\"] pair");
    let pair = value
        .as_array()
        .filter(|pair| pair.len() == 2)
        .ok_or_else(shape)?;
    let start = pair[0].as_str().ok_or_else(shape)?;
    let end = pair[1].as_str().ok_or_else(shape)?;
    let start = parse_minute(start, false)
        .ok_or_else(|| InvalidSetting::new(field, format!("'{start}' is not a time HH:MM")))?;
    let end = parse_minute(end, true).ok_or_else(|| {
        InvalidSetting::new(field, format!("'{end}' is not a time HH:MM (or 24:00)"))
    })?;
    Range::new(start, end).ok_or_else(|| {
        InvalidSetting::new(
            field,
            format!(
                "starts at {} but ends at {}: a range must start before it ends",
                format_minute(start),
                format_minute(end)
            ),
        )
    })
}

/// `HH:MM` as minutes past midnight; `24:00` only where an end is read.
fn parse_minute(text: &str, end: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn format_minute(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn format_range(range: Range) -> String {
    format!(
        "[{}, {}]",
        format_minute(range.start),
        format_minute(range.end)
    )
}

impl fmt::Display for OpeningHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

/// The instant a tenant-local wall-clock time of `day` happens (see the module's rule for
/// times that happen twice or not at all). `minute` may be 1440, the next day's midnight.
pub fn local_instant(tz: Tz, day: NaiveDate, minute: u16) -> DateTime<Utc> {
    let (day, minute) = if minute >= MINUTES_PER_DAY {
        (day.succ_opt().unwrap_or(day), minute - MINUTES_PER_DAY)
    } else {
        (day, minute)
    };
    let wall = day.and_time(NaiveTime::MIN) + Duration::minutes(i64::from(minute));
    // A skipped time: the first minute after the jump is the jump's instant (every zone
    // jumps on a whole minute). No zone skips more than a day.
    (0..=MINUTES_PER_DAY)
        .find_map(|later| {
            tz.from_local_datetime(&(wall + Duration::minutes(i64::from(later))))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&wall))
}

/// The tenant-local day `now` falls on.
pub fn local_day(tz: Tz, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// When a tenant is open, and when its day closes: its time zone and opening hours (`None`:
/// always open).
#[derive(Debug, Clone, Copy)]
pub struct BusinessDay<'a> {
    pub tz: Tz,
    pub hours: Option<&'a OpeningHours>,
}

impl BusinessDay<'_> {
    /// The opening ranges of a local day as instants.
    fn open_ranges(&self, day: NaiveDate) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let Some(hours) = self.hours else {
            return Vec::new();
        };
        hours
            .ranges(day.weekday())
            .iter()
            .map(|r| {
                (
                    local_instant(self.tz, day, r.start),
                    local_instant(self.tz, day, r.end),
                )
            })
            .collect()
    }

    /// Whether the tenant is open at `now`: always without hours, else when `now` is in one
    /// of its day's ranges.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        if self.hours.is_none() {
            return true;
        }
        let today = local_day(self.tz, now);
        // A range that ends at 24:00 of the day before ends at today's first instant, so
        // only today's ranges can hold `now`.
        self.open_ranges(today)
            .iter()
            .any(|(start, end)| *start <= now && now < *end)
    }

    /// While closed, the start of the next opening range; `None` while open or for a tenant
    /// that never opens.
    pub fn opens_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let hours = self.hours?;
        if hours.never_open() || self.is_open(now) {
            return None;
        }
        let today = local_day(self.tz, now);
        // Every weekday recurs within a week; one day more covers a range of today that
        // already started.
        (0..=7)
            .filter_map(|ahead| today.checked_add_signed(Duration::days(ahead)))
            .flat_map(|day| self.open_ranges(day))
            .map(|(start, _)| start)
            .find(|start| *start > now)
    }

    /// The automatic closes of a local day: the end of its last opening range (if it has
    /// one before midnight), then midnight at its end.
    fn closes_of(&self, day: NaiveDate) -> impl Iterator<Item = DateTime<Utc>> + use<> {
        let hours_end = self.open_ranges(day).last().map(|(_, end)| *end);
        let midnight = local_instant(self.tz, day, MINUTES_PER_DAY);
        hours_end.into_iter().chain(std::iter::once(midnight))
    }

    /// The latest automatic close at or before `now`: every ticket issued before it belongs
    /// to a closed day.
    pub fn last_close(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = local_day(self.tz, now);
        let yesterday = today.pred_opt().unwrap_or(today);
        self.closes_of(yesterday)
            .chain(self.closes_of(today))
            .filter(|close| *close <= now)
            .max()
            .unwrap_or_else(|| local_instant(self.tz, today, 0))
    }

    /// The first automatic close after `now`.
    pub fn next_close(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = local_day(self.tz, now);
        let tomorrow = today.succ_opt().unwrap_or(today);
        self.closes_of(today)
            .chain(self.closes_of(tomorrow))
            .find(|close| *close > now)
            .unwrap_or_else(|| local_instant(self.tz, tomorrow, MINUTES_PER_DAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hours(value: Value) -> OpeningHours {
        OpeningHours::from_json(&value).unwrap()
    }

    fn invalid(value: Value) -> InvalidSetting {
        OpeningHours::from_json(&value).unwrap_err()
    }

    #[test]
    fn hours_round_trip_with_every_weekday_listed() {
        let week = hours(
            json!({"mon": [["13:00", "18:00"], ["08:00", "12:00"]], "sat": [["09:00", "24:00"]]}),
        );
        assert_eq!(
            week.to_json(),
            json!({
                "mon": [["08:00", "12:00"], ["13:00", "18:00"]],
                "tue": [], "wed": [], "thu": [], "fri": [],
                "sat": [["09:00", "24:00"]], "sun": []
            })
        );
        assert_eq!(OpeningHours::from_json(&week.to_json()).unwrap(), week);
    }

    #[test]
    fn invalid_hours_name_the_field_and_the_reason() {
        let cases = [
            (json!([]), "opening_hours"),
            (json!({"monday": []}), "opening_hours.monday"),
            (json!({"mon": "08:00-12:00"}), "opening_hours.mon"),
            (json!({"mon": [["08:00"]]}), "opening_hours.mon[0]"),
            (json!({"mon": [["08:00", 12]]}), "opening_hours.mon[0]"),
            (
                json!({"tue": [["08:00", "12:00"], ["12:00", "25:00"]]}),
                "opening_hours.tue[1]",
            ),
            (json!({"wed": [["8:00", "12:00"]]}), "opening_hours.wed[0]"),
            (json!({"wed": [["08:60", "12:00"]]}), "opening_hours.wed[0]"),
            (json!({"thu": [["24:00", "24:00"]]}), "opening_hours.thu[0]"),
            (json!({"fri": [["12:00", "08:00"]]}), "opening_hours.fri[0]"),
            (json!({"fri": [["10:00", "10:00"]]}), "opening_hours.fri[0]"),
            (
                json!({"sat": [["08:00", "12:00"], ["11:59", "13:00"]]}),
                "opening_hours.sat",
            ),
            (json!({"sun": [["+8:00", "12:00"]]}), "opening_hours.sun[0]"),
        ];
        for (value, field) in cases {
            let error = invalid(value.clone());
            assert_eq!(error.field, field, "{value}: {error}");
            assert!(error.to_string().starts_with(field), "{error}");
        }
        assert!(
            invalid(json!({"sat": [["08:00", "12:00"], ["11:59", "13:00"]]}))
                .reason
                .contains("overlap")
        );
        // Touching ranges do not overlap; 24:00 ends a day.
        hours(json!({"mon": [["08:00", "12:00"], ["12:00", "24:00"]], "tue": []}));
    }

    /// São Paulo: UTC-3 all year (no DST since 2019).
    fn weekdays_8_to_18() -> OpeningHours {
        let day = [["08:00", "12:00"], ["13:00", "18:00"]];
        hours(json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day}))
    }

    #[test]
    fn open_inside_a_range_closed_at_lunch_at_night_and_at_the_weekend() {
        let week = weekdays_8_to_18();
        let day = BusinessDay {
            tz: tz("America/Sao_Paulo"),
            hours: Some(&week),
        };
        // 2026-12-07 is a Monday.
        let cases = [
            ("2026-12-07T10:59:59-03:00", true, None),
            (
                "2026-12-07T07:59:59-03:00",
                false,
                Some("2026-12-07T08:00:00-03:00"),
            ),
            ("2026-12-07T08:00:00-03:00", true, None),
            ("2026-12-07T11:59:59-03:00", true, None),
            (
                "2026-12-07T12:00:00-03:00",
                false,
                Some("2026-12-07T13:00:00-03:00"),
            ),
            (
                "2026-12-07T18:00:00-03:00",
                false,
                Some("2026-12-08T08:00:00-03:00"),
            ),
            (
                "2026-12-11T19:00:00-03:00",
                false,
                Some("2026-12-14T08:00:00-03:00"),
            ),
            (
                "2026-12-13T23:59:00-03:00",
                false,
                Some("2026-12-14T08:00:00-03:00"),
            ),
        ];
        for (now, open, opens_at) in cases {
            let now = utc(now);
            assert_eq!(day.is_open(now), open, "{now}");
            assert_eq!(day.opens_at(now), opens_at.map(utc), "{now}");
        }
    }

    #[test]
    fn without_hours_always_open_and_closing_at_midnight() {
        let day = BusinessDay {
            tz: tz("America/Sao_Paulo"),
            hours: None,
        };
        let now = utc("2026-12-07T23:30:00-03:00");
        assert!(day.is_open(now));
        assert_eq!(day.opens_at(now), None);
        assert_eq!(day.last_close(now), utc("2026-12-07T00:00:00-03:00"));
        assert_eq!(day.next_close(now), utc("2026-12-08T00:00:00-03:00"));
    }

    #[test]
    fn a_tenant_that_never_opens_has_no_opening_time() {
        let never = hours(json!({}));
        let day = BusinessDay {
            tz: tz("UTC"),
            hours: Some(&never),
        };
        let now = utc("2026-12-07T12:00:00Z");
        assert!(!day.is_open(now));
        assert_eq!(day.opens_at(now), None);
        assert_eq!(day.next_close(now), utc("2026-12-08T00:00:00Z"));
    }

    #[test]
    fn the_day_closes_when_its_hours_end_and_again_at_midnight() {
        let week = weekdays_8_to_18();
        let day = BusinessDay {
            tz: tz("America/Sao_Paulo"),
            hours: Some(&week),
        };
        let cases = [
            // now, last close, next close
            (
                "2026-12-07T10:00:00-03:00",
                "2026-12-07T00:00:00-03:00",
                "2026-12-07T18:00:00-03:00",
            ),
            (
                "2026-12-07T17:59:59-03:00",
                "2026-12-07T00:00:00-03:00",
                "2026-12-07T18:00:00-03:00",
            ),
            (
                "2026-12-07T18:00:00-03:00",
                "2026-12-07T18:00:00-03:00",
                "2026-12-08T00:00:00-03:00",
            ),
            (
                "2026-12-07T23:59:59-03:00",
                "2026-12-07T18:00:00-03:00",
                "2026-12-08T00:00:00-03:00",
            ),
            (
                "2026-12-08T00:00:00-03:00",
                "2026-12-08T00:00:00-03:00",
                "2026-12-08T18:00:00-03:00",
            ),
            // A Saturday has no hours: midnight only.
            (
                "2026-12-12T12:00:00-03:00",
                "2026-12-12T00:00:00-03:00",
                "2026-12-13T00:00:00-03:00",
            ),
        ];
        for (now, last, next) in cases {
            assert_eq!(day.last_close(utc(now)), utc(last), "last close at {now}");
            assert_eq!(day.next_close(utc(now)), utc(next), "next close at {now}");
        }
    }

    #[test]
    fn a_ticket_in_flight_at_midnight_belongs_to_the_day_its_issue_time_says() {
        let day = BusinessDay {
            tz: tz("Europe/Lisbon"),
            hours: None,
        };
        let midnight = utc("2026-12-08T00:00:00Z");
        let last_of_monday = midnight - Duration::microseconds(1);
        // A close that runs a little after midnight closes what was issued before it, and
        // not the ticket issued at midnight exactly.
        let close = day.last_close(midnight + Duration::milliseconds(300));
        assert_eq!(close, midnight);
        assert!(last_of_monday < close);
        assert!(midnight >= close);
        assert_eq!(day.last_close(last_of_monday), utc("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn hours_that_end_in_the_hour_skipped_by_dst_end_at_the_jump() {
        // New York springs forward on 2026-03-08 (a Sunday): 02:00 EST → 03:00 EDT.
        let sunday = hours(json!({"sun": [["00:30", "02:30"]]}));
        let day = BusinessDay {
            tz: tz("America/New_York"),
            hours: Some(&sunday),
        };
        let jump = utc("2026-03-08T07:00:00Z"); // 02:00 EST = 03:00 EDT
        assert_eq!(day.next_close(utc("2026-03-08T06:00:00Z")), jump);
        assert!(day.is_open(jump - Duration::seconds(1)));
        assert!(!day.is_open(jump));
        assert_eq!(day.last_close(jump), jump);
        // The rest of the day closes at midnight EDT, 23 hours after the previous one.
        assert_eq!(day.next_close(jump), utc("2026-03-09T04:00:00Z"));
        assert_eq!(
            day.next_close(jump) - day.last_close(utc("2026-03-08T06:00:00Z")),
            Duration::hours(23)
        );
    }

    #[test]
    fn hours_that_end_in_the_hour_repeated_by_dst_end_at_its_first_pass() {
        // New York falls back on 2026-11-01 (a Sunday): 02:00 EDT → 01:00 EST.
        let sunday = hours(json!({"sun": [["00:00", "01:30"]]}));
        let day = BusinessDay {
            tz: tz("America/New_York"),
            hours: Some(&sunday),
        };
        let first_1_30 = utc("2026-11-01T05:30:00Z"); // 01:30 EDT
        assert_eq!(day.next_close(utc("2026-11-01T05:00:00Z")), first_1_30);
        assert!(
            !day.is_open(first_1_30 + Duration::hours(1)),
            "01:30 EST, the second pass"
        );
        // That day has 25 hours: its midnight close is 25 hours after the one before.
        assert_eq!(
            day.next_close(first_1_30) - utc("2026-11-01T04:00:00Z"),
            Duration::hours(25)
        );
    }

    #[test]
    fn a_midnight_skipped_by_dst_closes_at_the_first_instant_of_the_day() {
        // Santiago de Chile springs forward at midnight: 2026-09-06 00:00 -04 → 01:00 -03.
        let day = BusinessDay {
            tz: tz("America/Santiago"),
            hours: None,
        };
        let first_instant = utc("2026-09-06T04:00:00Z"); // 01:00 -03
        assert_eq!(
            local_instant(
                tz("America/Santiago"),
                NaiveDate::from_ymd_opt(2026, 9, 6).unwrap(),
                0
            ),
            first_instant
        );
        assert_eq!(
            day.next_close(utc("2026-09-05T23:00:00-04:00")),
            first_instant
        );
        assert_eq!(day.last_close(first_instant), first_instant);
        assert!(day.is_open(first_instant));
    }

    #[test]
    fn a_time_zone_changed_mid_day_moves_the_closes_to_the_new_zone() {
        // 22:00 UTC: still Monday in São Paulo (19:00), already Tuesday in Tokyo (07:00).
        let now = utc("2026-12-07T22:00:00Z");
        let before = BusinessDay {
            tz: tz("America/Sao_Paulo"),
            hours: None,
        };
        let after = BusinessDay {
            tz: tz("Asia/Tokyo"),
            hours: None,
        };
        assert_eq!(before.last_close(now), utc("2026-12-07T03:00:00Z"));
        assert_eq!(before.next_close(now), utc("2026-12-08T03:00:00Z"));
        // In Tokyo a midnight has passed since the São Paulo one: tickets issued before it
        // belong to a closed day, and the next close is Tokyo's next midnight.
        assert_eq!(after.last_close(now), utc("2026-12-07T15:00:00Z"));
        assert!(after.last_close(now) > before.last_close(now));
        assert_eq!(after.next_close(now), utc("2026-12-08T15:00:00Z"));
    }

    #[test]
    fn a_range_to_24_00_keeps_the_day_open_until_midnight() {
        let late = hours(json!({"mon": [["20:00", "24:00"]]}));
        let day = BusinessDay {
            tz: tz("UTC"),
            hours: Some(&late),
        };
        assert!(day.is_open(utc("2026-12-07T23:59:59Z")));
        assert!(!day.is_open(utc("2026-12-08T00:00:00Z")));
        // The hours end and midnight are the same close.
        assert_eq!(
            day.next_close(utc("2026-12-07T21:00:00Z")),
            utc("2026-12-08T00:00:00Z")
        );
        assert_eq!(
            day.opens_at(utc("2026-12-08T00:00:00Z")),
            Some(utc("2026-12-14T20:00:00Z"))
        );
    }
}
