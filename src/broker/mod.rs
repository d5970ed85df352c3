//! The MQTT edge over rumqttd's router: hookline's own listeners and one task per
//! client connection (`connection`). Subscriptions to one exact topic (a lock's command
//! topic) are the edge's: it queues their messages in each session's `inbox`, so an
//! idle device needs no router link. The router, reached through its local link API,
//! routes the rest (wildcard and shared subscriptions, their fan-out and persistent
//! sessions); retained messages, and everything that happens on a connection, are the
//! edge's (`crate::retained`), which raises its hook events where they happen.
//!
//! rumqttd's router runs on its own thread, as rumqttd designs it, and cannot be
//! stopped; the listeners and connections run on our tokio runtime and stop with
//! `Broker::stop`.

mod acks;
mod capacity;
mod cluster_sessions;
mod connection;
mod downlink;
mod edge;
mod error;
mod inbox;
mod listener;
mod mail_message;
mod origin;
mod registry;
mod subscription;
pub mod wire;

pub use acks::RecordAcks;
pub use downlink::{Downlink, Downlinked};
pub use edge::{Broker, Edge, Limits};
pub use error::BrokerError;
pub use registry::CloseReason;
