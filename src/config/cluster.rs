//! `[cluster]`: gateways on the same Kafka with the same name form one broker.

use serde::{Deserialize, Serialize};

/// Gateway nodes pointed at the same Kafka with the same cluster name are one MQTT
/// broker: sessions, takeovers and messages span the nodes (see `docs/cluster.md`).
/// In force whenever Kafka is configured (`kafka.bootstrap_servers`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster name; its Kafka topics are `<name>.sessions`, `<name>.mailbox`,
    /// `<name>.nodes` and `<name>.retained`.
    pub name: String,
    /// Partitions of the mailbox topic when the gateway creates it. Never add partitions
    /// to it later: a client's messages must stay in one partition.
    pub mailbox_partitions: i32,
    /// Replication factor of the cluster's topics when the gateway creates them; -1:
    /// the Kafka broker's default.
    pub replication_factor: i32,
    /// The most a CONNECT waits on Kafka, in milliseconds: for its claim on the client id
    /// to be read back (a few milliseconds on a healthy Kafka), or for a starting node to
    /// catch up with the cluster. Past it, and at once while the node knows Kafka is away,
    /// the node serves the client from what it knows of the session and the claim takes
    /// effect when Kafka has it (see docs/cluster.md, "When Kafka is away"). Less than
    /// `broker.connect_timeout_ms`.
    pub claim_wait_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { name: "hookline".into(), mailbox_partitions: 8, replication_factor: -1, claim_wait_ms: 1000 }
    }
}
