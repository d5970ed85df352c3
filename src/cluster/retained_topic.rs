//! The cluster's retained messages: written to the retained topic, kept by every node as
//! its reader reads them.

use bytes::Bytes;
use rdkafka::producer::FutureRecord;

use super::handle::Cluster;

impl Cluster {
    /// Keeps `message` (encoded as for a mailbox) as the cluster's retained message of
    /// `topic`; `None` removes it (MQTT: a retained publish with an empty payload).
    pub fn retain(&self, topic: &str, message: Option<Bytes>) {
        let mut record = FutureRecord::<str, [u8]>::to(&self.retained_topic).key(topic);
        if let Some(message) = &message {
            record = record.payload(message);
        }
        self.queue(record, "cannot queue a retained message for the cluster; other nodes keep the previous one");
        // This node's subscribers see it at once; the topic's order settles the rest.
        self.shared.retained.set(topic, message);
    }

    /// The cluster's retained messages whose topic `matches` (encoded as for a mailbox).
    pub fn retained(&self, matches: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        self.shared.retained.matching(matches)
    }
}
