//! What can go wrong starting the downlink. Once started it retries on its own.

use rdkafka::error::KafkaError;

/// Why the downlink could not start.
#[derive(Debug, thiserror::Error)]
pub enum DownlinkError {
    #[error("cannot create the downlink's Kafka consumer (check [kafka] and [downlink])")]
    Consumer(#[source] KafkaError),
    #[error("cannot start the downlink thread")]
    Thread(#[source] std::io::Error),
}
