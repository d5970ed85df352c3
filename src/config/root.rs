//! The root of the tree: one section per stage, and the few keys above them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{AdminConfig, AuthConfig, BrokerConfig, BufferConfig, ClusterConfig, DownlinkConfig, KafkaConfig, RulesConfig, SinkConfig};

/// Root of the configuration tree: the raw input, as read from the file and the flags.
/// `Config::validate` turns it into a `ValidConfig`, the only kind the gateway runs on.
///
/// The `///` docs of the fields below are the config reference of `docs/configuration.md`
/// (`tests/readme_tables.rs` renders it from them): write each as the table's "meaning" cell. A `Default:` line
/// gives the default cell where the built-in value cannot show it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of this gateway node, written as `node` in every envelope.
    /// Default: `gateway@<hostname>`
    pub node: String,
    /// Directory of local state: the spool (unless `buffer.dir` says otherwise) and the
    /// file sink's `records.jsonl`.
    pub data: PathBuf,
    /// MQTT listener and broker limits.
    pub broker: BrokerConfig,
    /// The durable buffer between the broker and the rule workers.
    pub buffer: BufferConfig,
    /// Rule modules: where they live and what each call may use.
    pub rules: RulesConfig,
    /// Where routed records go.
    pub sink: SinkConfig,
    /// Kafka client settings, used by the Kafka sink and the downlink.
    pub kafka: KafkaConfig,
    /// The downlink: records consumed from Kafka, turned into MQTT messages by rules.
    pub downlink: DownlinkConfig,
    /// The cluster: gateways on the same Kafka with the same name form one broker.
    pub cluster: ClusterConfig,
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, the dashboard and its
    /// API).
    pub admin: AdminConfig,
    /// Who may connect, and which topics each client may use.
    pub auth: AuthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: default_node(),
            data: PathBuf::from("data"),
            broker: BrokerConfig::default(),
            buffer: BufferConfig::default(),
            rules: RulesConfig::default(),
            sink: SinkConfig::default(),
            kafka: KafkaConfig::default(),
            downlink: DownlinkConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Config {
    /// Rule worker count with `0` resolved to the number of CPU cores.
    pub fn rule_workers(&self) -> usize {
        match self.rules.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `gateway@<hostname>`, as the widely deployed bridge names its nodes.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    format!("gateway@{host}")
}
