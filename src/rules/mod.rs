//! The rules runtime: WebAssembly modules from `rules/` decide, per hook event, which
//! Kafka topics the event goes to.
//!
//! - `engine`: the one wasmtime engine, its linker, and instantiation (calls bounded by
//!   fuel);
//! - `module`: a file compiled and validated once (`RuleModule`), with its `settings`
//!   and `counters`;
//! - `instance`: a worker's reusable instance of a module;
//! - `abi`: the host functions and state of the guest ABI (v1 and v2);
//! - `decision`: what a rule decides for an event (routes, MQTT messages);
//! - `payload`: payload fields by path, for the `payload_*` host functions;
//! - `set`: the rules in force; `dispatcher`: a worker's way through them;
//! - `reload`: watches the directory and swaps in a new `RuleSet` atomically;
//! - `signature`: signed rules.

mod abi;
mod counters;
mod decision;
mod dispatcher;
mod engine;
mod error;
mod instance;
mod module;
mod payload;
mod reload;
mod set;
mod settings;
pub mod signature;

pub use abi::{AbiVersion, EventField, HostError, ABI_MARKERS, IMPORTS};
pub use counters::RuleCounters;
pub use decision::{MessageProperties, MqttMessage, Route, RouteValue};
pub use dispatcher::{Dispatcher, Output};
pub use engine::RuleEngine;
pub use error::RulesError;
pub use instance::{CallFailure, RuleInstance};
pub use module::{LoadError, RuleModule};
pub use reload::RuleWatcher;
pub use set::{RuleFailure, RuleSet, SharedRuleSet};
pub use settings::{RuleSettings, SettingsError};
