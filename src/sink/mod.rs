//! Where routed records go: Kafka (`kafka`), or the embedded file sink (`file`) when no
//! Kafka is configured.
//!
//! A sink takes records from several rule workers at once. `send` may block the calling
//! worker while the sink is full (the spool then absorbs the traffic), but never drops
//! a record silently: a record that cannot be delivered is logged and counted in
//! `records_failed` (by topic).
//!
//! Delivery is reported per event through its `Ticket`: a record counts as delivered
//! once its ticket is given back (Kafka: on the delivery report), or, for a sink that
//! ignores tickets, once `end_batch` returns `Ok`. Only then does the worker commit the
//! event in the spool. A sink counts each delivered record by topic, with its latency
//! from the event (`Metrics::record_delivered`), before reporting it delivered.

mod file;
mod kafka;

use std::sync::Arc;
use std::time::Duration;

pub use file::FileSink;
pub use kafka::KafkaSink;

use crate::spool::Ticket;

/// One Kafka record, borrowed from the worker's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: &'a [(String, Vec<u8>)],
    /// When the hook event the record was made from was raised (unix ms): the start
    /// of its delivery latency.
    pub event_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write records to {path}: {source}")]
    File { path: std::path::PathBuf, source: std::io::Error },
    #[error("Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0} records still undelivered after waiting {1:?}")]
    Undelivered(u64, Duration),
}

pub trait Sink: Send + Sync {
    /// Queues one record for delivery; blocks while the sink's buffers are full. A sink
    /// that delivers asynchronously takes a count on `ticket` and gives it back when the
    /// record is delivered or has finally failed.
    fn send(&self, record: Record<'_>, ticket: &Arc<Ticket>) -> Result<(), SinkError>;
    /// Called by a worker after a batch of `send`s; lets a sink write in batches. An
    /// error means the batch's records may not be delivered: the worker sends them again.
    fn end_batch(&self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Waits until every queued record is delivered, up to `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;
    /// Human-readable destination, for logs.
    fn describe(&self) -> String;
}
