//! Where routed records go. One folder or file per kind of destination, each a `Sink`;
//! a gateway has one or more destinations, named, in the order `SinkConfig` gives
//! (see `docs/adding-a-sink.md`).
//!
//! The contract, the same for every sink:
//! - `send` takes a record and its `Delivery`. The sink resolves the delivery exactly
//!   once: `delivered()` when the destination has the record, `failed(error)` when it
//!   will not. That is the only way a record counts as delivered, and the rule worker
//!   commits an event in the spool only when all its records are resolved.
//! - A `Delivery` dropped unresolved (a sink that lost track of it, a panic) means "not
//!   delivered": the worker sends the event again. So does a `Retriable` failure.
//! - A `Final` failure (the destination refuses that record and always will) is logged
//!   and counted in `records_failed`, and the event is committed: retrying it would
//!   hold up every later event of its shard forever.
//! - Counting and logging happen in `delivery`, at the boundary, not in the sinks.
//! - `send` may block the calling worker while the sink is full (the spool absorbs the
//!   traffic meanwhile).

mod contract;
mod delivery;
mod file;
mod kafka;
mod rabbitmq;

pub use contract::{DestinationCheck, DestinationNames, ErrorKind, Record, Sink, SinkError, Sinks};
pub use delivery::{Boundary, Delivery, Ticket};
pub use file::{FileSink, RECORDS_FILE};
pub use kafka::KafkaSink;
pub use rabbitmq::{RabbitMqSink, RabbitMqStartError};
