//! The call counters each loaded rule version keeps, bumped by the worker that calls it
//! and shown per rule by the admin endpoint (`/metrics`, `/api/rules`).

use std::sync::atomic::AtomicU64;

use crate::internal_events::LogLimit;

/// Call counters of one loaded rule version.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub calls: AtomicU64,
    pub routes: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub out_of_fuel: AtomicU64,
    pub invalid_output: AtomicU64,
    pub nanos: AtomicU64,
    /// Calls timed for `nanos`.
    pub timed: AtomicU64,
    /// Failures of this rule are logged at most once a second.
    pub failure_log: LogLimit,
}

/// One per-rule counter: name, help text, and where it is kept.
pub type RuleCounterField = (&'static str, &'static str, fn(&RuleCounters) -> &AtomicU64);

impl RuleCounters {
    /// Every counter shown per rule, in one place for `/metrics` and `/api/rules`.
    pub const FIELDS: [RuleCounterField; 8] = [
        ("calls", "Guest calls, by rule.", |c| &c.calls),
        ("routes", "Routes emitted, by rule.", |c| &c.routes),
        ("errors", "Events a rule rejected in band, by rule.", |c| &c.errors),
        ("traps", "Guest calls that trapped, by rule.", |c| &c.traps),
        ("out_of_fuel", "Guest calls that used up their instruction budget, by rule.", |c| &c.out_of_fuel),
        ("invalid_output", "Decisions discarded for invalid output, by rule.", |c| &c.invalid_output),
        ("nanoseconds", "Time spent in guest calls, by rule (one call in 16 timed).", |c| &c.nanos),
        ("timed", "Guest calls timed for the nanoseconds counter, by rule.", |c| &c.timed),
    ];
}
