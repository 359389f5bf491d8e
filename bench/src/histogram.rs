//! A log-linear histogram of latencies in microseconds: exact below 256 µs, then 128
//! buckets per power of two (under 0.8 % error). Histograms merge by adding counts, so
//! several processes can each record their share of millions of measurements and send a
//! few kilobytes. Count, sum, min and max are exact.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

const EXACT: u64 = 256;
const SUB_BUCKETS: u64 = 128;
/// 256 exact buckets, then 128 per power of two from 2^8 to 2^63.
const BUCKETS: usize = (EXACT + (64 - 8) * SUB_BUCKETS) as usize;

fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    let exponent = 63 - u64::from(value.leading_zeros()); // 8..=63
    let shift = exponent - 7;
    let mantissa = value >> shift; // 128..=255
    (EXACT + (exponent - 8) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let exponent = 8 + (i - EXACT) / SUB_BUCKETS;
    let mantissa = SUB_BUCKETS + (i - EXACT) % SUB_BUCKETS;
    let shift = exponent - 7;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Vec::new(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The wire form: only the buckets that have counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SparseHistogram {
    /// (bucket, count) for every non-empty bucket.
    pub buckets: Vec<(u32, u64)>,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[index(micros)] += 1;
        self.count += 1;
        self.sum = self.sum.saturating_add(micros);
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `p`-th percentile (0–100) by nearest rank, as the top of its bucket (never
    /// beyond the exact min and max); `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The summary in milliseconds.
    pub fn summary_ms(&self) -> Option<Summary> {
        let ms = |p: f64| self.percentile(p).map(|us| us as f64 / 1e3);
        Some(Summary {
            count: self.count as usize,
            mean: self.sum as f64 / self.count.max(1) as f64 / 1e3,
            min: (self.count > 0).then_some(self.min as f64 / 1e3)?,
            p50: ms(50.0)?,
            p90: ms(90.0)?,
            p99: ms(99.0)?,
            p999: ms(99.9)?,
            max: self.max as f64 / 1e3,
        })
    }

    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (i as u32, *n))
                .collect(),
            sum: self.sum,
            min: self.min,
            max: self.max,
        }
    }

    pub fn from_sparse(sparse: &SparseHistogram) -> Histogram {
        let mut h = Histogram::default();
        if sparse.buckets.is_empty() {
            return h;
        }
        h.counts = vec![0; BUCKETS];
        for &(i, n) in &sparse.buckets {
            if let Some(slot) = h.counts.get_mut(i as usize) {
                *slot += n;
                h.count += n;
            }
        }
        h.sum = sparse.sum;
        h.min = sparse.min;
        h.max = sparse.max;
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_that_holds_it() {
        let mut previous_upper = None;
        for i in 0..BUCKETS {
            let top = upper(i);
            assert_eq!(index(top), i, "bucket {i}");
            if let Some(prev) = previous_upper {
                assert_eq!(index(prev + 1), i, "bucket {i} starts after {prev}");
            }
            previous_upper = Some(top);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        for v in [0, 1, 255, 256, 257, 1000, 123_456, 10_000_000] {
            let top = upper(index(v));
            assert!(
                top >= v && (top - v) as f64 <= v as f64 / 128.0 + 1.0,
                "{v}"
            );
        }
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_exact_ones() {
        let mut h = Histogram::default();
        let mut values: Vec<f64> = Vec::new();
        for v in (1..=10_000u64).map(|i| i * 37 % 50_000) {
            h.record(v);
            values.push(v as f64);
        }
        values.sort_by(f64::total_cmp);
        for p in [50.0, 90.0, 99.0, 99.9] {
            let exact = crate::stats::percentile(&values, p).unwrap();
            let approx = h.percentile(p).unwrap() as f64;
            assert!(
                approx >= exact && approx - exact <= exact / 128.0 + 1.0,
                "p{p}: {approx} vs {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), h.max());
        let s = h.summary_ms().unwrap();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max, h.max().unwrap() as f64 / 1e3);
    }

    #[test]
    fn merged_histograms_equal_one_that_saw_everything() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..5000u64 {
            let v = v * v % 100_003;
            if v % 3 == 0 { &mut a } else { &mut b }.record(v);
            all.record(v);
        }
        let mut merged = Histogram::default();
        merged.merge(&a);
        merged.merge(&Histogram::default());
        merged.merge(&b);
        assert_eq!(merged, all);
        assert_eq!(Histogram::from_sparse(&all.to_sparse()), all);
        assert!(all.to_sparse().buckets.len() < 2000);
    }

    #[test]
    fn an_empty_histogram_has_no_percentiles() {
        let h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        assert!(h.summary_ms().is_none());
        assert_eq!(Histogram::from_sparse(&h.to_sparse()), h);
    }
}
