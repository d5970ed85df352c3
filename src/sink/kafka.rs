//! The Kafka sink: one idempotent librdkafka producer (acks=all, compressed batches)
//! shared by all rule workers.
//!
//! librdkafka batches, retries and keeps per-partition order itself; with idempotence on,
//! a retried batch is never written twice, and with no message timeout (the default) it
//! retries through outages of any length. Each record carries its `Delivery` to its
//! delivery report, which resolves it.
//! When the producer's queue is full, `send` waits for room: the worker stops reading
//! the spool, which keeps growing on disk, and memory stays bounded.
//!
//! An idempotent producer fails for good when Kafka no longer knows its producer id (a
//! broker replaced by an empty one, or a producer state Kafka expired): its records
//! fail retriably, so the workers send them again, and the next `send` builds a new
//! producer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use super::{Delivery, DestinationCheck, Record, Sink, SinkError};
use crate::config::KafkaConfig;
use crate::kafka::KafkaContext;

pub struct KafkaSink {
    producer: ArcSwap<ThreadedProducer<Reports>>,
    /// Held while a producer that failed for good is replaced.
    renewing: Mutex<()>,
    client: ClientConfig,
    bootstrap_servers: String,
    closed: AtomicBool,
}

/// Receives delivery reports and client errors on librdkafka's polling thread.
struct Reports {
    log: KafkaContext,
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.log.log(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        match result {
            Ok(_) => delivery.delivered(),
            Err((error, message)) => delivery.failed(&sink_error(error, message.topic())),
        }
    }
}

/// Kafka's answer for one record, by kind. Most transient errors never get here:
/// librdkafka retries them itself (forever, with `message.timeout.ms` = 0).
fn sink_error(error: &KafkaError, topic: &str) -> SinkError {
    use RDKafkaErrorCode::*;
    let message = format!("Kafka topic {topic}: {error}");
    match error.rdkafka_error_code() {
        // Purged when the producer is dropped at shutdown or replaced, queued too long
        // under a configured `kafka.message_timeout_ms`, or failed with the producer's
        // idempotence state (the producer is replaced): Kafka may take it on the next try.
        Some(
            Fatal
            | UnknownProducerId
            | OutOfOrderSequenceNumber
            | InvalidProducerEpoch
            | InvalidProducerIdMapping
            | PurgeQueue
            | PurgeInflight
            | MessageTimedOut
            | QueueFull
            | AllBrokersDown
            | BrokerTransportFailure
            | NetworkException
            | RequestTimedOut
            | NotLeaderForPartition
            | LeaderNotAvailable
            | NotEnoughReplicas
            | NotEnoughReplicasAfterAppend,
        ) => SinkError::retriable(message),
        _ => SinkError::final_(message),
    }
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, KafkaError> {
        let mut client = crate::kafka::client_config(config);
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", config.compression.as_str())
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "200000")
            // Bounds memory whatever Kafka does: beyond this, records wait in the spool on disk.
            .set("queue.buffering.max.kbytes", "65536");
        // The user's properties win over the settings above.
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let producer = ArcSwap::from_pointee(producer(&client)?);
        Ok(KafkaSink {
            producer,
            renewing: Mutex::new(()),
            client,
            bootstrap_servers: config.bootstrap_servers.clone(),
            closed: AtomicBool::new(false),
        })
    }

    /// The producer to send with: the current one, or a new one if it failed for good.
    fn producer(&self) -> Arc<ThreadedProducer<Reports>> {
        let current = self.producer.load_full();
        let Some((code, reason)) = current.client().fatal_error() else { return current };
        let _renewing = self.renewing.lock().unwrap_or_else(|p| p.into_inner());
        let latest = self.producer.load_full();
        if !Arc::ptr_eq(&latest, &current) {
            return latest;
        }
        match producer(&self.client) {
            Ok(renewed) => {
                tracing::warn!(%code, reason, "the Kafka producer failed for good; a new one takes over and its records are sent again");
                let renewed = Arc::new(renewed);
                self.producer.store(renewed.clone());
                renewed
            }
            // The same settings made a producer before; its records keep failing
            // retriably until a new one can be made.
            Err(error) => {
                tracing::error!(%error, "cannot replace the Kafka producer that failed for good");
                current
            }
        }
    }
}

fn producer(client: &ClientConfig) -> Result<ThreadedProducer<Reports>, KafkaError> {
    client.create_with_context(Reports { log: KafkaContext::new("sink") })
}

impl Sink for KafkaSink {
    fn send(&self, record: Record<'_>, delivery: Delivery) {
        let mut base = BaseRecord::with_opaque_to(record.topic, Box::new(delivery)).key(record.key).payload(record.value);
        // Most records carry no headers; librdkafka allocates a header list only if asked.
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(OwnedHeaders::new_with_capacity(record.headers.len()), |headers, (name, value)| {
                headers.insert(Header { key: name, value: Some(*value) })
            });
            base = base.headers(headers);
        }
        let producer = self.producer();
        loop {
            match producer.send(base) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if self.closed.load(Ordering::Relaxed) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The producer holds as much as it may; wait for deliveries to free room.
                    base = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Refused outright, e.g. larger than `message.max.bytes`.
                Err((error, returned)) => return returned.delivery_opaque.failed(&sink_error(&error, record.topic)),
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.load();
        producer.flush(timeout).map_err(|_| {
            SinkError::retriable(format!("{} Kafka records still undelivered after waiting {timeout:?}", producer.in_flight_count().max(0)))
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn destination_check(&self) -> DestinationCheck {
        crate::names::check_kafka_topic
    }

    fn describe(&self) -> String {
        format!("Kafka {}", self.bootstrap_servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka refuses these settings at creation unless it was built with OpenSSL
    /// (SASL PLAIN and SCRAM over TLS) and zstd.
    #[test]
    fn tls_sasl_and_zstd_settings_are_supported_by_this_build() {
        let mut config = KafkaConfig {
            bootstrap_servers: "127.0.0.1:1".into(),
            compression: crate::config::Compression::Zstd,
            ..KafkaConfig::default()
        };
        for (key, value) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "gateway"),
            ("sasl.password", "secret"),
        ] {
            config.properties.insert(key.into(), value.into());
        }
        KafkaSink::new(&config).expect("TLS + SCRAM + zstd producer");
    }
}
