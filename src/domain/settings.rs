//! A tenant's settings (contract §8): its time zone, opening hours, recall limit and fair
//! call ratio, and the rules for changing them with `PATCH …/settings`.

use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::business_day::{InvalidSetting, OpeningHours};
use super::numbering::parse_timezone;

/// The settings besides the time zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `None`: always open.
    pub opening_hours: Option<OpeningHours>,
    /// A recall that would make `call_count` exceed this marks the ticket `no_show`.
    pub max_calls: Option<u32>,
    /// After this many priority calls in a row to a counter, its next call takes the
    /// oldest normal ticket; `None`: priority always first.
    pub priority_ratio: Option<u32>,
}

/// The largest `max_calls` and `priority_ratio` stored (the database keeps 32-bit integers).
pub const MAX_COUNT_SETTING: u32 = i32::MAX as u32;

/// The settings as `GET …/settings` answers them: one flat object.
pub fn settings_json(timezone: Tz, settings: &Settings) -> Value {
    json!({
        "timezone": timezone.name(),
        "opening_hours": settings.opening_hours.as_ref().map(OpeningHours::to_json),
        "max_calls": settings.max_calls,
        "priority_ratio": settings.priority_ratio,
    })
}

/// A `PATCH …/settings` body: the fields given, each already valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub timezone: Option<Tz>,
    pub opening_hours: Option<Option<OpeningHours>>,
    pub max_calls: Option<Option<u32>>,
    pub priority_ratio: Option<Option<u32>>,
}

impl SettingsPatch {
    /// Reads a body: an object with any of the four fields. An unknown field is refused
    /// (a misspelt setting would otherwise be ignored without a word), and so is a value of
    /// the wrong type; each error names its field.
    pub fn from_json(body: &Value) -> Result<SettingsPatch, InvalidSetting> {
        let object: &Map<String, Value> = body.as_object().ok_or_else(|| {
            InvalidSetting::new(
                "body",
                "must be an object with any of timezone, opening_hours, max_calls, priority_ratio",
            )
        })?;
        let mut patch = SettingsPatch::default();
        for (field, value) in object {
            match field.as_str() {
                "timezone" => {
                    let name = value.as_str().ok_or_else(|| {
                        InvalidSetting::new("timezone", "must be an IANA time zone name (a string)")
                    })?;
                    let tz = parse_timezone(name)
                        .map_err(|reason| InvalidSetting::new("timezone", reason))?;
                    patch.timezone = Some(tz);
                }
                "opening_hours" => {
                    patch.opening_hours = Some(match value {
                        Value::Null => None,
                        hours => Some(OpeningHours::from_json(hours)?),
                    });
                }
                "max_calls" => patch.max_calls = Some(count_setting("max_calls", value)?),
                "priority_ratio" => {
                    patch.priority_ratio = Some(count_setting("priority_ratio", value)?);
                }
                unknown => {
                    return Err(InvalidSetting::new(
                        unknown,
                        "is not a setting: use timezone, opening_hours, max_calls or priority_ratio",
                    ));
                }
            }
        }
        Ok(patch)
    }

    /// The settings with this patch's fields changed and the others kept.
    pub fn apply(&self, timezone: Tz, settings: &Settings) -> (Tz, Settings) {
        let settings = Settings {
            opening_hours: self
                .opening_hours
                .clone()
                .unwrap_or_else(|| settings.opening_hours.clone()),
            max_calls: self.max_calls.unwrap_or(settings.max_calls),
            priority_ratio: self.priority_ratio.unwrap_or(settings.priority_ratio),
        };
        (self.timezone.unwrap_or(timezone), settings)
    }
}

/// `null` or a whole number from 1 to [`MAX_COUNT_SETTING`].
fn count_setting(field: &str, value: &Value) -> Result<Option<u32>, InvalidSetting> {
    if value.is_null() {
        return Ok(None);
    }
    value
        .as_u64()
        .filter(|n| (1..=u64::from(MAX_COUNT_SETTING)).contains(n))
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            InvalidSetting::new(
                field,
                format!("must be null or a whole number from 1 to {MAX_COUNT_SETTING}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(body: Value) -> Result<SettingsPatch, InvalidSetting> {
        SettingsPatch::from_json(&body)
    }

    #[test]
    fn a_new_tenant_has_every_setting_null_but_its_time_zone() {
        assert_eq!(
            settings_json(chrono_tz::America::Sao_Paulo, &Settings::default()),
            json!({"timezone": "America/Sao_Paulo", "opening_hours": null, "max_calls": null, "priority_ratio": null})
        );
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_gives() {
        let before = Settings {
            opening_hours: Some(
                OpeningHours::from_json(&json!({"mon": [["08:00", "12:00"]]})).unwrap(),
            ),
            max_calls: Some(3),
            priority_ratio: Some(2),
        };
        let (tz, after) = patch(json!({"max_calls": null, "priority_ratio": 4}))
            .unwrap()
            .apply(chrono_tz::UTC, &before);
        assert_eq!(tz, chrono_tz::UTC);
        assert_eq!(after.opening_hours, before.opening_hours);
        assert_eq!(after.max_calls, None);
        assert_eq!(after.priority_ratio, Some(4));

        let (tz, after) = patch(json!({"timezone": "Asia/Tokyo", "opening_hours": null}))
            .unwrap()
            .apply(chrono_tz::UTC, &before);
        assert_eq!(tz, chrono_tz::Asia::Tokyo);
        assert_eq!(after.opening_hours, None);
        assert_eq!(after.max_calls, Some(3));
        assert_eq!(patch(json!({})).unwrap().apply(tz, &after), (tz, after));
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            (json!([]), "body"),
            (json!("x"), "body"),
            (json!({"timezone": "Mars/Olympus"}), "timezone"),
            (json!({"timezone": 3}), "timezone"),
            (json!({"timezone": null}), "timezone"),
            (json!({"max_calls": 0}), "max_calls"),
            (json!({"max_calls": -1}), "max_calls"),
            (json!({"max_calls": 1.5}), "max_calls"),
            (json!({"max_calls": "2"}), "max_calls"),
            (json!({"max_calls": 4_294_967_296u64}), "max_calls"),
            (json!({"priority_ratio": true}), "priority_ratio"),
            (
                json!({"priority_ratio": 2_147_483_648u64}),
                "priority_ratio",
            ),
            (
                json!({"opening_hours": {"mon": [["09:00", "08:00"]]}}),
                "opening_hours.mon[0]",
            ),
            (json!({"opening_hours": 1}), "opening_hours"),
            (json!({"max_call": 2}), "max_call"),
        ];
        for (body, field) in cases {
            let error = patch(body.clone()).unwrap_err();
            assert_eq!(error.field, field, "{body}: {error}");
        }
        assert_eq!(
            patch(json!({"max_calls": 2147483647u64}))
                .unwrap()
                .max_calls,
            Some(Some(MAX_COUNT_SETTING))
        );
    }
}
