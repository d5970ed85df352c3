//! Hand-built MQTT frames over a bare TCP socket, for what a well-behaved client library
//! refuses to send: empty client ids, bad topic names, broken lengths.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A frame: first byte, the remaining length as MQTT encodes it, then `body`.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
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
