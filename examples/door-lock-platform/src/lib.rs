//! The door-lock business systems downstream of hookline (`docs/scenario.md`):
//! three independent Kafka consumers and a lock simulator.
//!
//! The binaries in `src/bin/` are thin: they read the config, connect, and feed records
//! to the pure domain logic here, which never touches the network and is unit-tested.
//! - `cli`: the flags every binary shares;
//! - `config`: the one TOML file all four binaries read (`platform.toml`);
//! - `envelope`: the gateway's Kafka record and the scenario's MQTT payloads;
//! - `sign`: the command signature (HMAC-SHA256, truncated) shared by sender and lock;
//! - `kafka`: consumer (committed offsets) and producer setup, the consume loop;
//! - `channel`: the notification channel trait, with log and webhook channels;
//! - `notifier`, `monitor`, `auditor`: what each business system decides per record;
//! - `lock`: a simulated lock and the business app commanding it.

pub mod auditor;
pub mod channel;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod kafka;
pub mod lock;
pub mod monitor;
pub mod notifier;
pub mod sign;

pub use config::PlatformConfig;

/// Wall clock in milliseconds since the epoch, the unit of the envelope's `ts`.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_millis() as i64
}

/// Log lines on stderr, coloured only on a terminal; `RUST_LOG` sets the filter
/// (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).with_writer(std::io::stderr).init();
}
