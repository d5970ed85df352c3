//! What can go wrong joining the cluster: creating its Kafka clients and the reader's
//! thread at once, then reading the cluster's topics in the reader, which retries.
//! Claims have their own error (`claims::ClaimError`).

use rdkafka::error::KafkaError;

/// Why the node could not join, or its reader not read the cluster's topics yet.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot create the cluster's Kafka producer (check [kafka])")]
    Producer(#[source] KafkaError),
    #[error("cannot create the cluster's Kafka reader (check [kafka])")]
    Reader(#[source] KafkaError),
    #[error("cannot create a Kafka admin client (check [kafka])")]
    AdminClient(#[source] KafkaError),
    #[error("cannot start the cluster reader thread")]
    ReaderThread(#[source] std::io::Error),
    #[error("cannot read the metadata of {topic}")]
    Metadata { topic: String, source: KafkaError },
    #[error("the cluster topic {topic} does not exist, and could not be created")]
    TopicMissing { topic: String },
    #[error("cannot read where the cluster topic {topic} ends")]
    Watermarks { topic: String, source: KafkaError },
    #[error("cannot read the cluster's topics")]
    Assign(#[source] KafkaError),
    /// Only logged, never passed on: the message carries Kafka's reason itself.
    #[error("cannot read the cluster's mailbox topic: {0}")]
    AssignMailbox(KafkaError),
    /// Any other request to Kafka, as Kafka words its refusal.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}
