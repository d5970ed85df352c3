//! The client a connection serves once its CONNECT is accepted: who it is, which MQTT it
//! speaks, and what becomes of its session when the connection ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::hooks::{Hook, HookEvent};
use bytes::BytesMut;
use rumqttd::protocol::{self, v4::V4, v5::V5, Packet, Protocol};

/// The client a connection serves, once its CONNECT is accepted.
pub(in crate::broker) struct Client {
    pub id: Arc<str>,
    pub username: Arc<str>,
    pub shard: usize,
    /// The peer's `ip:port`, as logs and every event of the connection carry it.
    pub peer: Arc<str>,
    /// The session's next event number (`HookEvent::seq`); it goes on with a resumed
    /// session.
    pub next_seq: AtomicU64,
}

impl Client {
    /// An event about this client, stamped now.
    pub fn event(&self, hook: Hook) -> HookEvent {
        let mut event = HookEvent::new(hook, self.id.clone(), self.username.clone());
        event.peer = Some(self.peer.clone());
        event.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        event
    }
}

/// What becomes of a client's session: whether the router's copy ends with the link
/// (`router_clean`), and how long hookline keeps it after the connection ends. In a
/// cluster the router keeps no session: the cluster does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) router_clean: bool,
    /// Seconds the session outlives its connection; `u32::MAX`: for good (MQTT 3.1.1
    /// clean session 0, and MQTT 5's "does not expire").
    pub(super) expiry: u32,
}

impl Session {
    /// From the CONNECT: MQTT 5's Clean Start and Session Expiry Interval (absent: 0),
    /// or MQTT 3.1.1's clean session (0 keeps the session for good).
    pub(super) fn of(version: Version, clean_start: bool, expiry: Option<u32>) -> Session {
        let expiry = match version {
            Version::V5 => expiry.unwrap_or(0),
            _ if clean_start => 0,
            _ => u32::MAX,
        };
        Session { router_clean: clean_start && expiry == 0, expiry }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V4,
    V5,
}

impl Version {
    pub(super) fn read(self, buffer: &mut BytesMut, max: usize) -> Result<Packet, protocol::Error> {
        match self {
            Version::V4 => V4.read_mut(buffer, max),
            Version::V5 => V5.read_mut(buffer, max),
        }
    }

    pub(super) fn write(self, packet: Packet, buffer: &mut BytesMut) -> Result<usize, protocol::Error> {
        match self {
            Version::V4 => V4.write(packet, buffer),
            Version::V5 => V5.write(packet, buffer),
        }
    }
}
