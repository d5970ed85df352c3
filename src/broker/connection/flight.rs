//! The QoS flows' data: the router's deliveries in its order (`Slot`), messages on their
//! way to the client (`Delivery`, made by a `Source`) and those written and not yet
//! acknowledged (`Unacked`).

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
    pub source: Source,
}

/// Who made a delivery, and so who hears that it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The router: acknowledged to it in its order (`Slot`).
    Router,
    /// The cluster's mailbox, at this offset: the session's cursor moves past it.
    Mailbox(i64),
    /// The edge itself: the session's inbox, or a retained message sent on SUBSCRIBE.
    /// Unacknowledged when the connection ends, it goes back to the inbox (or, in a
    /// cluster, to the session's mailbox).
    Edge,
}

impl Source {
    /// Whether a delivery of this source the client has not received goes again when
    /// the connection ends (`in_cluster`: the session is the cluster's, and the router
    /// keeps none of it). Mailbox messages need not: the session's cursor keeps them.
    pub(super) fn sent_again(self, in_cluster: bool) -> bool {
        match self {
            Source::Edge => true,
            Source::Router => in_cluster,
            Source::Mailbox(_) => false,
        }
    }
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
    /// In a cluster, or for the edge's deliveries: its properties, to send it again
    /// from the session's mailbox or inbox (see `return_unacked`).
    pub(super) props: Option<PublishProperties>,
    /// QoS 2: PUBREC came, PUBCOMP awaited.
    pub(super) released: bool,
    /// Its place among the connection's deliveries at QoS 1/2 (`State::sent`).
    pub(super) order: u64,
}
