//! `[rules]`: where rule modules live and what each call may use.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Rule modules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory watched for `*.wasm` and `*.wat` rule modules.
    pub dir: PathBuf,
    /// Rule worker threads; events are sharded across them by client id, which keeps
    /// each device's events in order. 0 means one per CPU core.
    pub workers: usize,
    /// Instruction budget of one guest call (wasmtime fuel, about one unit per
    /// WebAssembly instruction); a call that uses it up is stopped and its decision void.
    pub call_fuel: u64,
    /// Largest linear memory a rule instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Quiet time after a change in the rules directory before it is reloaded, in
    /// milliseconds; lets editors and copies finish writing.
    pub reload_debounce_ms: u64,
    /// Hex ed25519 public key file (`hookline rule keygen`); when set, a rule loads only
    /// if its `<module>.sig` verifies (`hookline rule sign`).
    /// Default: absent: off
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: PathBuf::from("rules"),
            workers: 0,
            call_fuel: 10_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            reload_debounce_ms: 100,
            public_key: None,
        }
    }
}
