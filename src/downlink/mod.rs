//! The downlink: Kafka to devices. A consumer of the Kafka topics that rules subscribe
//! to with `kafka.record`; each record goes through the rules, and the MQTT messages
//! they decide on are published into the broker as if a client had published them,
//! with `from` = `kafka:<topic>`.
//!
//! A record's offset is committed only once it is done: every message of it delivered
//! to a subscriber (PUBACK, PUBREC, or written at QoS 0), or found to have no
//! subscriber on this node (counted in `downlink_undeliverable`), or refused by the
//! rules. Until then a restart, or its partition moving to another node, consumes it
//! again: at least once. When `downlink.max_outstanding` messages wait for delivery,
//! consuming pauses.
//!
//! The nodes of a cluster share the partitions of the downlink's topics among the nodes
//! alive, as their heartbeats tell (`share`), not through a Kafka consumer group: a
//! node stopped gives its partitions up at once, one restarted takes its own back at
//! once, and one that died loses them after `cluster::NODE_TIMEOUT`, with no group to
//! form or rebalance. A node gives a partition up only after committing what it has
//! done of it, and takes one only once no live node says it holds it. Offsets are
//! committed under `downlink.group`.
//!
//! A record is routed by the sessions as they stand when it is read: when a message of
//! a batch finds no subscriber in this node's copy of the sessions, the node first reads
//! the sessions topic up to its end at that moment (a round trip to Kafka, paid only
//! then), so a subscription acknowledged on any node before a command was produced is
//! known.
//!
//! One thread: rules are CPU-bound and records of a partition are published in order.

mod consumer;
mod error;
mod offsets;
mod share;

pub use consumer::DownlinkSource;
pub use error::DownlinkError;
