//! One worker's live instance of a rule module: a `Store` with its limits, reused for
//! every event the worker hands to that module.
//!
//! A call that traps or times out leaves the instance in an unknown state, so the worker
//! drops it and instantiates a fresh one for the next event.

use std::sync::Arc;

use wasmtime::{Store, Trap, TypedFunc};

use super::abi::{self, HostError, HostState, Phase};
use super::decision::Decision;
use super::engine::{describe_trap, RuleEngine};
use super::error::RulesError;
use super::module::RuleModule;
use crate::hooks::HookEvent;

/// Why a module's decision for an event was void.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The guest rejected the event in band (v1: non-zero, v2: negative).
    Rejected(i32),
    /// The guest trapped (including out of memory bounds and stack overflow).
    Trap(String),
    /// The guest used up its instruction budget (`rules.call_fuel`).
    OutOfFuel,
    /// Output the host refused (a route or publish breaking a rule of the ABI): why, and
    /// the code the host returned for it.
    InvalidOutput(&'static str, i32),
}

/// A code a guest call returned, with what it means when it is one of the host's.
struct Named(i32);

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match HostError::from_code(self.0) {
            Some(error) => write!(f, "{} = {}", self.0, error.meaning()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Rejected(code) => write!(f, "rule rejected the event (returned {})", Named(*code)),
            CallFailure::Trap(trap) => write!(f, "rule trapped: {trap}"),
            CallFailure::OutOfFuel => write!(f, "rule exceeded its instruction budget (rules.call_fuel)"),
            CallFailure::InvalidOutput(why, code) => write!(f, "rule output discarded: {why} ({})", Named(*code)),
        }
    }
}

pub struct RuleInstance {
    pub module: Arc<RuleModule>,
    store: Store<HostState>,
    on_event: TypedFunc<(i32, i32), i32>,
}

impl RuleInstance {
    pub fn new(engine: &RuleEngine, module: Arc<RuleModule>) -> Result<RuleInstance, RulesError> {
        // Guests may set up their own state in init; subscriptions were read at load.
        let (mut store, instance, code) =
            engine.instantiate(&module.pre, module.name.clone(), module.settings.clone()).map_err(RulesError::Instantiate)?;
        if code != 0 {
            return Err(RulesError::InitRefused { code });
        }
        store.data_mut().subscriptions.clear();
        let on_event = instance.get_typed_func::<(i32, i32), i32>(&mut store, abi::ON_EVENT).map_err(RulesError::OnEvent)?;
        Ok(RuleInstance { module, store, on_event })
    }

    /// Asks the guest where `event` goes. `subscription` is the index that matched.
    /// On success the decision is valid and borrowed until the next call.
    pub fn decide(&mut self, engine: &RuleEngine, event: &HookEvent, subscription: usize) -> Result<Decision<'_>, CallFailure> {
        let state = self.store.data_mut();
        state.phase = Phase::Event;
        state.event = Some(event.clone());
        state.parsed = None;
        state.routes.clear();
        state.publishes.clear();
        state.invalid = None;
        self.store.set_fuel(engine.fuel_per_call()).expect("fuel is enabled on the engine");
        let result = self.on_event.call(&mut self.store, (event.hook.code(), subscription as i32));
        let state = self.store.data_mut();
        state.phase = Phase::Idle;
        state.event = None;
        state.parsed = None;
        match (result, state.invalid) {
            // Output the host refused voids the decision, whatever the guest returned
            // after it (the host's own error code, passed on, included).
            (Ok(_), Some((why, code))) => Err(CallFailure::InvalidOutput(why, code)),
            (Ok(code), None) if !self.module.version.accepts(code) => Err(CallFailure::Rejected(code)),
            (Ok(_), None) => {
                let state = self.store.data();
                Ok(Decision { routes: &state.routes, publishes: &state.publishes })
            }
            (Err(e), _) if e.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel) => Err(CallFailure::OutOfFuel),
            (Err(e), _) => Err(CallFailure::Trap(describe_trap(&e))),
        }
    }
}
