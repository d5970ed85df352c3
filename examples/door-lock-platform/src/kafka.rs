//! Kafka plumbing shared by the three consumers: a consumer in its own group whose
//! offsets are committed only for records fully handled, a producer for the output
//! topics, and the consume loop.
//!
//! At-least-once: auto-commit is on but auto offset *store* is off, so librdkafka only
//! commits offsets the loop stored after the handler returned Ok (outputs delivered).
//! On SIGINT/SIGTERM the loop commits synchronously and exits, so a restarted consumer
//! resumes exactly after the last handled record; after a crash it re-reads at most the
//! last second of records.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};
use tracing::{info, warn};

use crate::config::KafkaConfig;

/// How often the handler's `tick` runs, and how long one receive waits.
const TICK: Duration = Duration::from_secs(1);

fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// A consumer in `group_id`, subscribed to `topics`, starting at the beginning of a
/// topic the group has never committed on.
pub fn consumer(kafka: &KafkaConfig, group_id: &str, topics: &[&str]) -> anyhow::Result<StreamConsumer> {
    let consumer: StreamConsumer = client_config(kafka)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create Kafka consumer for {}: {e}", kafka.bootstrap_servers))?;
    consumer.subscribe(topics).map_err(|e| anyhow::anyhow!("cannot subscribe to {topics:?}: {e}"))?;
    Ok(consumer)
}

/// An idempotent producer (`acks=all`) for the output topics.
pub fn producer(kafka: &KafkaConfig) -> anyhow::Result<FutureProducer> {
    client_config(kafka)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create Kafka producer for {}: {e}", kafka.bootstrap_servers))
}

/// Produces one record and waits until Kafka acknowledged it.
pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, value: &str) -> anyhow::Result<()> {
    producer
        .send(FutureRecord::to(topic).key(key).payload(value), Timeout::After(Duration::from_secs(60)))
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("cannot write to Kafka topic {topic}: {e}"))
}

/// What a consumer does with its records.
// The handlers run on the consume loop's own task, so the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait RecordHandler {
    /// Handles one record. Ok stores its offset; Err stops the consumer without it, so
    /// the record is handled again after a restart. A record that can never be handled
    /// (not an envelope) is logged and answered with Ok, so it cannot block the stream.
    async fn record(&mut self, topic: &str, value: &[u8]) -> anyhow::Result<()>;

    /// Runs once a second, between records; `idle` says no record arrived since the
    /// previous tick (the consumer is caught up). Only the monitor needs a clock.
    async fn tick(&mut self, idle: bool) -> anyhow::Result<()> {
        let _ = idle;
        Ok(())
    }
}

/// Feeds every record to `handler` until SIGINT or SIGTERM, then commits and returns.
pub async fn run(consumer: StreamConsumer, handler: &mut impl RecordHandler) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut ticks = tokio::time::interval(TICK);
    let mut idle = true;
    let outcome = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
            _ = ticks.tick() => {
                if let Err(e) = handler.tick(idle).await {
                    break Err(e);
                }
                idle = true;
            }
            received = consumer.recv() => match received {
                Ok(message) => {
                    idle = false;
                    if let Err(e) = handler.record(message.topic(), message.payload().unwrap_or_default()).await {
                        break Err(e);
                    }
                    consumer.store_offset_from_message(&message)?;
                }
                // librdkafka retries on its own (broker down, rebalancing): say so and go on.
                Err(e) => warn!(error = %e, "Kafka consumer error; retrying"),
            },
        }
    };
    // Commit what was handled, also when stopping on an error, so it is not redone.
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => info!("offsets committed; stopping"),
        // Nothing stored yet since the last commit is not a failure.
        Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "cannot commit offsets at stop; up to a second of records will be handled again"),
    }
    outcome
}
