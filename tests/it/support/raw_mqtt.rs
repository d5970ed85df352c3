//! Hand-built MQTT frames over a bare TCP socket, for what a well-behaved client library
//! refuses to send: empty client ids, bad topic names, broken lengths.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame: first byte, the remaining length as MQTT encodes it, then `body`.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// MQTT's variable byte integer (remaining lengths, Subscription Identifiers).
fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

/// Reads a variable byte integer at `at`; returns it and where it ends.
fn read_varint(bytes: &[u8], mut at: usize) -> (usize, usize) {
    let (mut n, mut shift) = (0, 0);
    loop {
        let byte = bytes[at];
        n |= ((byte & 0x7f) as usize) << shift;
        at += 1;
        if byte & 0x80 == 0 {
            return (n, at);
        }
        shift += 7;
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT for MQTT `level` (4 = 3.1.1, 5), without login or will.
pub fn connect(level: u8, client_id: &str, clean: bool, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.extend_from_slice(&[level, if clean { 0x02 } else { 0 }]);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0); // no properties
    }
    string(&mut body, client_id.as_bytes());
    frame(0x10, &body)
}

/// A CONNECT with MQTT 5 `props` (already encoded, see `prop_u16`/`prop_u32`; ignored
/// for 3.1.1) and an optional login.
pub fn connect_with(level: u8, client_id: &str, clean: bool, props: &[u8], login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    let flags = if clean { 0x02 } else { 0 } | if login.is_some() { 0xc0 } else { 0 };
    body.extend_from_slice(&[level, flags, 0, 30]);
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    string(&mut body, client_id.as_bytes());
    if let Some((username, password)) = login {
        string(&mut body, username.as_bytes());
        string(&mut body, password.as_bytes());
    }
    frame(0x10, &body)
}

/// An MQTT 5 property with a two-byte value (Receive Maximum is 0x21, Topic Alias 0x23).
/// A v5 CONNECT with Clean Start `clean`, Session Expiry `expiry` (seconds), and a will
/// on `topic` (QoS 0, payload `gone`) after `delay` seconds.
pub fn connect_with_will(id: &str, clean: bool, expiry: u32, topic: &str, delay: u32) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.extend_from_slice(&[5, 0x04 | if clean { 0x02 } else { 0 }, 0, 30]);
    let props = prop_u32(0x11, expiry);
    body.push(props.len() as u8);
    body.extend_from_slice(&props);
    string(&mut body, id.as_bytes());
    let will_props = prop_u32(0x18, delay);
    body.push(will_props.len() as u8);
    body.extend_from_slice(&will_props);
    string(&mut body, topic.as_bytes());
    string(&mut body, b"gone");
    frame(0x10, &body)
}

pub fn prop_u16(id: u8, value: u16) -> Vec<u8> {
    let mut out = vec![id];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

/// An MQTT 5 property with a four-byte value (Maximum Packet Size is 0x27).
pub fn prop_u32(id: u8, value: u32) -> Vec<u8> {
    let mut out = vec![id];
    out.extend_from_slice(&value.to_be_bytes());
    out
}

/// A SUBSCRIBE of one filter; `options` is the MQTT 5 options byte (QoS in bits 0-1, No
/// Local bit 2, Retain As Published bit 3, Retain Handling bits 4-5), just the QoS
/// for 3.1.1.
pub fn subscribe(level: u8, pkid: u16, filter: &str, options: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if level == 5 {
        body.push(0);
    }
    string(&mut body, filter.as_bytes());
    body.push(options);
    frame(0x82, &body)
}

/// An MQTT 5 SUBSCRIBE of one filter with a Subscription Identifier.
pub fn subscribe_with_id(pkid: u16, filter: &str, options: u8, id: usize) -> Vec<u8> {
    let mut props = vec![0x0b];
    varint(&mut props, id);
    let mut body = pkid.to_be_bytes().to_vec();
    varint(&mut body, props.len());
    body.extend_from_slice(&props);
    string(&mut body, filter.as_bytes());
    body.push(options);
    frame(0x82, &body)
}

/// The Subscription Identifiers among a PUBLISH's MQTT 5 properties, in their order.
pub fn subscription_ids(props: &[u8]) -> Vec<usize> {
    let (mut ids, mut at) = (Vec::new(), 0);
    let two = |at: usize| u16::from_be_bytes([props[at], props[at + 1]]) as usize;
    while at < props.len() {
        let id = props[at];
        at += 1;
        at = match id {
            0x0b => {
                let (value, end) = read_varint(props, at);
                ids.push(value);
                end
            }
            0x01 => at + 1,
            0x23 => at + 2,
            0x02 => at + 4,
            // Content Type, Response Topic, Correlation Data: one length-prefixed field.
            0x03 | 0x08 | 0x09 => at + 2 + two(at),
            // A User Property: two of them.
            0x26 => {
                let value = at + 2 + two(at);
                value + 2 + two(value)
            }
            other => panic!("property {other:#x} is not one a PUBLISH carries"),
        };
    }
    ids
}

/// An UNSUBSCRIBE of one filter.
pub fn unsubscribe(level: u8, pkid: u16, filter: &str) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if level == 5 {
        body.push(0);
    }
    string(&mut body, filter.as_bytes());
    frame(0xa2, &body)
}

/// A PUBLISH; MQTT 5 `props` already encoded.
pub fn publish(level: u8, topic: &str, qos: u8, pkid: u16, retain: bool, payload: &[u8], props: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    if level == 5 {
        body.push(props.len() as u8);
        body.extend_from_slice(props);
    }
    body.extend_from_slice(payload);
    frame(0x30 | qos << 1 | retain as u8, &body)
}

/// A PUBACK (or, with another first byte, PUBREC/PUBREL/PUBCOMP) of `pkid`.
pub fn ack(first: u8, pkid: u16) -> Vec<u8> {
    frame(first, &pkid.to_be_bytes())
}

/// A PUBLISH as received: QoS, retain, topic, packet id, MQTT 5 properties (raw) and
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pkid: u16,
    pub props: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Parses a PUBLISH `receive` returned; `None` for another packet.
pub fn parse_publish(level: u8, (first, body): &(u8, Vec<u8>)) -> Option<Received> {
    if first >> 4 != 3 {
        return None;
    }
    let qos = (first >> 1) & 3;
    let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
    let topic = String::from_utf8(body[2..2 + topic_len].to_vec()).ok()?;
    let mut at = 2 + topic_len;
    let mut pkid = 0;
    if qos > 0 {
        pkid = u16::from_be_bytes([body[at], body[at + 1]]);
        at += 2;
    }
    let mut props = Vec::new();
    if level == 5 {
        let len = body[at] as usize;
        props = body[at + 1..at + 1 + len].to_vec();
        at += 1 + len;
    }
    Some(Received { qos, retain: first & 1 == 1, topic, pkid, props, payload: body[at..].to_vec() })
}

/// A QoS 1 PUBLISH (MQTT 3.1.1) with packet id 1; `topic` may be any bytes.
pub fn publish_qos1(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, topic);
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x32, &body)
}

pub const DISCONNECT: [u8; 2] = [0xe0, 0];

/// A bare TCP connection to the broker.
pub struct RawClient {
    pub socket: TcpStream,
}

impl RawClient {
    pub async fn open(addr: SocketAddr) -> RawClient {
        RawClient { socket: TcpStream::connect(addr).await.expect("broker accepts TCP") }
    }

    /// Opens a connection and sends a clean-session CONNECT for MQTT `level`, checking
    /// the CONNACK accepts it.
    pub async fn connected(addr: SocketAddr, level: u8, client_id: &str) -> RawClient {
        let mut client = RawClient::open(addr).await;
        client.send(&connect(level, client_id, true, 30)).await;
        let connack = client.receive().await;
        assert!(
            connack.as_ref().is_some_and(|(first, body)| *first == 0x20 && body.get(1) == Some(&0)),
            "{client_id}: expected a CONNACK accepting the connection, got {connack:?}"
        );
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("write to broker");
    }

    /// The next packet from the broker as (first byte, body), or `None` when the broker
    /// closed the connection (or sent nothing for 5 s).
    pub async fn receive(&mut self) -> Option<(u8, Vec<u8>)> {
        let read = async {
            let first = self.socket.read_u8().await.ok()?;
            let mut len = 0usize;
            for shift in (0..28).step_by(7) {
                let byte = self.socket.read_u8().await.ok()?;
                len |= ((byte & 0x7f) as usize) << shift;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let mut body = vec![0; len];
            self.socket.read_exact(&mut body).await.ok()?;
            Some((first, body))
        };
        tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
    }

    /// Whether the broker closed the connection: reads until end of file, error or 5 s
    /// of silence (false).
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.socket.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}
