//! What can go wrong starting the rules runtime (the engine, the first load and the
//! watch of the rules directory) and instantiating a loaded module for a worker.
//! A module that fails to load has its own error (`module::LoadError`): the gateway
//! keeps running without it.
//!
//! wasmtime's errors pass through as they are: they print their own chain, and the
//! gateway says what was being started.

use std::path::PathBuf;

use crate::util::watch::WatchError;

/// Why the rules runtime could not start, or a module not be instantiated.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Engine(wasmtime::Error),
    #[error(transparent)]
    Linker(wasmtime::Error),
    #[error(transparent)]
    Instantiate(wasmtime::Error),
    #[error("hookline_init returned {code}")]
    InitRefused { code: i32 },
    #[error(transparent)]
    OnEvent(wasmtime::Error),
    #[error("cannot create rules directory {dir}")]
    CreateDirectory { dir: PathBuf, source: std::io::Error },
    #[error("rules directory {dir} (rules.dir)")]
    Watch { dir: PathBuf, source: WatchError },
}
