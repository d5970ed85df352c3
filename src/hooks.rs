//! Hook events: what the MQTT edge raises, and the downlink's `kafka.record`. The edge's
//! travel to the rule workers through the spool (`crate::spool`); a `kafka.record` goes
//! from the downlink's consumer straight to the rules (`crate::downlink`), its Kafka
//! offset being what keeps it until it is done.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// The hook points, with the guest ABI's codes (`wasm-sdk/ABI.md`): this enum,
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
    /// A record consumed from Kafka by the downlink (never spooled).
    KafkaRecord = 8,
}

impl Hook {
    pub const ALL: [Hook; 9] = [
        Hook::ClientConnected,
        Hook::ClientDisconnected,
        Hook::SessionSubscribed,
        Hook::SessionUnsubscribed,
        Hook::MessagePublish,
        Hook::MessageDelivered,
        Hook::MessageAcked,
        Hook::AccessDenied,
        Hook::KafkaRecord,
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
            Hook::KafkaRecord => "kafka.record",
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

/// Why a client disconnected (`client.disconnected`), or what it was denied
/// (`access.denied`). `name` is the envelope's text; `code` is the spool's byte on disk,
/// so a new reason takes the next free code and no code is ever reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The client sent DISCONNECT.
    Normal = 1,
    /// The socket closed or failed without a DISCONNECT, or the gateway closed it.
    Closed = 2,
    KeepaliveTimeout = 3,
    /// Another connection took over the client id.
    Takeover = 4,
    ProtocolError = 5,
    /// Denied: a publish.
    Publish = 6,
    /// Denied: a subscription.
    Subscribe = 7,
    /// Denied: a will message's topic.
    Will = 8,
    /// Closed by an operator (`Gateway::disconnect_client`).
    Administrative = 9,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Normal,
        Reason::Closed,
        Reason::KeepaliveTimeout,
        Reason::Takeover,
        Reason::ProtocolError,
        Reason::Publish,
        Reason::Subscribe,
        Reason::Will,
        Reason::Administrative,
    ];

    /// The text of the envelope's `reason` (or `action`) field.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Normal => "normal",
            Reason::Closed => "closed",
            Reason::KeepaliveTimeout => "keepalive_timeout",
            Reason::Takeover => "takeover",
            Reason::ProtocolError => "protocol_error",
            Reason::Publish => "publish",
            Reason::Subscribe => "subscribe",
            Reason::Will => "will",
            Reason::Administrative => "administrative",
        }
    }

    /// The spool's byte for this reason (0 there means none).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.code() == code)
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
    pub reason: Option<Reason>,
    /// Network address (`ip:port`) of the client's connection, for an event a
    /// connection raised. Readable by rules; not part of the envelope.
    pub peer: Option<Arc<str>>,
    /// The event's number in its client's session (1, 2, ...; 0 for an event of no
    /// session): records carry it in header `hookline-seq`, so consumers can order a
    /// device's records whichever node or spool delivered them.
    pub seq: u64,
    /// Where a `kafka.record` event came from in Kafka (its topic is `topic`, its value
    /// `payload`). Never spooled.
    pub record: Option<Arc<ConsumedRecord>>,
}

/// A record consumed from Kafka, beside its topic and value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
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
            seq: 0,
            record: None,
        }
    }

    /// A `kafka.record` event: a record consumed from `topic`, stamped now.
    pub fn kafka_record(topic: &str, value: Bytes, record: ConsumedRecord) -> HookEvent {
        let none: Arc<str> = Arc::from("");
        HookEvent {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload: value,
            record: Some(Arc::new(record)),
            ..HookEvent::new(Hook::KafkaRecord, none.clone(), none)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Spool frames written by earlier builds hold these codes: they never change.
    #[test]
    fn reason_codes_are_the_ones_on_disk() {
        let names: Vec<(u8, &str)> = Reason::ALL.into_iter().map(|r| (r.code(), r.name())).collect();
        let on_disk =
            ["normal", "closed", "keepalive_timeout", "takeover", "protocol_error", "publish", "subscribe", "will", "administrative"];
        assert_eq!(names, on_disk.into_iter().enumerate().map(|(i, name)| (i as u8 + 1, name)).collect::<Vec<_>>());
        assert!(Reason::ALL.into_iter().all(|r| Reason::from_code(r.code()) == Some(r)));
        assert_eq!(Reason::from_code(0), None);
    }
}
