//! hookline: an MQTT broker-gateway that turns device traffic into Kafka records,
//! routed by hot-reloaded WebAssembly rules.
//!
//! Data flow, one module per stage:
//! `broker` (the MQTT edge over rumqttd's router, raising `hooks` events) -> `spool` (durable, sharded
//! event log) -> `worker` (runs `rules`, encodes the `envelope`) -> `sink` (Kafka or
//! file). `config` and `cli` set it
//! up, `metrics` counts it, `tail` copies routed records to live viewers, `readiness`
//! says whether it can serve (all served by `admin`), `gateway` assembles it.

pub mod access;
pub mod admin;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod downlink;
pub mod envelope;
pub mod gateway;
pub mod hooks;
pub mod kafka;
pub mod log_limit;
pub mod metrics;
pub mod readiness;
pub mod retained;
pub mod rules;
pub mod sink;
pub mod spool;
pub mod tail;
pub mod thread;
pub mod topic;
pub mod watch;
pub mod worker;

pub use config::{Config, ValidConfig};
pub use gateway::Gateway;

/// FNV-1a: a few instructions per byte, stable across runs and builds, enough to spread
/// client ids over spool shards and topic names over the metrics table (neither is
/// chosen by anyone trying to make them collide).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}
