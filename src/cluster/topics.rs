//! The cluster's topics: their names and partitions, and how a node creates them when
//! they are missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use crate::config::ClusterConfig;
use crate::kafka::KafkaContext;

/// How long Kafka may take to create a cluster topic.
const CREATE_WAIT: Duration = Duration::from_secs(10);

/// The cluster's topics, and how the gateway creates them.
pub(super) struct Topics {
    pub sessions: String,
    pub mailbox: String,
    pub nodes: String,
    pub retained: String,
    pub mailbox_partitions: i32,
    pub replication_factor: i32,
}

/// The cluster's topics and their partitions, as a node creates them: sessions (one
/// partition, compacted), mailbox, nodes and retained (one partition each, compacted).
/// For those who create them beforehand (a Kafka without CreateTopics, librdkafka's mock
/// cluster).
pub fn topics(config: &ClusterConfig) -> [(String, i32); 4] {
    [
        (format!("{}.sessions", config.name), 1),
        (format!("{}.mailbox", config.name), config.mailbox_partitions),
        (format!("{}.nodes", config.name), 1),
        (format!("{}.retained", config.name), 1),
    ]
}

/// Creates a cluster topic. Failing (a Kafka without CreateTopics, no rights, another
/// node creating it at the same moment) is only logged: reading the topic says whether
/// it is there.
pub(super) async fn create_topic(admin: &AdminClient<KafkaContext>, topic: &str, partitions: i32, replication: i32, compact: bool) {
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    if compact {
        new = new.set("cleanup.policy", "compact");
    }
    let options = AdminOptions::new().operation_timeout(Some(CREATE_WAIT)).request_timeout(Some(CREATE_WAIT));
    match admin.create_topics([&new], &options).await.map(|mut results| results.pop()) {
        Ok(Some(Ok(_))) => tracing::info!(topic, partitions, compact, "created a cluster topic"),
        Ok(Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists)))) => {}
        Ok(Some(Err((_, code)))) => tracing::warn!(topic, %code, "cannot create a cluster topic (check cluster.replication_factor)"),
        Ok(None) => {}
        Err(error) => tracing::warn!(topic, %error, "cannot create a cluster topic"),
    }
}
