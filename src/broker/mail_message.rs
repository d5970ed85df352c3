//! A message in the cluster's mailbox topic: an MQTT 5 PUBLISH as the wire writes it,
//! with its origin (published QoS and retain flag, when, from whom) attached as the
//! router's messages carry it. One format, read by any node with the codec it already
//! has.

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{v5::V5, Packet, Protocol, Publish, PublishProperties};

use super::origin::{self, Origin};
use super::wire::publish_with;

/// A message read from a mailbox, or waiting in a session's inbox.
#[derive(Clone)]
pub struct Mail {
    pub topic: Bytes,
    pub payload: Bytes,
    pub props: Option<PublishProperties>,
    pub origin: Origin,
}

/// Encodes a message for a mailbox.
pub fn encode(topic: Bytes, payload: Bytes, mut props: Option<PublishProperties>, origin: &Origin) -> Bytes {
    origin::attach(&mut props, origin);
    let publish = publish_with(origin.qos, 1, origin.retain, topic, payload);
    let mut out = BytesMut::new();
    V5.write(Packet::Publish(publish, props), &mut out).expect("a publish with a valid topic encodes");
    out.freeze()
}

/// Reads a mailbox message; `None` for bytes another program put there.
pub fn decode(bytes: &Bytes) -> Option<Mail> {
    let mut buffer = BytesMut::from(&bytes[..]);
    let Ok(Packet::Publish(Publish { topic, payload, .. }, mut props)) = V5.read_mut(&mut buffer, usize::MAX) else { return None };
    let origin = origin::take(&mut props)?;
    Some(Mail { topic, payload, props, origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_it_was_posted() {
        let props = PublishProperties { content_type: Some("application/json".into()), ..Default::default() };
        let origin = Origin { qos: 1, retain: true, published_ms: 42, from: "kafka:device_commands".into(), ack: None };
        let bytes = encode(Bytes::from_static(b"devices/lock-1/command"), Bytes::from_static(b"{}"), Some(props), &origin);
        let mail = decode(&bytes).expect("decodes");
        assert_eq!((&mail.topic[..], &mail.payload[..], mail.origin), (&b"devices/lock-1/command"[..], &b"{}"[..], origin));
        assert_eq!(mail.props.unwrap().content_type.as_deref(), Some("application/json"));
        assert!(decode(&Bytes::from_static(b"not mqtt")).is_none());
    }
}
