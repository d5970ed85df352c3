//! `[downlink]`: records consumed from Kafka and turned into MQTT messages by rules.

use serde::{Deserialize, Serialize};

/// The downlink: a Kafka consumer of the topics rules subscribe to with `kafka.record`
/// (see `docs/downlink.md`). Runs when `kafka.bootstrap_servers` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownlinkConfig {
    /// Kafka consumer group the downlink commits its offsets under. The nodes of a
    /// cluster share the partitions by their heartbeats, not by joining the group.
    pub group: String,
    /// Where a group with no committed offset starts reading: `earliest` (nothing
    /// produced before the first start is missed) or `latest`.
    pub start_from: StartFrom,
    /// Most MQTT messages published and not yet delivered; beyond it the downlink
    /// stops consuming until deliveries catch up.
    pub max_outstanding: usize,
}

/// See `DownlinkConfig::start_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    /// As librdkafka's `auto.offset.reset` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

impl Default for DownlinkConfig {
    fn default() -> Self {
        DownlinkConfig { group: "hookline-downlink".into(), start_from: StartFrom::Earliest, max_outstanding: 10_000 }
    }
}
