//! `[kafka]`: the Kafka client settings shared by the Kafka sink, the downlink and the cluster.

use serde::{Deserialize, Serialize};

/// Kafka client settings. The Kafka sink's producer uses them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`; needed by `sink.kind =
    /// "kafka"`.
    /// Default: empty
    pub bootstrap_servers: String,
    /// Compression codec of record batches: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: Compression,
    /// How long the producer waits to fill a batch, in milliseconds.
    pub linger_ms: u64,
    /// How long a record may wait for delivery before it is reported failed, in
    /// milliseconds; 0 waits forever (records stay queued while Kafka is down).
    pub message_timeout_ms: u64,
    /// librdkafka properties passed through as is (e.g. `"security.protocol" = "ssl"`);
    /// they override the settings above.
    /// Default: empty
    pub properties: std::collections::BTreeMap<String, String>,
}

/// See `KafkaConfig::compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's name, as librdkafka's `compression.type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: String::new(),
            compression: Compression::Lz4,
            linger_ms: 5,
            message_timeout_ms: 0,
            properties: Default::default(),
        }
    }
}
