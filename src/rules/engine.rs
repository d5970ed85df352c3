//! The one wasmtime `Engine` of the process, its `Linker` with the `hookline.*` imports,
//! and the epoch ticker that enforces per-call deadlines.
//!
//! Lifetimes: the engine lives as long as the gateway; every rule module is compiled
//! against it once; the ticker thread stops when the last `RuleEngine` clone is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, Linker, StoreLimits, StoreLimitsBuilder};

use super::abi::{self, HostState};
use crate::config::RulesConfig;

/// Epoch tick period; call deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(1);

#[derive(Clone)]
pub struct RuleEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    deadline_ticks: u64,
    max_memory_bytes: usize,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl RuleEngine {
    pub fn new(config: &RulesConfig) -> anyhow::Result<RuleEngine> {
        let mut wasm_config = Config::new();
        wasm_config.epoch_interruption(true);
        // Keep a deep recursion in a guest a trap, well before the host's own stack.
        wasm_config.max_wasm_stack(512 * 1024);
        let engine = Engine::new(&wasm_config)?;
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("hookline-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticker_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })?;

        Ok(RuleEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                deadline_ticks: config.call_timeout_ms.max(1),
                max_memory_bytes: config.max_memory_bytes,
                stop_ticker,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// Epoch ticks a single guest call may run.
    pub fn deadline_ticks(&self) -> u64 {
        self.inner.deadline_ticks
    }

    /// Limits of one instance's store: one memory of at most `max_memory_bytes`.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.inner.max_memory_bytes)
            .table_elements(100_000)
            .instances(1)
            .memories(1)
            .tables(4)
            .build()
    }
}
