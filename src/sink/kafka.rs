//! The Kafka sink: one idempotent librdkafka producer (acks=all, compressed batches)
//! shared by all rule workers.
//!
//! librdkafka batches, retries and keeps per-partition order itself; with idempotence on,
//! a retried batch is never written twice, and with no message timeout (the default) it
//! retries through outages of any length. Every delivery report is checked and gives
//! the record's ticket back; failures are logged (at most once a second) and counted.
//! Each record carries its ticket and its event time to the report, which counts it by
//! topic and observes its delivery latency.
//! When the producer's queue is full, `send` waits for room: the worker stops reading
//! the spool, which keeps growing on disk, and memory stays bounded.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use super::{Record, Sink, SinkError};
use crate::config::KafkaConfig;
use crate::log_limit::LogLimit;
use crate::metrics::{Metrics, Outcome};
use crate::spool::Ticket;

pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryCounter>,
    bootstrap_servers: String,
}

/// What a record's delivery report needs: the event's ticket to give back, and the
/// event's time for the latency histogram.
struct Delivery {
    ticket: Arc<Ticket>,
    event_ms: u64,
}

/// Receives delivery reports and client errors on librdkafka's polling thread.
struct DeliveryCounter {
    metrics: Arc<Metrics>,
    failure_log: LogLimit,
    error_log: LogLimit,
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(skipped) = self.error_log.allow() {
            tracing::warn!(%error, reason, skipped, "Kafka client error (the producer keeps retrying; records stay queued)");
        }
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        // Counted before the ticket is given back: once the worker commits an event,
        // its records are in the metrics.
        match result {
            Ok(message) => {
                let series = self.metrics.records.series(message.topic());
                self.metrics.record_delivered(series, delivery.event_ms);
            }
            Err((error, message)) => {
                let records = &self.metrics.records;
                records.add(records.series(message.topic()), Outcome::Failed, 1);
                if let Some(skipped) = self.failure_log.allow() {
                    tracing::error!(
                        skipped,
                        topic = message.topic(),
                        %error,
                        failed_total = records.total(Outcome::Failed),
                        "Kafka record delivery failed"
                    );
                }
            }
        }
        delivery.ticket.done();
    }
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig, metrics: Arc<Metrics>) -> Result<KafkaSink, SinkError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", config.compression.as_str())
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("queue.buffering.max.messages", "200000")
            // Bounds memory whatever Kafka does: beyond this, records wait in the spool on disk.
            .set("queue.buffering.max.kbytes", "65536");
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let context = DeliveryCounter { metrics, failure_log: LogLimit::new(), error_log: LogLimit::new() };
        let producer = client.create_with_context(context)?;
        Ok(KafkaSink { producer, bootstrap_servers: config.bootstrap_servers.clone() })
    }
}

impl Sink for KafkaSink {
    fn send(&self, record: Record<'_>, ticket: &Arc<Ticket>) -> Result<(), SinkError> {
        ticket.add();
        let delivery = Box::new(Delivery { ticket: ticket.clone(), event_ms: record.event_ms });
        let mut base = BaseRecord::with_opaque_to(record.topic, delivery).key(record.key).payload(record.value);
        // Most records carry no headers; librdkafka allocates a header list only if asked.
        if !record.headers.is_empty() {
            let headers = record.headers.iter().fold(OwnedHeaders::new_with_capacity(record.headers.len()), |headers, (name, value)| {
                headers.insert(Header { key: name, value: Some(value) })
            });
            base = base.headers(headers);
        }
        Metrics::add(&self.producer.context().metrics.records_sent, 1);
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The producer holds as much as it may; wait for deliveries to free room.
                    base = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Refused outright (e.g. larger than the broker accepts): final.
                Err((error, returned)) => {
                    let records = &self.producer.context().metrics.records;
                    records.add(records.series(record.topic), Outcome::Failed, 1);
                    returned.delivery_opaque.ticket.done();
                    return Err(error.into());
                }
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer.flush(timeout).map_err(|_| SinkError::Undelivered(self.producer.in_flight_count().max(0) as u64, timeout))
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
        KafkaSink::new(&config, Arc::new(Metrics::default())).expect("TLS + SCRAM + zstd producer");
    }
}
