//! A worker's view of the rules (`Dispatcher`): its own instance of each loaded module,
//! the current `RuleSet` read once per event, and a module called only when one of its
//! subscriptions matches. Counts each call and failure, per rule and in `Metrics`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::decision::{MqttMessage, Route};
use super::engine::RuleEngine;
use super::instance::{CallFailure, RuleInstance};
use super::module::RuleModule;
use super::set::{RuleSet, SharedRuleSet};
use crate::hooks::HookEvent;
use crate::internal_events::{InternalEvent, RuleCallFailed};
use crate::metrics::Metrics;

/// A worker's view of the rules: its own instances of each loaded module.
pub struct Dispatcher {
    engine: RuleEngine,
    rules: SharedRuleSet,
    current: Arc<RuleSet>,
    instances: HashMap<u64, RuleInstance>,
    metrics: Arc<Metrics>,
    /// Guest calls made by this dispatcher, for sampling their duration.
    calls: u64,
}

/// One item of a module's decision, handed to the caller of `dispatch`.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// A record for the uplink (events of the MQTT edge).
    Route(&'a Route),
    /// An MQTT message for the downlink (`kafka.record`).
    Publish(&'a MqttMessage),
}

/// One guest call in this many is timed for the `nanoseconds` counters.
const TIME_SAMPLE: u64 = 16;

impl Dispatcher {
    pub fn new(engine: RuleEngine, rules: SharedRuleSet, metrics: Arc<Metrics>) -> Dispatcher {
        Dispatcher { engine, current: rules.load_full(), rules, instances: HashMap::new(), metrics, calls: 0 }
    }

    /// Runs `event` through every module subscribed to it and calls `emit` with each
    /// route and publish of every valid decision. Returns how many it emitted.
    pub fn dispatch(&mut self, event: &HookEvent, mut emit: impl FnMut(Output<'_>)) -> usize {
        self.refresh();
        let mut emitted = 0;
        for module in &self.current.modules {
            let Some(subscription) = module.subscription_for(event.hook, &event.topic) else {
                continue;
            };
            let instance = match self.instances.entry(module.id) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => match RuleInstance::new(&self.engine, module.clone()) {
                    Ok(instance) => entry.insert(instance),
                    Err(e) => {
                        let failure = CallFailure::Trap(format!("cannot instantiate: {e:#}"));
                        call_failed(&self.metrics, module, event, &failure);
                        continue;
                    }
                },
            };
            // Reading the clock costs about as much as a small rule's whole call, so time
            // one call in TIME_SAMPLE and count it for all of them.
            self.calls += 1;
            let started = self.calls.is_multiple_of(TIME_SAMPLE).then(Instant::now);
            let outcome = instance.decide(&self.engine, event, subscription);
            let counters = &module.counters;
            counters.calls.fetch_add(1, Ordering::Relaxed);
            if let Some(started) = started {
                counters.nanos.fetch_add(started.elapsed().as_nanos() as u64 * TIME_SAMPLE, Ordering::Relaxed);
                counters.timed.fetch_add(1, Ordering::Relaxed);
            }
            Metrics::add(&self.metrics.rule_calls, 1);
            match outcome {
                Ok(decision) => {
                    decision.routes.iter().for_each(|route| emit(Output::Route(route)));
                    decision.publishes.iter().for_each(|message| emit(Output::Publish(message)));
                    let outputs = decision.routes.len() + decision.publishes.len();
                    counters.routes.fetch_add(outputs as u64, Ordering::Relaxed);
                    Metrics::add(&self.metrics.rule_routes, outputs as u64);
                    emitted += outputs;
                }
                Err(failure) => {
                    if matches!(failure, CallFailure::Trap(_) | CallFailure::OutOfFuel) {
                        self.instances.remove(&module.id);
                    }
                    call_failed(&self.metrics, module, event, &failure);
                }
            }
        }
        emitted
    }

    /// Picks up a newly swapped rule set and drops instances of unloaded versions.
    fn refresh(&mut self) {
        if Arc::ptr_eq(&self.current, &self.rules.load()) {
            return;
        }
        self.current = self.rules.load_full();
        let live: Vec<u64> = self.current.modules.iter().map(|m| m.id).collect();
        self.instances.retain(|id, _| live.contains(id));
    }
}

/// Counts and logs a failed call, for its rule and for all rules.
fn call_failed(metrics: &Metrics, module: &RuleModule, event: &HookEvent, failure: &CallFailure) {
    let counters = &module.counters;
    let (rule_counter, global) = match failure {
        CallFailure::Rejected(_) => (&counters.errors, &metrics.rule_errors),
        CallFailure::Trap(_) => (&counters.traps, &metrics.rule_traps),
        CallFailure::OutOfFuel => (&counters.out_of_fuel, &metrics.rule_out_of_fuel),
        CallFailure::InvalidOutput(..) => (&counters.invalid_output, &metrics.rule_invalid_output),
    };
    let (log, rule) = (&counters.failure_log, &*module.name);
    RuleCallFailed { rule_counter, global, log, rule, event, failure }.emit();
}
