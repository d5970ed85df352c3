//! What happens in a rule: a call that failed, counted for the rule and for all rules.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{InternalEvent, LogLimit};
use crate::hooks::HookEvent;
use crate::metrics::Metrics;

/// A rule's call failed (rejected, trapped, out of fuel, invalid output): the event is
/// not routed by that rule. Counted by kind twice, for the rule (`rule_counter`) and for
/// all rules (`global`); each rule logs under its own `log`, so one rule's failures do
/// not hide another's.
pub struct RuleCallFailed<'a> {
    pub rule_counter: &'a AtomicU64,
    pub global: &'a AtomicU64,
    pub log: &'a LogLimit,
    pub rule: &'a str,
    pub event: &'a HookEvent,
    pub failure: &'a dyn Display,
}

impl InternalEvent for RuleCallFailed<'_> {
    fn emit(self) {
        self.rule_counter.fetch_add(1, Ordering::Relaxed);
        Metrics::add(self.global, 1);
        if let Some(skipped) = self.log.allow() {
            tracing::warn!(
                skipped,
                rule = self.rule,
                hook = self.event.hook.name(),
                topic = %self.event.topic_str(),
                client_id = %self.event.client_id,
                "{}; this event is not routed by this rule, other rules are unaffected",
                self.failure
            );
        }
    }
}
