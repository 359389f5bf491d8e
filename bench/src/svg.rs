//! A small line chart written as SVG text: axes from zero with round ticks, a grid, one
//! polyline with marked points per series, and a legend. Enough for "latency against
//! sessions" in a report; no plotting crate.

use std::fmt::Write;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// (x, y) points, drawn in the order given; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 58.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A round tick step (1, 2 or 5 × 10^k) that splits `0..=max` into about `target` parts,
/// and the ticks from 0 to the first tick at or above `max`.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

fn label(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl LineChart {
    pub fn to_svg(&self) -> String {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().filter(finite))
        };
        let x_ticks = ticks(points().map(|p| p.0).fold(0.0, f64::max), 6);
        let y_ticks = ticks(points().map(|p| p.1).fold(0.0, f64::max) * 1.05, 5);
        let x_max = *x_ticks.last().expect("at least two ticks");
        let y_max = *y_ticks.last().expect("at least two ticks");
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + x / x_max * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="26" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            LEFT + plot_w / 2.0,
            escape(&self.title)
        );
        for &y in &y_ticks {
            let py = sy(y);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 4.0,
                label(y)
            );
        }
        for &x in &x_ticks {
            let px = sx(x);
            let _ = writeln!(
                svg,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 18.0,
                label(x)
            );
        }
        let _ = writeln!(
            svg,
            r##"<polyline points="{LEFT},{TOP} {LEFT},{bottom} {right},{bottom}" fill="none" stroke="#333333"/>"##,
            bottom = TOP + plot_h,
            right = LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 16.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text x="18" y="{y:.1}" text-anchor="middle" transform="rotate(-90 18 {y:.1})">{}</text>"#,
            escape(&self.y_label),
            y = TOP + plot_h / 2.0
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = series.points.iter().filter(finite).copied().collect();
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for &(x, y) in &pts {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}: {} at {}</title></circle>"#,
                    sx(x),
                    sy(y),
                    escape(&series.name),
                    label((y * 1000.0).round() / 1000.0),
                    label(x)
                );
            }
            let ly = TOP + 10.0 + i as f64 * 22.0;
            let lx = LEFT + plot_w + 18.0;
            let _ = writeln!(
                svg,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 22.0,
                lx + 28.0,
                ly + 4.0,
                escape(&series.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> LineChart {
        LineChart {
            title: "Fan-out latency <all sessions>".to_owned(),
            x_label: "sessions".to_owned(),
            y_label: "ms".to_owned(),
            series,
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(
            ticks(10_000.0, 5),
            vec![0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10_000.0]
        );
        assert_eq!(ticks(7.3, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let empty = ticks(0.0, 5);
        assert_eq!(empty.len(), 6);
        assert!((empty[5] - 1.0).abs() < 1e-9, "{empty:?}");
        let t = ticks(0.37, 4);
        assert!(*t.last().unwrap() >= 0.37 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn one_polyline_and_one_marker_per_point_for_each_series() {
        let svg = chart(vec![
            Series {
                name: "p50".to_owned(),
                points: vec![(1000.0, 2.5), (5000.0, 8.0), (10_000.0, 15.0)],
            },
            Series {
                name: "p99".to_owned(),
                points: vec![(1000.0, 4.0), (5000.0, f64::NAN), (10_000.0, 40.0)],
            },
        ])
        .to_svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(
            svg.matches("stroke-width=\"2\"/>").count(),
            4,
            "2 lines + 2 legend keys"
        );
        assert_eq!(
            svg.matches("<circle").count(),
            5,
            "the NaN point is skipped"
        );
        assert!(svg.contains("&lt;all sessions&gt;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(svg.contains(">10000</text>"));
    }

    #[test]
    fn an_empty_chart_is_still_a_valid_drawing() {
        let svg = chart(vec![Series {
            name: "p50".to_owned(),
            points: vec![],
        }])
        .to_svg();
        assert!(svg.ends_with("</svg>\n"));
        assert!(!svg.contains("NaN"));
    }
}
