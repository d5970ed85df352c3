//! The QoS flows' data: the router's deliveries in its order (`Slot`), messages on their
//! way to the client (`Delivery`) and those written and not yet acknowledged (`Unacked`).

use std::sync::Arc;

use bytes::Bytes;
use rumqttd::protocol::PublishProperties;

/// A QoS 1/2 delivery the router made, in the router's order: it takes their
/// acknowledgements in that order only.
pub(super) struct Slot {
    pub(super) pkid: u16,
    pub(super) done: bool,
}

/// What `message.delivered` and `message.acked` tell of a delivery.
pub(super) struct Message {
    pub qos: u8,
    pub topic: Bytes,
    pub payload: Bytes,
    pub from: Option<Arc<str>>,
    /// A downlink message's acknowledgement id.
    pub ack: Option<u64>,
    /// A mailbox message's offset (`mail`); `None` for the router's deliveries.
    pub mail: Option<i64>,
}

/// A message on its way to the client.
pub(super) struct Delivery {
    pub pkid: u16,
    pub retain: bool,
    pub props: Option<PublishProperties>,
    pub message: Message,
}

/// A delivery written to the client at QoS 1/2 and not yet acknowledged.
pub(super) struct Unacked {
    pub(super) message: Message,
    /// A router's delivery in a cluster: its properties, to send it again from the
    /// session's mailbox (see `repost_unacked`).
    pub(super) props: Option<PublishProperties>,
    /// QoS 2: PUBREC came, PUBCOMP awaited.
    pub(super) released: bool,
}
