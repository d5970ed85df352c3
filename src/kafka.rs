//! What every Kafka client of the gateway shares (the Kafka sink's producer, the
//! cluster's producer and reader, the downlink's consumer): the settings of `[kafka]`,
//! and the context that writes librdkafka's log lines and errors through one rate limit.
//!
//! While Kafka is away librdkafka reports the same failure many times a second, from
//! every client. Here each kind of line (a log facility, an error code) is written at
//! most once a second for the whole gateway, with the number left out since.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::internal_events::LogLimit;

/// A client configuration with `[kafka]`'s bootstrap servers and pass-through
/// properties; each client adds its own settings.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (key, value) in &kafka.properties {
        client.set(key, value);
    }
    client
}

/// The context of every Kafka client: librdkafka's log lines and errors, rate-limited
/// per kind across all clients, and named by the client they come from.
pub struct KafkaContext {
    /// Which client this is, in every line: `sink`, `cluster`, `downlink`.
    client: &'static str,
}

impl KafkaContext {
    pub fn new(client: &'static str) -> KafkaContext {
        KafkaContext { client }
    }
}

/// One `LogLimit` per kind of line, shared by all clients.
fn limit(kind: &str, write: impl FnOnce(u64)) {
    static KINDS: OnceLock<Mutex<HashMap<String, &'static LogLimit>>> = OnceLock::new();
    let limit = {
        let mut kinds = KINDS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        // Kinds are librdkafka's facilities and error codes: a few dozen at most, kept
        // for the life of the process.
        *kinds.entry(kind.to_string()).or_insert_with(|| Box::leak(Box::new(LogLimit::new())))
    };
    if let Some(skipped) = limit.allow() {
        write(skipped);
    }
}

/// Logs an error a Kafka client returned (a failed poll, commit or produce) under the
/// same rate limit as librdkafka's own: one line a second per error code, whichever
/// client it comes from. `what` says what failed and what happens next.
pub fn warn_error(client: &'static str, error: &KafkaError, what: &str) {
    limit(&kind(error), |skipped| tracing::warn!(target: "librdkafka", client, %error, skipped, "{what}"));
}

fn kind(error: &KafkaError) -> String {
    error.rdkafka_error_code().map_or_else(|| error.to_string(), |code| format!("{code:?}"))
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let client = self.client;
        match level {
            RDKafkaLogLevel::Debug => {}
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                limit(facility, |skipped| tracing::info!(target: "librdkafka", client, facility, skipped, "{line}"))
            }
            RDKafkaLogLevel::Warning => {
                limit(facility, |skipped| tracing::warn!(target: "librdkafka", client, facility, skipped, "{line}"))
            }
            _ => limit(facility, |skipped| tracing::error!(target: "librdkafka", client, facility, skipped, "{line}")),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let client = self.client;
        limit(
            &kind(&error),
            |skipped| tracing::warn!(target: "librdkafka", client, %error, reason, skipped, "Kafka client error (it keeps retrying)"),
        );
    }
}

impl ConsumerContext for KafkaContext {}
