//! Percentiles and summaries of measurements.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0–100) of sorted values, by the nearest-rank method; `None` when
/// there are none.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Count, mean, extremes and the usual percentiles of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (sorting them in place); `None` when empty.
    pub fn of(values: &mut [f64]) -> Option<Summary> {
        values.sort_by(f64::total_cmp);
        let sorted = &*values;
        let count = sorted.len();
        Some(Summary {
            count,
            mean: sorted.iter().sum::<f64>() / count.max(1) as f64,
            min: *sorted.first()?,
            p50: percentile(sorted, 50.0)?,
            p90: percentile(sorted, 90.0)?,
            p99: percentile(sorted, 99.0)?,
            p999: percentile(sorted, 99.9)?,
            max: *sorted.last()?,
        })
    }

    /// Summarises durations in milliseconds.
    pub fn of_millis(durations: &[Duration]) -> Option<Summary> {
        let mut values: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        Self::of(&mut values)
    }

    /// `n=… p50=… p90=… p99=… max=…` with a unit suffix.
    pub fn brief(&self, unit: &str) -> String {
        format!(
            "n={} p50={:.1}{unit} p90={:.1}{unit} p99={:.1}{unit} max={:.1}{unit}",
            self.count, self.p50, self.p90, self.p99, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50.0));
        assert_eq!(percentile(&sorted, 99.0), Some(99.0));
        assert_eq!(percentile(&sorted, 100.0), Some(100.0));
        assert_eq!(percentile(&sorted, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.9), Some(7.0));
    }

    #[test]
    fn summaries_sort_their_input() {
        let mut values = vec![3.0, 1.0, 2.0];
        let s = Summary::of(&mut values).unwrap();
        assert_eq!(
            (s.count, s.min, s.p50, s.max, s.mean),
            (3, 1.0, 2.0, 3.0, 2.0)
        );
        assert!(Summary::of(&mut []).is_none());
    }
}
