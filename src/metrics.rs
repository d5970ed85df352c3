//! Counters of everything that happens on the event path, shared by all stages.
//!
//! Plain atomics, bumped with relaxed ordering: they are statistics, never used for
//! synchronisation. `snapshot` gives a stable, named view for logs and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hooks::Hook;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Gateway-wide counters. Each field is a monotonically increasing count unless
        /// its doc says gauge.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Hook events raised, by hook (indexed by `Hook::code`).
            pub hook_events: [AtomicU64; Hook::ALL.len()],
            /// Gauge: MQTT clients currently connected.
            pub connections: AtomicI64,
        }

        impl Metrics {
            /// Every counter by name; hook events as `hook_events{<hook name>}`.
            pub fn snapshot(&self) -> BTreeMap<String, i64> {
                let mut map = BTreeMap::new();
                $(map.insert(stringify!($name).to_string(), self.$name.load(Ordering::Relaxed) as i64);)*
                for hook in Hook::ALL {
                    let count = self.hook_events[hook.code() as usize].load(Ordering::Relaxed);
                    map.insert(format!("hook_events{{{}}}", hook.name()), count as i64);
                }
                map.insert("connections".to_string(), self.connections.load(Ordering::Relaxed));
                map
            }
        }
    };
}

counters! {
    /// Connections closed for a malformed or oversized MQTT packet.
    mqtt_protocol_errors,
    /// Hook events dropped because the hook queue was full.
    hook_events_dropped,
    /// Guest calls made (`hookline_on_event`).
    rule_calls,
    /// Routes emitted by rules and accepted.
    rule_routes,
    /// Events a rule rejected in band (non-zero return).
    rule_errors,
    /// Guest calls that trapped, including memory exhaustion and stack overflow.
    rule_traps,
    /// Guest calls stopped when they used up their instruction budget.
    rule_out_of_fuel,
    /// Decisions discarded for invalid output (bad topic, too many routes, ...).
    rule_invalid_output,
    /// Rule files that failed to load (the previous version, if any, kept running).
    rule_load_failures,
    /// Rule files loaded or reloaded successfully.
    rule_loads,
    /// Records handed to the sink.
    records_sent,
    /// Records the sink confirmed (Kafka delivery report, or file write).
    records_delivered,
    /// Records the sink reported failed.
    records_failed,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
