//! The downlink's way into the broker (`Downlink`): MQTT messages made from consumed
//! Kafka records go into the router, or in a cluster into the mailboxes of the matching
//! sessions, and the record learns when they are delivered (`RecordAcks`).

use std::sync::Arc;

use bytes::Bytes;
use rumqttd::protocol::{Publish, PublishProperties};

use super::origin::Origin;
use super::{mail_message, Edge, RecordAcks};
use crate::cluster::Cluster;
use crate::hooks::now_ms;
use crate::metrics::Metrics;
use crate::rules::MqttMessage;

/// The downlink's way into the broker: publishes MQTT messages made from consumed Kafka
/// records, and learns when they are delivered.
#[derive(Clone)]
pub struct Downlink(pub(super) Arc<Edge>);

/// What became of a downlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downlinked {
    /// In the router, on its way to the matching subscribers; `record` learns of its
    /// first delivery. In a cluster: posted to the mailbox of every matching session;
    /// `record` learns when Kafka has them all.
    Published,
    /// No subscription matches its topic (and it is not retained): on this node, or in
    /// a cluster on any node.
    NoSubscriber,
    /// Larger than `broker.max_packet_size`.
    TooLarge,
}

impl Downlink {
    /// Publishes `message` (its payload, or `value` when it has none) as if `from` had
    /// published it; its first delivery counts toward `record`.
    pub async fn publish_as(&self, message: &MqttMessage, value: &Bytes, from: &Arc<str>, record: &Arc<RecordAcks>) -> Downlinked {
        let edge = &self.0;
        let payload = message.payload.as_ref().map_or_else(|| value.clone(), |p| Bytes::copy_from_slice(p));
        if payload.len() + message.topic.len() + 64 > edge.limits.max_packet_size {
            return Downlinked::TooLarge;
        }
        let clustered = edge.cluster.as_ref().is_some_and(|c| c.is_ready());
        if !clustered && !message.retain && !edge.any_subscriber(message.topic.as_bytes()) {
            return Downlinked::NoSubscriber;
        }
        let publish = Publish::new(Bytes::copy_from_slice(message.topic.as_bytes()), payload, message.retain);
        let set = &message.properties;
        let props = PublishProperties {
            payload_format_indicator: set.payload_format_indicator,
            message_expiry_interval: set.message_expiry_interval,
            response_topic: set.response_topic.clone(),
            correlation_data: set.correlation_data.clone().map(Bytes::from),
            user_properties: set.user_properties.clone(),
            content_type: set.content_type.clone(),
            ..PublishProperties::default()
        };
        // Until this node has caught up with the cluster, its clients are served alone,
        // through its router.
        if let Some(cluster) = edge.cluster.as_ref().filter(|c| c.is_ready()) {
            let origin = Origin { qos: message.qos, retain: message.retain, published_ms: now_ms(), from: from.clone(), ack: None };
            return self.post(cluster, publish, props, &origin, record);
        }
        // QoS 0 messages are never acknowledged; their first write resolves them.
        let ack = edge.acks.expect(record, publish.topic.clone());
        let origin = Origin { qos: message.qos, retain: message.retain, published_ms: now_ms(), from: from.clone(), ack: Some(ack) };
        if !edge.publish_from_inside(publish, Some(props), &origin).await {
            edge.acks.resolve(Some(ack));
            return if message.retain { Downlinked::Published } else { Downlinked::NoSubscriber };
        }
        Downlinked::Published
    }

    /// Posts a downlink message to the mailbox of every session of the cluster that
    /// matches it (QoS 0: those connected); each post counts toward `record` until Kafka
    /// has it. Posts are queued in order, so a device's messages keep their order.
    fn post(&self, cluster: &Cluster, publish: Publish, props: PublishProperties, origin: &Origin, record: &Arc<RecordAcks>) -> Downlinked {
        let props = Some(props);
        let retained = origin.retain;
        if retained {
            self.0.retain(&publish.topic, &publish.payload, &props, origin);
        }
        let targets: Vec<_> =
            cluster.subscribers(&publish.topic).into_iter().filter(|(_, connected)| origin.qos > 0 || *connected).collect();
        if targets.is_empty() {
            return if retained { Downlinked::Published } else { Downlinked::NoSubscriber };
        }
        let message = mail_message::encode(publish.topic.clone(), publish.payload, props, origin);
        for (client, _) in targets {
            let ack = self.0.acks.expect(record, publish.topic.clone());
            let posted = cluster.post_durably(&client, &message);
            let edge = self.0.clone();
            tokio::spawn(async move {
                match posted.await {
                    Ok(()) => edge.acks.resolve(Some(ack)),
                    // Left unresolved: the record is not committed, and is consumed again
                    // after a restart or rebalance.
                    Err(error) => {
                        Metrics::add(&edge.metrics.cluster_errors, 1);
                        tracing::error!(client = %client, %error, "cannot post a downlink message to its session's mailbox in Kafka");
                    }
                }
            });
        }
        Downlinked::Published
    }

    /// Downlink messages published and not yet delivered.
    pub fn outstanding(&self) -> usize {
        self.0.acks.outstanding()
    }
}
