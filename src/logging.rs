//! The log: env_logger, as text for people (the default) or, with `LOG_FORMAT=json`, one
//! JSON object per line for log collectors: `time`, `level`, `target`, `message`, and the
//! record's structured fields (the access log's `method`, `route`, `status`, …).

use std::io::Write;

use chrono::{SecondsFormat, Utc};
use log::kv::{self, VisitSource};
use serde_json::{Map, Value};

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// `LOG_FORMAT` as set (`None`: unset, the default text).
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("" | "text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!("LOG_FORMAT must be text or json, not {other:?}")),
        }
    }
}

/// Starts the log; `RUST_LOG` filters it (default `info`).
pub fn init(format: LogFormat) {
    // sqlx reports "relation _sqlx_migrations already exists" as an info notice on every run.
    let mut builder = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,sqlx::postgres::notice=warn"),
    );
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = json_line(
                Utc::now(),
                record.level(),
                record.target(),
                &record.args().to_string(),
                record.key_values(),
            );
            writeln!(buf, "{line}")
        });
    }
    builder.init();
}

/// One record as a JSON object. Fields named like the fixed ones cannot replace them.
fn json_line(
    time: chrono::DateTime<Utc>,
    level: log::Level,
    target: &str,
    message: &str,
    fields: &dyn kv::Source,
) -> String {
    let mut object = Map::new();
    let mut collect = Fields(&mut object);
    let _ = fields.visit(&mut collect);
    object.insert(
        "time".into(),
        time.to_rfc3339_opts(SecondsFormat::Micros, true).into(),
    );
    object.insert("level".into(), level.as_str().into());
    object.insert("target".into(), target.into());
    object.insert("message".into(), message.into());
    Value::Object(object).to_string()
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let value = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(x) = value.to_f64() {
            Value::from(x)
        } else if let Some(b) = value.to_bool() {
            Value::from(b)
        } else {
            Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_text_by_default_or_json() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        let err = LogFormat::parse(Some("xml")).unwrap_err();
        assert!(err.contains("LOG_FORMAT"), "{err}");
    }

    #[test]
    fn a_record_is_one_json_object_with_its_fields() {
        let time = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let fields: [(&str, kv::Value<'_>); 4] = [
            ("method", kv::Value::from("GET")),
            ("status", kv::Value::from(200u16)),
            ("duration_ms", kv::Value::from(1.5f64)),
            ("level", kv::Value::from("forged")),
        ];
        let line = json_line(
            time,
            log::Level::Info,
            "nextup::access",
            "GET / \"quoted\"\nnext",
            &fields,
        );
        assert!(!line.contains('\n'), "one line: {line}");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2026-12-07T10:00:00.500000Z");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], "nextup::access");
        assert_eq!(value["message"], "GET / \"quoted\"\nnext");
        assert_eq!(value["method"], "GET");
        assert_eq!(value["status"], 200);
        assert_eq!(value["duration_ms"], 1.5);
    }
}
