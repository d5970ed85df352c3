//! What the edge reads from raw frame bytes before decoding: the fixed header, the
//! packet type, and a CONNECT's protocol level (which codec to decode it with, and
//! whether to refuse it with "unsupported protocol version"). Every function returns
//! `None` on a short or malformed frame; the codec itself reports those errors.
//! Also the two ways around rumqttd keeping a publish's QoS and packet id private.

use bytes::{BufMut, Bytes, BytesMut};
use rumqttd::protocol::Publish;

/// Packet type nibble of a CONNECT.
pub const CONNECT: u8 = 1;

/// The fixed header: (first byte, remaining length, header length in bytes).
pub fn fixed_header(frame: &[u8]) -> Option<(u8, usize, usize)> {
    let first = *frame.first()?;
    let mut remaining = 0usize;
    for (i, byte) in frame.iter().skip(1).take(4).enumerate() {
        remaining |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((first, remaining, i + 2));
        }
    }
    None
}

/// Whether MQTT has only servers send this packet type (CONNACK, SUBACK, UNSUBACK,
/// PINGRESP). rumqttd's MQTT 5 decoder panics on a CONNACK or UNSUBACK from a client,
/// so the edge refuses these before decoding.
pub fn sent_only_by_servers(packet_type: u8) -> bool {
    matches!(packet_type, 2 | 9 | 11 | 13)
}

/// CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE: what a client sends to start
/// something, as opposed to acknowledging or keeping alive.
pub fn starts_work(packet_type: u8) -> bool {
    matches!(packet_type, CONNECT | 3 | 8 | 10)
}

pub fn packet_type(first_byte: u8) -> u8 {
    first_byte >> 4
}

/// Protocol level of a CONNECT frame (4 = MQTT 3.1.1, 5 = MQTT 5). `None` until the
/// bytes up to the level have arrived.
pub fn connect_level(frame: &[u8]) -> Option<u8> {
    let (first, _, header_len) = fixed_header(frame)?;
    if packet_type(first) != CONNECT {
        return None;
    }
    let body = frame.get(header_len..)?;
    let name_len = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    body.get(2 + name_len).copied()
}

/// True when no further bytes could turn `stream` into a CONNECT whose protocol level can
/// be read: the first byte is of another packet type, the remaining-length field already
/// runs past the 4 bytes MQTT allows, or the whole frame is there and too short to hold
/// a protocol level.
pub fn unreadable_as_connect(stream: &[u8]) -> bool {
    match (stream.first(), fixed_header(stream)) {
        (None, _) => false,
        (Some(&first), _) if packet_type(first) != CONNECT => true,
        (_, Some((_, remaining, header_len))) => stream.len() >= header_len.saturating_add(remaining),
        (_, None) => stream.len() >= 5,
    }
}

/// Why `topic` cannot be the topic name of a PUBLISH or a will (MQTT 3.1.1 and 5 alike:
/// a UTF-8 string without U+0000, and without the wildcards `+` and `#`, which only
/// subscription filters may hold), or `None` when it is fine. An empty name is left to
/// the broker: MQTT 5 uses it with a topic alias.
pub fn invalid_topic_name(topic: &[u8]) -> Option<&'static str> {
    match std::str::from_utf8(topic) {
        Err(_) => Some("topic name is not valid UTF-8"),
        Ok(t) if t.contains(['+', '#']) => Some("topic name contains a wildcard (+ or #), which only subscription filters may use"),
        Ok(t) if t.contains('\0') => Some("topic name contains the null character U+0000"),
        Ok(_) => None,
    }
}

/// rumqttd keeps a publish's QoS and packet id private; its own serialisation (a header
/// byte, the packet id, the topic, the payload) shows them: five bytes without topic
/// and payload.
pub fn qos_pkid(publish: &Publish) -> (u8, u16) {
    let mut probe = publish.clone();
    probe.topic = Bytes::new();
    probe.payload = Bytes::new();
    let bytes = probe.serialize();
    ((bytes[0] >> 1) & 0b11, u16::from_be_bytes([bytes[1], bytes[2]]))
}

/// A publish with the given QoS and packet id, which rumqttd builds only from its own
/// serialisation (QoS 0 needs neither).
pub fn publish_with(qos: u8, pkid: u16, retain: bool, topic: Bytes, payload: Bytes) -> Publish {
    if qos == 0 {
        return Publish::new(topic, payload, retain);
    }
    let mut frame = BytesMut::with_capacity(5 + topic.len() + payload.len());
    frame.put_u8(0x30 | (qos << 1) | retain as u8);
    frame.put_u16(pkid);
    frame.put_u16(topic.len() as u16);
    frame.put_slice(&topic);
    frame.put_slice(&payload);
    Publish::deserialize(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_byte_remaining_length() {
        let frame = [0x30, 0xc1, 0x02];
        assert_eq!(fixed_header(&frame), Some((0x30, 321, 3)));
    }

    #[test]
    fn short_frames_are_none() {
        assert_eq!(fixed_header(&[0x30, 0x80]), None);
        assert_eq!(connect_level(&[0x10, 10, 0, 4, b'M']), None);
    }

    #[test]
    fn tells_a_hopeless_first_packet_from_a_partial_connect() {
        assert!(unreadable_as_connect(&[0x30, 2, 0, 0]));
        assert!(unreadable_as_connect(&[0x90]), "a SUBACK's first byte is enough");
        assert!(!unreadable_as_connect(&[]));
        assert!(unreadable_as_connect(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]));
        assert!(!unreadable_as_connect(&[0x10, 0xff]));
        assert!(!unreadable_as_connect(&[0x10, 16, 0, 4, b'M']));
        // Complete, but ends before the protocol level: waiting would never help.
        assert!(unreadable_as_connect(&[0x10, 2, 0, 4]));
    }

    #[test]
    fn publish_topic_names_follow_mqtt() {
        assert_eq!(invalid_topic_name(b"devices/lock-1/state"), None);
        assert_eq!(invalid_topic_name(b""), None);
        assert!(invalid_topic_name(b"devices/\xff/state").unwrap().contains("UTF-8"));
        assert!(invalid_topic_name(b"devices/+/state").unwrap().contains("wildcard"));
        assert!(invalid_topic_name(b"devices/#").unwrap().contains("wildcard"));
        assert!(invalid_topic_name(b"a\0b").unwrap().contains("U+0000"));
    }

    #[test]
    fn reads_connect_level() {
        let v5 = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60];
        assert_eq!(connect_level(&v5), Some(5));
        assert_eq!(connect_level(&[0x30, 1, 0]), None);
    }

    #[test]
    fn a_publish_built_with_a_qos_and_packet_id_reads_back_the_same() {
        for (qos, pkid, retain) in [(0, 0, false), (1, 7, false), (2, 65535, true)] {
            let publish = publish_with(qos, pkid, retain, Bytes::from_static(b"a/b"), Bytes::from_static(b"x"));
            assert_eq!(qos_pkid(&publish), (qos, pkid));
            assert_eq!((publish.retain, &publish.topic[..], &publish.payload[..]), (retain, &b"a/b"[..], &b"x"[..]));
        }
    }
}
