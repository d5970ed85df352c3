//! The delivery latency histogram: from a hook event's time (`HookEvent::ts_ms`, when
//! the broker raised it) to the sink's confirmation of a record made from it.
//!
//! Fixed buckets, one atomic each, plus the running sum: observing is two relaxed
//! atomic adds after a short scan of the bounds. The event time has millisecond
//! resolution, so latencies do too.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets in milliseconds: from a healthy local Kafka (1 ms) to an
/// outage the spool absorbed (60 s); anything slower falls in `+Inf`.
pub const BOUNDS_MS: [u64; 15] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations by bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS_MS.len() + 1],
    sum_ms: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe_ms(&self, ms: u64) {
        let bucket = BOUNDS_MS.iter().position(|&bound| ms <= bound).unwrap_or(BOUNDS_MS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Observes the time from `event_ms` (unix ms) to now. An event time ahead of the
    /// clock (the clock was set back) counts as 0.
    pub fn observe_since(&self, event_ms: u64) {
        self.observe_ms(crate::hooks::now_ms().saturating_sub(event_ms));
    }

    fn counts(&self) -> [u64; BOUNDS_MS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts().iter().sum()
    }

    /// The Prometheus histogram `name` (`_bucket{le=..}` in seconds, `_sum`, `_count`).
    pub fn render(&self, out: &mut String, name: &str) {
        let counts = self.counts();
        let mut cumulative = 0;
        for (bound, count) in BOUNDS_MS.iter().zip(counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1000.0);
        }
        cumulative += counts[BOUNDS_MS.len()];
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }

    /// Estimated `q` quantile (0..=1) in milliseconds, interpolated within its bucket as
    /// Prometheus' `histogram_quantile` does; the top bound if it lies beyond it. `None`
    /// before the first observation.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0;
        for (i, &count) in counts[..BOUNDS_MS.len()].iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if i == 0 { 0 } else { BOUNDS_MS[i - 1] };
                let within = (rank - below as f64) / count as f64;
                return Some(lower as f64 + (BOUNDS_MS[i] - lower) as f64 * within);
            }
            below += count;
        }
        Some(BOUNDS_MS[BOUNDS_MS.len() - 1] as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let histogram = LatencyHistogram::default();
        for ms in [0, 1, 2, 3, 999, 1_000, 60_000, 60_001, 3_600_000] {
            histogram.observe_ms(ms);
        }
        let mut text = String::new();
        histogram.render(&mut text, "h");
        for line in [
            "h_bucket{le=\"0.001\"} 2",
            "h_bucket{le=\"0.002\"} 3",
            "h_bucket{le=\"0.005\"} 4",
            "h_bucket{le=\"0.5\"} 4",
            "h_bucket{le=\"1\"} 6",
            "h_bucket{le=\"30\"} 6",
            "h_bucket{le=\"60\"} 7",
            "h_bucket{le=\"+Inf\"} 9",
            "h_sum 3722.006",
            "h_count 9",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert_eq!(text.lines().count(), BOUNDS_MS.len() + 3, "{text}");
        assert_eq!(histogram.count(), 9);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_ms(0.5), None);
        // 90 observations in (5, 10] ms, 10 in (1000, 2500] ms.
        for _ in 0..90 {
            histogram.observe_ms(7);
        }
        for _ in 0..10 {
            histogram.observe_ms(2_000);
        }
        let quantile = |q| histogram.quantile_ms(q).expect("observed");
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
        close(quantile(0.5), 5.0 + 5.0 * 50.0 / 90.0);
        close(quantile(0.9), 10.0);
        close(quantile(0.99), 1_000.0 + 1_500.0 * 0.9);
        histogram.observe_ms(100_000);
        close(quantile(1.0), 60_000.0);
    }

    #[test]
    fn an_event_time_ahead_of_the_clock_counts_as_zero() {
        let histogram = LatencyHistogram::default();
        histogram.observe_since(crate::hooks::now_ms() + 60_000);
        assert_eq!(histogram.quantile_ms(1.0), Some(1.0));
        assert_eq!(histogram.count(), 1);
    }
}
