//! Hook events: what the MQTT edge raises. They travel to the rule workers through
//! the spool (`crate::spool`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// The eight hook points, with the guest ABI's codes (`wasm-sdk/ABI.md`): this enum,
/// [`Hook::ALL`] and [`Hook::name`] are the ABI's hook table, which
/// `tests/it/sdk_tables.rs` checks every SDK against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    ClientConnected = 0,
    ClientDisconnected = 1,
    SessionSubscribed = 2,
    SessionUnsubscribed = 3,
    MessagePublish = 4,
    MessageDelivered = 5,
    MessageAcked = 6,
    AccessDenied = 7,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::ClientConnected,
        Hook::ClientDisconnected,
        Hook::SessionSubscribed,
        Hook::SessionUnsubscribed,
        Hook::MessagePublish,
        Hook::MessageDelivered,
        Hook::MessageAcked,
        Hook::AccessDenied,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::ClientConnected => "client.connected",
            Hook::ClientDisconnected => "client.disconnected",
            Hook::SessionSubscribed => "session.subscribed",
            Hook::SessionUnsubscribed => "session.unsubscribed",
            Hook::MessagePublish => "message.publish",
            Hook::MessageDelivered => "message.delivered",
            Hook::MessageAcked => "message.acked",
            Hook::AccessDenied => "access.denied",
        }
    }

    /// Parses a hook name; `message.deliver` is accepted as an alias.
    pub fn from_name(name: &str) -> Option<Hook> {
        if name == "message.deliver" {
            return Some(Hook::MessageDelivered);
        }
        Hook::ALL.into_iter().find(|hook| hook.name() == name)
    }

    /// Whether the event carries a message (topic, payload, qos).
    pub fn is_message(self) -> bool {
        matches!(self, Hook::MessagePublish | Hook::MessageDelivered | Hook::MessageAcked)
    }
}

/// One thing that happened in the broker. Cheap to clone: strings are shared and the
/// topic and payload point into the broker's own buffers.
#[derive(Debug, Clone)]
pub struct HookEvent {
    pub hook: Hook,
    /// Trigger time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The client the event is about; for delivered/acked, the receiving client.
    pub client_id: Arc<str>,
    pub username: Arc<str>,
    /// Message topic, or the filter for session events; empty for client events.
    pub topic: Bytes,
    pub payload: Bytes,
    /// Message QoS, or the granted QoS for `session.subscribed`.
    pub qos: u8,
    /// Publisher of a delivered or acked message, when known.
    pub from: Option<Arc<str>>,
    /// Why a client disconnected (`client.disconnected`), or what it was denied
    /// (`access.denied`: `publish`, `subscribe` or `will`).
    pub reason: Option<&'static str>,
    /// Network address (`ip:port`) of the client's connection, for an event a
    /// connection raised. Readable by rules; not part of the envelope.
    pub peer: Option<Arc<str>>,
}

impl HookEvent {
    /// An event with no message fields, stamped now.
    pub fn new(hook: Hook, client_id: Arc<str>, username: Arc<str>) -> HookEvent {
        HookEvent {
            hook,
            ts_ms: now_ms(),
            client_id,
            username,
            topic: Bytes::new(),
            payload: Bytes::new(),
            qos: 0,
            from: None,
            reason: None,
            peer: None,
        }
    }

    /// The topic as text; MQTT topics are UTF-8, anything else is shown lossily.
    pub fn topic_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.topic)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
