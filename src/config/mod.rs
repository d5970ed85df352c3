//! The gateway's configuration: one struct tree, loaded from an optional TOML file and
//! overridden by command-line flags and `HOOKLINE_*` environment variables (see `cli`).
//!
//! One file per section (`[broker]` in `broker.rs`, ...), each key with a `///` doc and
//! its default beside it. Unknown keys are rejected so a typo fails at start-up instead
//! of being silently ignored. `Config` (`root.rs`) is the raw input, read by `load.rs`;
//! `Config::validate` (`validate.rs`) checks it once and gives a `ValidConfig`, the only
//! thing `Gateway::start` takes, or an error that names the key and the fix. The field
//! docs are also the config reference of `docs/configuration.md` (see
//! `tests/readme_tables.rs`).

mod admin;
mod auth;
mod broker;
mod buffer;
mod cluster;
mod downlink;
mod error;
mod kafka;
mod load;
mod root;
mod rules;
mod sink;
mod validate;

pub use admin::AdminConfig;
pub use auth::{AuthConfig, JwtConfig};
pub use broker::{BrokerConfig, TlsIdentity, DEFAULT_LISTEN};
pub use buffer::{BufferConfig, Fsync, WhenFull};
pub use cluster::ClusterConfig;
pub use downlink::{DownlinkConfig, StartFrom};
pub use error::ConfigError;
pub use kafka::{Compression, KafkaConfig};
pub use root::Config;
pub use rules::RulesConfig;
pub use sink::{ExchangeType, RabbitMqConfig, SinkConfig, SinkKind};
pub use validate::{Destination, ValidConfig};
