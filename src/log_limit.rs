//! Rate-limited logging for things any client can make happen as often as it likes
//! (refused logins, malformed packets, dropped deliveries): at most one line a second
//! per kind, saying how many were left out since the last one. What is left out is never
//! lost from view: every occurrence is counted in a metric by the caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// One kind of log line: a `static`, or a field of what it is about.
#[derive(Debug)]
pub struct LogLimit {
    /// Second (since the process's first use of any `LogLimit`) of the last line logged,
    /// plus one; 0 before the first.
    last: AtomicU64,
    skipped: AtomicU64,
}

impl LogLimit {
    pub const fn new() -> LogLimit {
        LogLimit { last: AtomicU64::new(0), skipped: AtomicU64::new(0) }
    }

    /// `Some(lines left out since the last one)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        self.allow_at(START.get_or_init(Instant::now).elapsed().as_secs() + 1)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if last == now || self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.skipped.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_and_the_rest_counted() {
        let limit = LogLimit::new();
        assert_eq!(limit.allow_at(1), Some(0));
        for _ in 0..10 {
            assert_eq!(limit.allow_at(1), None);
        }
        assert_eq!(limit.allow_at(2), Some(10));
        assert_eq!(limit.allow_at(2), None);
    }
}
