//! What every sink implements and promises (`Sink`), the record it is handed, its errors
//! by kind, the destinations rules may name, and the configured sinks together (`Sinks`).

use std::sync::Arc;
use std::time::Duration;

use super::delivery::Delivery;
use crate::names::check_kafka_topic;

/// One record, borrowed from the worker's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The destination: a Kafka topic, a RabbitMQ exchange, a file sink's topic field.
    pub topic: &'a str,
    /// Kafka's record key; RabbitMQ's routing key.
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The value is the event's JSON envelope (not bytes a rule chose, `route_value`).
    pub envelope: bool,
}

/// Whether a destination failure may clear by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Send the record again later: the destination is away, full or busy.
    Retriable,
    /// The destination refuses this record and always will (too large, not allowed).
    Final,
}

/// A sink's failure to deliver, by kind; the message says what and where.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub kind: ErrorKind,
    message: String,
}

impl SinkError {
    pub fn retriable(message: impl std::fmt::Display) -> SinkError {
        SinkError { kind: ErrorKind::Retriable, message: message.to_string() }
    }

    pub fn final_(message: impl std::fmt::Display) -> SinkError {
        SinkError { kind: ErrorKind::Final, message: message.to_string() }
    }
}

/// Whether a name can be a destination of a sink; the error says why not, for the rule
/// author (the rule's decision is discarded and counted in `rule_invalid_output`).
pub type DestinationCheck = fn(&str) -> Result<(), &'static str>;

pub trait Sink: Send + Sync {
    /// Hands one record over; resolves `delivery` now or later (see the module docs).
    /// Blocks while the sink's buffers are full.
    fn send(&self, record: Record<'_>, delivery: Delivery);
    /// A worker finished a batch of `send`s: a sink that buffers writes them out now.
    fn end_batch(&self) {}
    /// Waits until every record handed over is resolved, up to `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;
    /// Shutdown's deadline passed: a `send` waiting for room gives up, leaving its
    /// delivery unresolved (the event is sent again at the next start).
    fn close(&self) {}
    /// Which names rules may route to. Checked when a rule emits a route, so a bad
    /// name is the rule's error, not a delivery failure.
    fn destination_check(&self) -> DestinationCheck;
    /// Human-readable destination, for logs.
    fn describe(&self) -> String;
}

/// The names rules route to, in order (`route` goes to the first, `route_to` names
/// one), each with the check of the topics its sink takes.
#[derive(Clone)]
pub struct DestinationNames(Arc<[(String, DestinationCheck)]>);

impl DestinationNames {
    pub fn new(names: impl IntoIterator<Item = (String, DestinationCheck)>) -> DestinationNames {
        DestinationNames(names.into_iter().collect())
    }

    /// Kafka alone, named `kafka`: what rule tools check against outside a gateway.
    pub fn kafka() -> DestinationNames {
        DestinationNames::new([("kafka".to_string(), check_kafka_topic as DestinationCheck)])
    }

    pub fn index_of(&self, name: &[u8]) -> Option<usize> {
        self.0.iter().position(|(known, _)| known.as_bytes() == name)
    }

    /// Whether destination `index` takes `topic`.
    pub fn check(&self, index: usize, topic: &str) -> Result<(), &'static str> {
        (self.0[index].1)(topic)
    }
}

/// The gateway's sinks, one per destination, in the destinations' order.
pub struct Sinks(Vec<(String, Arc<dyn Sink>)>);

impl Sinks {
    pub fn new(sinks: Vec<(String, Arc<dyn Sink>)>) -> Sinks {
        assert!(!sinks.is_empty(), "a gateway has at least one destination");
        Sinks(sinks)
    }

    pub fn names(&self) -> DestinationNames {
        DestinationNames::new(self.0.iter().map(|(name, sink)| (name.clone(), sink.destination_check())))
    }

    /// The sink of destination `index` (as `DestinationNames` numbers them).
    pub fn get(&self, index: usize) -> &dyn Sink {
        &*self.0[index].1
    }

    pub fn end_batch(&self) {
        self.0.iter().for_each(|(_, sink)| sink.end_batch());
    }

    /// See `Sink::close`.
    pub fn close(&self) {
        self.0.iter().for_each(|(_, sink)| sink.close());
    }

    /// Each destination, as the logs name it.
    pub fn describe(&self) -> String {
        self.0.iter().map(|(name, sink)| format!("{name}: {}", sink.describe())).collect::<Vec<_>>().join(", ")
    }
}
