//! The host side of the guest ABI, versions 1 and 2 (`wasm-sdk/ABI.md`): the `hookline.*` imports, the
//! typed state each `Store` carries, and the validation of what a guest emits.
//!
//! Host functions never trap on bad guest input: they return the ABI's negative codes.
//! A route that breaks a limit also marks the whole decision invalid, so a half-applied
//! decision never reaches Kafka.
//!
//! The ABI's code tables live here (`codes.rs`) and in `crate::hooks` only: [`Hook`](crate::hooks::Hook) (hook codes and
//! names), [`EventField`] (`event_read` fields), [`HostError`] (negative results) and
//! [`IMPORTS`]. `tests/it/sdk_tables.rs` checks every SDK under `wasm-sdk/` and
//! `wasm-sdk/ABI.md` against them.
//!
//! One file a job: `codes` (the tables), `state` (a `Store`'s data), `guest_memory`
//! (bounds-checked access), `read` (what a guest reads), `output` (what it emits, checked)
//! and `linker` (the imports registered on wasmtime's linker).

mod codes;
mod guest_memory;
mod linker;
mod output;
mod read;
mod state;

pub use codes::*;
pub use linker::add_to_linker;
pub use state::{HostState, Phase};
