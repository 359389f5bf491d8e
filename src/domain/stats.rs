//! Statistics (`GET …/stats`, contract §4 and §9): the date range asked for, the report's
//! shape, and its CSV form.
//!
//! The report counts legs, a ticket's stays in one service (docs/api.md defines them): each
//! service and operator is credited with its own legs. The numbers come from the database
//! (`db::stats`); here they are checked, rounded and laid out.

use chrono::NaiveDate;
use serde::Serialize;
use uuid::Uuid;

/// The longest range a report covers, in days (both ends included): ten years and their
/// leap days. A longer one is refused rather than left to run for many seconds.
pub const MAX_RANGE_DAYS: i64 = 3660;

/// The tenant-local days a report covers, `from` and `to` included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{field} must be a date written YYYY-MM-DD, not '{value}'")]
    Malformed { field: &'static str, value: String },
    #[error("from ({from}) is after to ({to})")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("the range covers {days} days; at most {MAX_RANGE_DAYS} can be asked for at once")]
    TooLong { days: i64 },
}

impl StatsRange {
    /// The range of `?from=&to=`: each defaults to `today` (the tenant's).
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<StatsRange, RangeError> {
        let from = from.map(|v| parse_date("from", v)).transpose()?;
        let to = to.map(|v| parse_date("to", v)).transpose()?;
        let range = StatsRange {
            from: from.unwrap_or(today),
            to: to.unwrap_or(today),
        };
        if range.from > range.to {
            return Err(RangeError::Reversed {
                from: range.from,
                to: range.to,
            });
        }
        let days = (range.to - range.from).num_days() + 1;
        if days > MAX_RANGE_DAYS {
            return Err(RangeError::TooLong { days });
        }
        Ok(range)
    }
}

/// A calendar date written exactly `YYYY-MM-DD` (chrono alone would take `2026-1-5`).
fn parse_date(field: &'static str, value: &str) -> Result<NaiveDate, RangeError> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| RangeError::Malformed {
            field,
            value: value.chars().take(40).collect(),
        })
}

/// Seconds as a report shows them: to a tenth, enough for people and charts.
pub fn round_secs(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

/// Mean, median and 90th percentile of a set of durations in seconds; `None` without a
/// sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Times {
    #[schema(required = true)]
    pub mean: Option<f64>,
    #[schema(required = true)]
    pub p50: Option<f64>,
    #[schema(required = true)]
    pub p90: Option<f64>,
}

impl Times {
    /// Rounded with [`round_secs`].
    pub fn new(mean: Option<f64>, p50: Option<f64>, p90: Option<f64>) -> Times {
        Times {
            mean: mean.map(round_secs),
            p50: p50.map(round_secs),
            p90: p90.map(round_secs),
        }
    }
}

/// What the ended legs of a service or an operator (or all of them) came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ended {
    /// Legs ended `done`.
    pub served: i64,
    pub no_show: i64,
    pub cancelled: i64,
    pub expired: i64,
    /// Legs ended by a transfer out.
    pub transferred: i64,
    /// The legs' first call minus their start.
    pub wait_secs: Times,
    /// The end of service minus its start.
    pub service_secs: Times,
}

/// [`Ended`] and the tickets issued: what the totals and each service show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Tally {
    pub issued: i64,
    #[serde(flatten)]
    pub ended: Ended,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceStats {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OperatorStats {
    pub id: Uuid,
    pub username: String,
    #[serde(flatten)]
    pub ended: Ended,
}

/// A tenant-local hour of the day, for the staffing chart: the legs that began in it
/// (tickets issued, transferred in or reactivated) and their mean wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HourStats {
    pub hour: u32,
    pub arrivals: i64,
    #[schema(required = true)]
    pub mean_wait_secs: Option<f64>,
}

/// The whole answer of `GET …/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = StatsReport)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub timezone: String,
    pub totals: Tally,
    /// By code: every service with activity in the range, and every active one.
    pub services: Vec<ServiceStats>,
    /// By username: every operator who ended a leg in the range.
    pub operators: Vec<OperatorStats>,
    /// Always 24, hour 0 to 23.
    pub hours: Vec<HourStats>,
}

/// A service as the report names it, for [`Report::new`].
#[derive(Debug, Clone)]
pub struct ServiceName {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

impl Report {
    /// Lays out what the database counted: `active` services with no activity are listed
    /// with zeros, services are sorted by code and operators by username, and the hours
    /// without arrivals are filled in.
    pub fn new(
        range: StatsRange,
        timezone: &str,
        totals: Tally,
        mut services: Vec<ServiceStats>,
        active: Vec<ServiceName>,
        mut operators: Vec<OperatorStats>,
        hours: Vec<HourStats>,
    ) -> Report {
        for service in active {
            if !services.iter().any(|s| s.id == service.id) {
                services.push(ServiceStats {
                    id: service.id,
                    code: service.code,
                    name: service.name,
                    tally: Tally::default(),
                });
            }
        }
        services.sort_by(|a, b| a.code.cmp(&b.code).then(a.id.cmp(&b.id)));
        operators.sort_by(|a, b| a.username.cmp(&b.username).then(a.id.cmp(&b.id)));
        let hours = (0..24)
            .map(|hour| {
                hours
                    .iter()
                    .find(|h| h.hour == hour)
                    .copied()
                    .unwrap_or(HourStats {
                        hour,
                        ..HourStats::default()
                    })
            })
            .collect();
        Report {
            from: range.from,
            to: range.to,
            timezone: timezone.to_owned(),
            totals,
            services,
            operators,
            hours,
        }
    }

    /// The report as one CSV table: a header, then a row per service, operator and hour,
    /// and the totals; `scope` says which, and cells that do not apply to a row are blank.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(CSV_HEADER)?;
        for s in &self.services {
            let mut row = CsvRow::new("service");
            row.id = Some(s.id.to_string());
            row.code = Some(s.code.clone());
            row.name = Some(s.name.clone());
            row.issued = Some(s.tally.issued);
            row.ended = Some(s.tally.ended);
            out.write_record(row.cells())?;
        }
        for o in &self.operators {
            let mut row = CsvRow::new("operator");
            row.id = Some(o.id.to_string());
            row.username = Some(o.username.clone());
            row.ended = Some(o.ended);
            out.write_record(row.cells())?;
        }
        for h in &self.hours {
            let mut row = CsvRow::new("hour");
            row.hour = Some(h.hour);
            row.arrivals = Some(h.arrivals);
            row.mean_wait_secs = Some(h.mean_wait_secs);
            out.write_record(row.cells())?;
        }
        let mut row = CsvRow::new("total");
        row.issued = Some(self.totals.issued);
        row.ended = Some(self.totals.ended);
        out.write_record(row.cells())?;
        out.into_inner().map_err(|e| e.into_error().into())
    }
}

/// The CSV columns, in order. The times are the JSON's `wait_secs`/`service_secs` fields,
/// flattened.
pub const CSV_HEADER: [&str; 20] = [
    "scope",
    "id",
    "code",
    "name",
    "username",
    "hour",
    "issued",
    "served",
    "no_show",
    "cancelled",
    "expired",
    "transferred",
    "wait_mean_secs",
    "wait_p50_secs",
    "wait_p90_secs",
    "service_mean_secs",
    "service_p50_secs",
    "service_p90_secs",
    "arrivals",
    "mean_wait_secs",
];

/// One CSV row; `None` is a column that does not apply (blank), and a `Some(None)` time is
/// one without a sample (blank too).
struct CsvRow {
    scope: &'static str,
    id: Option<String>,
    code: Option<String>,
    name: Option<String>,
    username: Option<String>,
    hour: Option<u32>,
    issued: Option<i64>,
    ended: Option<Ended>,
    arrivals: Option<i64>,
    mean_wait_secs: Option<Option<f64>>,
}

impl CsvRow {
    fn new(scope: &'static str) -> CsvRow {
        CsvRow {
            scope,
            id: None,
            code: None,
            name: None,
            username: None,
            hour: None,
            issued: None,
            ended: None,
            arrivals: None,
            mean_wait_secs: None,
        }
    }

    fn cells(self) -> Vec<String> {
        fn cell<T: ToString>(value: Option<T>) -> String {
            value.map(|v| v.to_string()).unwrap_or_default()
        }
        let e = self.ended;
        let time = |pick: fn(&Ended) -> Option<f64>| cell(e.as_ref().and_then(pick));
        vec![
            self.scope.to_owned(),
            cell(self.id),
            cell(self.code),
            cell(self.name),
            cell(self.username),
            cell(self.hour),
            cell(self.issued),
            cell(e.map(|e| e.served)),
            cell(e.map(|e| e.no_show)),
            cell(e.map(|e| e.cancelled)),
            cell(e.map(|e| e.expired)),
            cell(e.map(|e| e.transferred)),
            time(|e| e.wait_secs.mean),
            time(|e| e.wait_secs.p50),
            time(|e| e.wait_secs.p90),
            time(|e| e.service_secs.mean),
            time(|e| e.service_secs.p50),
            time(|e| e.service_secs.p90),
            cell(self.arrivals),
            cell(self.mean_wait_secs.flatten()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_range_defaults_to_today_at_either_end() {
        let today = day("2026-12-07");
        let parse = |from, to| StatsRange::parse(from, to, today);
        assert_eq!(
            parse(None, None),
            Ok(StatsRange {
                from: today,
                to: today
            })
        );
        assert_eq!(
            parse(Some("2026-12-01"), None),
            Ok(StatsRange {
                from: day("2026-12-01"),
                to: today
            })
        );
        assert_eq!(
            parse(None, Some("2026-12-31")),
            Ok(StatsRange {
                from: today,
                to: day("2026-12-31")
            })
        );
        assert_eq!(
            parse(Some("2026-12-08"), None),
            Err(RangeError::Reversed {
                from: day("2026-12-08"),
                to: today
            }),
            "from alone after today is a reversed range"
        );
    }

    #[test]
    fn dates_must_be_written_exactly_yyyy_mm_dd() {
        let today = day("2026-12-07");
        for (value, why) in [
            ("2026-1-05", "a one-digit month"),
            ("2026-01-5", "a one-digit day"),
            ("2026-02-30", "no such day"),
            ("2026-13-01", "no such month"),
            ("26-01-05", "a two-digit year"),
            (" 2026-01-05", "a leading space"),
            ("2026-01-05T00:00", "a time"),
            ("2026/01/05", "slashes"),
            ("", "nothing"),
            ("today", "a word"),
            ("２０２６-01-05", "non-ASCII digits"),
        ] {
            for (from, to, field) in [(Some(value), None, "from"), (None, Some(value), "to")] {
                let err = StatsRange::parse(from, to, today).unwrap_err();
                assert!(
                    matches!(&err, RangeError::Malformed { field: f, .. } if *f == field),
                    "{why} ({value:?}) in {field} gave {err:?}"
                );
            }
        }
        assert!(
            StatsRange::parse(Some("2024-02-29"), None, today).is_ok(),
            "a leap day"
        );
    }

    #[test]
    fn a_range_covers_at_most_max_range_days() {
        let to = day("2026-12-07");
        let from = to - chrono::Duration::days(MAX_RANGE_DAYS - 1);
        let longest = StatsRange::parse(Some(&from.to_string()), Some("2026-12-07"), to);
        assert_eq!(longest, Ok(StatsRange { from, to }));
        let from = from - chrono::Duration::days(1);
        assert_eq!(
            StatsRange::parse(Some(&from.to_string()), Some("2026-12-07"), to),
            Err(RangeError::TooLong {
                days: MAX_RANGE_DAYS + 1
            })
        );
        let one = StatsRange::parse(Some("2026-12-07"), Some("2026-12-07"), to);
        assert!(one.is_ok(), "a single day");
    }

    #[test]
    fn seconds_are_rounded_to_a_tenth() {
        assert_eq!(round_secs(264.0), 264.0);
        assert_eq!(round_secs(100.333_333), 100.3);
        assert_eq!(round_secs(0.05), 0.1);
        assert_eq!(round_secs(59.96), 60.0);
        assert_eq!(
            Times::new(Some(1.26), None, Some(2.0)),
            Times {
                mean: Some(1.3),
                p50: None,
                p90: Some(2.0)
            }
        );
    }

    fn service(code: &str, issued: i64) -> ServiceStats {
        ServiceStats {
            id: Uuid::new_v4(),
            code: code.into(),
            name: format!("Service {code}"),
            tally: Tally {
                issued,
                ..Tally::default()
            },
        }
    }

    fn sample() -> Report {
        let b = service("B", 3);
        let idle = ServiceName {
            id: Uuid::new_v4(),
            code: "A".into(),
            name: "Idle".into(),
        };
        let active_b = ServiceName {
            id: b.id,
            code: "B".into(),
            name: "Service B".into(),
        };
        let ended = Ended {
            served: 2,
            transferred: 1,
            wait_secs: Times::new(Some(90.0), Some(60.0), Some(264.0)),
            service_secs: Times::new(Some(30.5), Some(30.5), Some(40.1)),
            ..Ended::default()
        };
        let operator = |name: &str| OperatorStats {
            id: Uuid::new_v4(),
            username: name.into(),
            ended,
        };
        Report::new(
            StatsRange {
                from: day("2026-12-01"),
                to: day("2026-12-07"),
            },
            "Europe/Lisbon",
            Tally { issued: 5, ended },
            vec![service("C", 2), b],
            vec![idle, active_b],
            vec![operator("zoe"), operator("ana")],
            vec![
                HourStats {
                    hour: 9,
                    arrivals: 4,
                    mean_wait_secs: Some(90.0),
                },
                HourStats {
                    hour: 23,
                    arrivals: 1,
                    mean_wait_secs: None,
                },
            ],
        )
    }

    #[test]
    fn a_report_lists_idle_active_services_sorts_and_has_every_hour() {
        let report = sample();
        let codes: Vec<&str> = report.services.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(
            codes,
            ["A", "B", "C"],
            "the idle active service is added once"
        );
        assert_eq!(report.services[0].tally, Tally::default());
        assert_eq!(report.services[1].tally.issued, 3);
        let names: Vec<&str> = report
            .operators
            .iter()
            .map(|o| o.username.as_str())
            .collect();
        assert_eq!(names, ["ana", "zoe"]);
        assert_eq!(report.hours.len(), 24);
        for (i, hour) in report.hours.iter().enumerate() {
            assert_eq!(hour.hour as usize, i);
        }
        assert_eq!(report.hours[9].arrivals, 4);
        assert_eq!(
            report.hours[10],
            HourStats {
                hour: 10,
                arrivals: 0,
                mean_wait_secs: None
            }
        );
    }

    #[test]
    fn a_report_serialises_to_the_documented_shape() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["from"], "2026-12-01");
        assert_eq!(json["timezone"], "Europe/Lisbon");
        assert_eq!(json["totals"]["issued"], 5);
        assert_eq!(json["totals"]["wait_secs"]["p90"], 264.0);
        assert_eq!(
            json["services"][0]["wait_secs"]["mean"],
            serde_json::Value::Null
        );
        assert_eq!(json["services"][2]["code"], "C");
        let operator = json["operators"][0].as_object().unwrap();
        assert!(
            !operator.contains_key("issued"),
            "operators issue nothing: {operator:?}"
        );
        assert_eq!(operator["transferred"], 1);
        assert_eq!(json["hours"][23]["mean_wait_secs"], serde_json::Value::Null);
    }

    #[test]
    fn the_csv_is_one_table_with_a_row_per_service_operator_hour_and_the_total() {
        let report = sample();
        let csv = report.to_csv().unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        assert_eq!(reader.headers().unwrap(), CSV_HEADER.as_slice());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3 + 2 + 24 + 1);
        let scopes: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
        assert_eq!(&scopes[..3], ["service"; 3]);
        assert_eq!(&scopes[3..5], ["operator"; 2]);
        assert!(scopes[5..29].iter().all(|s| *s == "hour"));
        assert_eq!(scopes[29], "total");
        let at = |row: &csv::StringRecord, column: &str| {
            let i = CSV_HEADER.iter().position(|c| *c == column).unwrap();
            row[i].to_owned()
        };
        let idle = &rows[0];
        assert_eq!(at(idle, "code"), "A");
        assert_eq!(at(idle, "issued"), "0");
        assert_eq!(at(idle, "wait_mean_secs"), "", "no sample: blank");
        assert_eq!(at(idle, "username"), "", "does not apply: blank");
        let ana = &rows[3];
        assert_eq!(at(ana, "username"), "ana");
        assert_eq!(at(ana, "issued"), "");
        assert_eq!(at(ana, "wait_p90_secs"), "264");
        assert_eq!(at(ana, "service_p90_secs"), "40.1");
        let nine = &rows[5 + 9];
        assert_eq!(at(nine, "hour"), "9");
        assert_eq!(at(nine, "arrivals"), "4");
        assert_eq!(at(nine, "mean_wait_secs"), "90");
        assert_eq!(at(nine, "served"), "");
        let total = &rows[29];
        assert_eq!(at(total, "issued"), "5");
        assert_eq!(at(total, "served"), "2");
        assert_eq!(at(total, "id"), "");
    }

    #[test]
    fn csv_cells_with_commas_and_quotes_are_quoted() {
        let mut report = sample();
        report.services[0].name = "Loans, \"fast\"".into();
        let csv = report.to_csv().unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let first = reader.records().next().unwrap().unwrap();
        assert_eq!(&first[3], "Loans, \"fast\"");
    }
}
