//! What happens at the MQTT edge: sockets not accepted, handshakes and CONNECTs that
//! fail, packets MQTT does not allow, refusals by the ACL or the spool.

use std::fmt::Display;
use std::sync::atomic::AtomicU64;

use super::{InternalEvent, LogLimit};
use crate::metrics::Metrics;

/// The listener could not accept a socket (out of file descriptors, most likely). Not
/// counted: the socket never existed for the gateway.
pub struct AcceptFailed<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for AcceptFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(error = %self.error, skipped, "cannot accept an MQTT connection");
        }
    }
}

/// A TLS or WebSocket handshake failed or timed out before MQTT began.
pub struct HandshakeFailed<'a> {
    pub metrics: &'a Metrics,
    pub peer: std::net::SocketAddr,
    pub error: &'a str,
}

impl InternalEvent for HandshakeFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.mqtt_handshake_failures, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(peer = %self.peer, error = %self.error, skipped, "handshake failed before MQTT");
        }
    }
}

/// A connection closed for a packet MQTT does not allow (or one that does not parse).
pub struct ProtocolError<'a> {
    pub metrics: &'a Metrics,
    pub peer: &'a dyn Display,
    pub client: &'a str,
    /// What was wrong, as the log line ends: "closing an MQTT connection: {what}".
    pub what: &'a str,
    pub error: Option<&'a dyn Display>,
}

impl InternalEvent for ProtocolError<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.mqtt_protocol_errors, 1);
        if let Some(skipped) = LOG.allow() {
            let error = self.error.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(peer = %self.peer, client = self.client, %error, skipped, "closing an MQTT connection: {}", self.what);
        }
    }
}

/// A CONNECT refused with a CONNACK code; `counter` is the refusal's own counter.
pub struct ConnectionRefused<'a> {
    pub counter: &'a AtomicU64,
    pub peer: &'a dyn Display,
    pub client: &'a str,
    /// The refusal as the log line names it ("bad user name or password", ...).
    pub reason: &'a str,
}

impl InternalEvent for ConnectionRefused<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(self.counter, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(peer = %self.peer, client = self.client, skipped, "MQTT connection refused: {}", self.reason);
        }
    }
}

/// The ACL refused a client's publish, subscription or will.
pub struct AccessDenied<'a> {
    pub metrics: &'a Metrics,
    pub client: &'a str,
    pub peer: &'a str,
    /// `publish`, `subscribe` or `will`.
    pub action: &'a str,
    pub topic: &'a [u8],
}

impl InternalEvent for AccessDenied<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.access_denied, 1);
        if let Some(skipped) = LOG.allow() {
            let topic = String::from_utf8_lossy(self.topic);
            tracing::warn!(client = self.client, peer = self.peer, action = self.action, %topic, skipped, "denied by the ACL");
        }
    }
}

/// The spool could not take an MQTT 3.1.1 client's publish: the connection closes
/// without acknowledging it (MQTT 3.1.1 has no way to refuse a publish). The spool
/// counts the refusal itself (`spool_rejected`, `spool_write_errors`).
pub struct PublishNotSpooled<'a> {
    pub client: &'a str,
    pub peer: &'a str,
}

impl InternalEvent for PublishNotSpooled<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                client = self.client,
                peer = self.peer,
                skipped,
                "spool full or failing: closing this MQTT 3.1.1 client without acknowledging its publish (it will resend)"
            );
        }
    }
}

/// A CONNECT served by this node alone: it had not caught up with the cluster's topics
/// within `cluster.claim_wait_ms`.
pub struct ServedAlone<'a> {
    pub metrics: &'a Metrics,
    pub client: &'a str,
}

impl InternalEvent for ServedAlone<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.cluster_served_alone, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                client = self.client,
                skipped,
                "not caught up with the cluster's topics within cluster.claim_wait_ms (just started, or Kafka away since): \
                 serving the client alone until this node has, its session kept by this node only meanwhile"
            );
        }
    }
}

/// A message not kept for a session whose inbox is full (`broker.max_queued_messages`):
/// its client takes its messages slower than they come, or is away.
pub struct InboxFull<'a> {
    pub metrics: &'a Metrics,
    pub client: &'a str,
    pub topic: &'a [u8],
}

impl InternalEvent for InboxFull<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.mqtt_inbox_full, 1);
        if let Some(skipped) = LOG.allow() {
            let topic = String::from_utf8_lossy(self.topic);
            tracing::warn!(client = self.client, %topic, skipped, "message not kept for a session whose inbox is full (broker.max_queued_messages)");
        }
    }
}
