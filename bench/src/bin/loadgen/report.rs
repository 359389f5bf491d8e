//! The readable side of the output: aligned tables and the facts a report starts with.

use serde_json::{Value, json};

use nextup_bench::stats::Summary;
use nextup_bench::sys::{FileLimit, Machine};

use crate::Common;
use crate::setup::Deployment;

/// A text table: the first column left-aligned, the others right-aligned.
pub struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(head: &[&str]) -> Self {
        Self {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.head.len();
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let parts: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = cells.get(i).map(String::as_str).unwrap_or("");
                    if i == 0 {
                        format!("{cell:<w$}", w = widths[i])
                    } else {
                        format!("{cell:>w$}", w = widths[i])
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_owned()
        };
        let mut out = line(&self.head);
        out.push('\n');
        out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (columns - 1)));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// A number of milliseconds with one decimal (or "-").
pub fn ms(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

/// One field of an optional summary, in ms.
pub fn field(summary: Option<&Summary>, pick: fn(&Summary) -> f64) -> String {
    ms(summary.map(pick))
}

/// The delivery columns that `fanout` and `tenants` share, in their order: REST p50 and
/// p99, request→frame p50/p90/p99/max, the last session's p50/p99/max, then missing,
/// duplicated and out-of-order counts.
pub fn delivery_cells(stretch: &crate::measure::Stretch) -> Vec<String> {
    let (latency, last) = crate::measure::delivery_summaries(&stretch.all);
    let d = &stretch.all;
    vec![
        field(stretch.rest.as_ref(), |s| s.p50),
        field(stretch.rest.as_ref(), |s| s.p99),
        field(latency.as_ref(), |s| s.p50),
        field(latency.as_ref(), |s| s.p90),
        field(latency.as_ref(), |s| s.p99),
        field(latency.as_ref(), |s| s.max),
        field(last.as_ref(), |s| s.p50),
        field(last.as_ref(), |s| s.p99),
        field(last.as_ref(), |s| s.max),
        d.missing.to_string(),
        d.duplicated.to_string(),
        d.out_of_order.to_string(),
    ]
}

pub fn mib(kib: Option<u64>) -> String {
    kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// `key=count, …` or "none".
pub fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The head of every report: machine, limits, what was measured.
pub fn head(
    scenario: &str,
    common: &Common,
    deployment: &Deployment,
    limit: &FileLimit,
) -> (String, Value) {
    let (mut text, mut value) = machine_head(scenario, common, limit);
    let servers: Vec<Value> = deployment
        .servers
        .iter()
        .map(|s| json!({"base": s.http_base, "pid": s.pid}))
        .collect();
    text.push_str(&format!(
        "server: {} ({}), {} process(es): {}\n",
        if deployment.spawned {
            "spawned"
        } else {
            "attached"
        },
        deployment.version.as_deref().unwrap_or("version unknown"),
        deployment.servers.len(),
        deployment
            .servers
            .iter()
            .map(|s| format!(
                "{} pid {}",
                s.http_base,
                s.pid.map_or("?".to_owned(), |p| p.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Value::Object(fields) = &mut value {
        fields.extend([
            (
                "mode".to_owned(),
                json!(if deployment.spawned {
                    "spawn"
                } else {
                    "attach"
                }),
            ),
            ("nextup_version".to_owned(), json!(deployment.version)),
            ("servers".to_owned(), json!(servers)),
            ("tenants".to_owned(), json!(deployment.slugs.len())),
            (
                "cli_setup_secs".to_owned(),
                json!(deployment.cli_setup.as_secs_f64()),
            ),
        ]);
    }
    (text, value)
}

/// The part of the head that needs no server: the machine and the limits.
pub fn machine_head(scenario: &str, common: &Common, limit: &FileLimit) -> (String, Value) {
    let machine = Machine::read();
    let text = format!(
        "loadgen {scenario}{}\nmachine: {} cores{}, {} MiB, kernel {}; open files {} (hard {}, was {}); ephemeral ports {}-{}\n",
        common
            .label
            .as_ref()
            .map_or(String::new(), |l| format!(" [{l}]")),
        machine.cores,
        machine
            .cpu_model
            .as_ref()
            .map_or(String::new(), |m| format!(" ({m})")),
        machine.memory_mib.unwrap_or(0),
        machine.kernel.as_deref().unwrap_or("?"),
        limit.soft,
        limit.hard,
        limit.was,
        machine.ephemeral_ports.0,
        machine.ephemeral_ports.1,
    );
    let value = json!({
        "tool": "loadgen",
        "scenario": scenario,
        "label": common.label,
        "machine": machine,
        "file_limit": limit,
    });
    (text, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut t = Table::new(&["sessions", "p50 ms"]);
        t.row(vec!["1000".into(), "2.5".into()]);
        t.row(vec!["10000 (idle)".into(), "12.25".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "sessions      p50 ms");
        assert_eq!(lines[1], "--------------------");
        assert_eq!(lines[2], "1000             2.5");
        assert_eq!(lines[3], "10000 (idle)   12.25");
    }

    #[test]
    fn missing_values_show_as_a_dash() {
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(1.26)), "1.3");
        assert_eq!(mib(Some(2048)), "2.0");
        assert_eq!(counts(&Default::default()), "none");
    }
}
