//! The one wasmtime `Engine` of the process, its `Linker` with the `hookline.*`
//! imports, and instantiation: a `Store` per instance with the engine's limits and fuel,
//! `hookline_init` run in it. The engine lives as long as the gateway; every rule module
//! is compiled against it once.
//!
//! Calls are bounded by fuel (an instruction budget), not by a wall-clock deadline: on a
//! busy machine a worker thread can be descheduled mid-call, and a deadline would then
//! kill a healthy rule and lose its decision (our ordering test saw exactly that on two
//! loaded cores with epoch interruption). Fuel stops a runaway guest after the same
//! amount of work whatever the scheduler does.

use std::sync::Arc;

use wasmtime::{Config, Engine, Instance, InstancePre, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap};

use super::abi::{self, HostState, Phase};
use super::error::RulesError;
use super::settings::RuleSettings;
use crate::config::RulesConfig;
use crate::sink::DestinationNames;

#[derive(Clone)]
pub struct RuleEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    fuel_per_call: u64,
    max_memory_bytes: usize,
    destinations: DestinationNames,
}

impl RuleEngine {
    /// The engine for rules routing to `destinations`.
    pub fn new(config: &RulesConfig, destinations: DestinationNames) -> Result<RuleEngine, RulesError> {
        let mut wasm_config = Config::new();
        wasm_config.consume_fuel(true);
        // Keep a deep recursion in a guest a trap, well before the host's own stack.
        wasm_config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&wasm_config).map_err(RulesError::Engine)?;
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker).map_err(RulesError::Linker)?;
        Ok(RuleEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                fuel_per_call: config.call_fuel.max(1),
                max_memory_bytes: config.max_memory_bytes,
                destinations,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Fuel (about one unit per WebAssembly instruction) a single guest call may burn.
    pub fn fuel_per_call(&self) -> u64 {
        self.inner.fuel_per_call
    }

    /// Limits of one instance's store: one memory of at most `max_memory_bytes`. Growing
    /// past it traps at once: a failing `memory.grow` in a loop is cheap in fuel but slow
    /// in time, so a memory bomb must not be left to spin on it.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.inner.max_memory_bytes)
            .trap_on_grow_failure(true)
            .table_elements(100_000)
            .instances(1)
            .memories(1)
            .tables(4)
            .build()
    }

    /// A fresh store with the engine's limits, the module instantiated in it and
    /// `hookline_init` run; returns init's result code with them (what init subscribed
    /// to is in the store's data). Used to load a module and to instantiate it per
    /// worker.
    pub(super) fn instantiate(
        &self,
        pre: &InstancePre<HostState>,
        name: Arc<str>,
        settings: Arc<RuleSettings>,
    ) -> wasmtime::Result<(Store<HostState>, Instance, i32)> {
        let mut store = Store::new(self.engine(), HostState::new(name, settings, self.store_limits(), self.inner.destinations.clone()));
        store.limiter(|state| &mut state.limits);
        store.set_fuel(self.fuel_per_call())?;
        let instance = pre.instantiate(&mut store)?;
        store.data_mut().memory = instance.get_memory(&mut store, "memory");
        store.data_mut().phase = Phase::Init;
        let init = instance.get_typed_func::<(), i32>(&mut store, abi::INIT)?;
        let code = init.call(&mut store, ())?;
        store.data_mut().phase = Phase::Idle;
        Ok((store, instance, code))
    }
}

/// One line: the trap's kind and, when there is one, the guest function it hit in.
pub(super) fn describe_trap(error: &wasmtime::Error) -> String {
    let mut text = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if let Some(frame) = error.downcast_ref::<wasmtime::WasmBacktrace>().and_then(|bt| bt.frames().first()) {
        text.push_str(&format!(" (in {})", frame.func_name().unwrap_or("an unnamed function")));
    }
    text
}
