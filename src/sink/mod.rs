//! Where routed records go: Kafka (`kafka`), or the embedded file sink (`file`) when no
//! Kafka is configured.
//!
//! A sink takes records from several rule workers at once. `send` may block the calling
//! worker while the sink is full (that is the backpressure path: the hook queue then
//! absorbs bursts), but never drops a record silently: a record that cannot be delivered
//! is logged and counted in `records_failed`.

mod file;
mod kafka;

use std::time::Duration;

pub use file::FileSink;
pub use kafka::KafkaSink;

/// One Kafka record, borrowed from the worker's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: &'a [(String, Vec<u8>)],
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write records to {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0} records still undelivered after waiting {1:?}")]
    Undelivered(u64, Duration),
}

pub trait Sink: Send + Sync {
    /// Queues one record for delivery; blocks while the sink's buffers are full.
    fn send(&self, record: Record<'_>) -> Result<(), SinkError>;
    /// Called by a worker after a batch of `send`s; lets a sink write in batches.
    fn end_batch(&self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Waits until every queued record is delivered, up to `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;
    /// Human-readable destination, for logs.
    fn describe(&self) -> String;
}
