//! Integration tests of the door-lock platform: each consumer binary runs as its own
//! process against tansu (a Kafka-protocol broker, separate process), fed records in
//! the gateway's exact envelope format; outputs are read back from Kafka, the audit
//! file and a local webhook server.

// The gateway's test launchers, shared rather than copied; the platform's tests use
// only part of them.
#[allow(dead_code)]
#[path = "../../../../tests/it/support/ports.rs"]
mod ports;
#[allow(dead_code)]
#[path = "../../../../tests/it/support/tansu.rs"]
mod tansu;

mod auditor;
mod cluster;
mod monitor;
mod notifier;
mod restart;
mod run_local;
mod scene;
mod simulator;
