//! What this node writes for other sessions: messages into the mailbox topic, and the
//! one queue every write of the cluster goes through (a record the producer refuses is
//! counted and logged, with what it costs).

use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::handle::Cluster;
use super::mailbox::Mailboxes;
use crate::internal_events::{ClusterWriteRefused, InternalEvent};
use crate::metrics::Metrics;

impl Cluster {
    /// Puts a message in `client`'s mailbox without waiting for Kafka.
    pub fn post(&self, client: &str, message: &[u8]) {
        let record = FutureRecord::to(&self.mailbox_topic).key(client).payload(message);
        if self.queue(record, "cannot queue a message for another node's session; it is lost for that session").is_some() {
            Metrics::add(&self.shared.metrics.cluster_mail_posted, 1);
        }
    }

    /// Queues a record for Kafka without waiting for it; a record the producer will not
    /// take is counted in `cluster_errors` and logged with `lost`, which says what that
    /// costs. `None` then.
    pub(super) fn queue(&self, record: FutureRecord<'_, str, [u8]>, lost: &str) -> Option<DeliveryFuture> {
        let (topic, key) = (record.topic, record.key.unwrap_or_default());
        let error = match self.producer.send_result(record) {
            Ok(delivery) => return Some(delivery),
            Err((error, _)) => error,
        };
        ClusterWriteRefused { metrics: &self.shared.metrics, topic, key, error: &error, lost }.emit();
        None
    }

    /// Puts a message in `client`'s mailbox; resolves once Kafka has it (acks=all), or
    /// with Kafka's error.
    pub fn post_durably(&self, client: &str, message: &[u8]) -> impl std::future::Future<Output = Result<(), String>> + use<> {
        let queued = self.producer.send_result(FutureRecord::to(&self.mailbox_topic).key(client).payload(message));
        let queued = queued.map_err(|(error, _)| error.to_string());
        let metrics = self.shared.metrics.clone();
        async move {
            let delivery = queued?;
            match delivery.await {
                Ok(Ok(_)) => {
                    Metrics::add(&metrics.cluster_mail_posted, 1);
                    Ok(())
                }
                Ok(Err((error, _))) => Err(error.to_string()),
                Err(_) => Err("the producer was dropped".to_string()),
            }
        }
    }

    pub fn mailboxes(&self) -> &Mailboxes {
        &self.shared.mailboxes
    }
}
