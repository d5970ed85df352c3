//! Rate-limited logging for things any client can make happen as often as it likes
//! (refused logins, malformed packets, dropped deliveries): at most one line per kind in
//! each second of the clock the log is stamped with, saying how many were left out since
//! the last one. What is left out is never lost from view: every occurrence is counted
//! in a metric by the caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One kind of log line: a `static`, or a field of what it is about.
#[derive(Debug)]
pub struct LogLimit {
    /// Unix second of the last line logged; 0 before the first.
    last: AtomicU64,
    skipped: AtomicU64,
}

impl LogLimit {
    pub const fn new() -> LogLimit {
        LogLimit { last: AtomicU64::new(0), skipped: AtomicU64::new(0) }
    }

    /// `Some(lines left out since the last one)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        // A clock set back only lets lines through early: the next second differs.
        self.allow_at(SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs()))
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
