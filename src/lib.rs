//! hookline: an MQTT broker-gateway that turns device traffic into Kafka records,
//! routed by hot-reloaded WebAssembly rules, and carries commands from Kafka back to
//! devices.
//!
//! Data flow, one module per stage:
//! `broker` (the MQTT edge over rumqttd's router: logins and the ACL from `access`,
//! raising `hooks` events) -> `spool` (durable, sharded event log) -> `worker` (runs
//! `rules`, encodes the `envelope`) -> `sink` (Kafka, RabbitMQ or file). The way back:
//! `downlink` (Kafka records through the rules to MQTT publishes). Several gateways on
//! one Kafka are one broker through `cluster` (sessions, mailboxes, retained messages).
//! `config` and `cli` set it up, `metrics` counts it, `live_tail` copies routed records to
//! live viewers, `util::readiness` says whether it can serve (all served by `admin`),
//! `gateway` assembles it. On the ground floor, shared by the stages: `names` (Kafka
//! topic names, the gateway's own topics, a hash), `topic` (MQTT filters), `kafka`
//! (client settings), `internal_events` (what happens, counted and logged in one place)
//! and `util` (file watching, owned threads, readiness).

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
pub mod internal_events;
pub mod kafka;
pub mod live_tail;
pub mod metrics;
pub mod names;
pub mod retained;
pub mod rules;
pub mod sink;
pub mod spool;
pub mod topic;
pub mod util;
pub mod worker;

pub use config::{Config, ValidConfig};
pub use gateway::Gateway;
