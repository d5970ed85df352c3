//! What happens in a rule: a call that failed, counted for the rule and for all rules.

use std::sync::atomic::Ordering;

use super::InternalEvent;
use crate::hooks::HookEvent;
use crate::metrics::Metrics;
use crate::rules::{CallFailure, RuleModule};

/// A rule's call failed (rejected, trapped, out of fuel, invalid output): the event is
/// not routed by that rule. Each rule logs under its own limit, so one rule's failures
/// do not hide another's.
pub struct RuleCallFailed<'a> {
    pub metrics: &'a Metrics,
    pub module: &'a RuleModule,
    pub event: &'a HookEvent,
    pub failure: &'a CallFailure,
}

impl InternalEvent for RuleCallFailed<'_> {
    fn emit(self) {
        let (metrics, counters) = (self.metrics, &self.module.counters);
        let (rule_counter, global) = match self.failure {
            CallFailure::Rejected(_) => (&counters.errors, &metrics.rule_errors),
            CallFailure::Trap(_) => (&counters.traps, &metrics.rule_traps),
            CallFailure::OutOfFuel => (&counters.out_of_fuel, &metrics.rule_out_of_fuel),
            CallFailure::InvalidOutput(..) => (&counters.invalid_output, &metrics.rule_invalid_output),
        };
        rule_counter.fetch_add(1, Ordering::Relaxed);
        Metrics::add(global, 1);
        if let Some(skipped) = counters.failure_log.allow() {
            tracing::warn!(
                skipped,
                rule = %self.module.name,
                hook = self.event.hook.name(),
                topic = %self.event.topic_str(),
                client_id = %self.event.client_id,
                "{}; this event is not routed by this rule, other rules are unaffected",
                self.failure
            );
        }
    }
}
