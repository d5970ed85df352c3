//! `[broker]`: the MQTT listeners and the broker's limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The embedded MQTT broker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// MQTT TCP listener, MQTT 3.1.1 and 5 on one port.
    pub listen: SocketAddr,
    /// MQTT over TLS listener (rustls); needs `tls_cert` and `tls_key`.
    /// Default: absent: off
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// MQTT over WebSocket listener (subprotocol `mqtt`, any path).
    /// Default: absent: off
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_listen: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS listener; needs `tls_cert` and `tls_key`.
    /// Default: absent: off
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wss_listen: Option<SocketAddr>,
    /// PEM certificate chain of the TLS and WSS listeners.
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS and WSS listeners.
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; when set, TLS clients must present a certificate it signed.
    /// Default: absent: no client certificates
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// What of a verified client certificate is the client's identity: `none` (the MQTT
    /// login is), `common_name` or `san_dns` (its first DNS subject alternative name);
    /// the identity is the username (ACL `%u`), no password is asked.
    pub tls_identity: TlsIdentity,
    /// With `tls_identity`: refuse (not authorized) a client whose id is not its
    /// certificate's identity.
    pub tls_identity_is_client_id: bool,
    /// Largest accepted MQTT packet in bytes (after the fixed header); a larger one
    /// closes the connection, is logged and counted in `mqtt_oversized_packets`.
    pub max_packet_size: usize,
    /// Most simultaneous clients; fewer when the open-file limit (raised at start to its
    /// hard limit) less `reserved_files` does not fit them (warned about at start).
    pub max_connections: usize,
    /// Open files kept for the gateway's own use (spool segments, rules, Kafka and
    /// RabbitMQ connections, the admin endpoint): client sockets use the rest of the
    /// open-file limit, and a client beyond it is refused with CONNACK "server busy".
    pub reserved_files: usize,
    /// Time a new TCP connection has to send CONNECT, in milliseconds.
    pub connect_timeout_ms: u16,
    /// Unacknowledged QoS 1/2 messages in flight to one subscriber; a smaller MQTT 5
    /// Receive Maximum wins (the router itself holds at most 100).
    pub max_inflight: usize,
    /// Messages one session's subscriptions to exact topics (a lock's command topic)
    /// may hold that its client has not taken yet, connected or away; a message beyond
    /// it is not kept for that session (counted in `mqtt_inbox_full`, logged).
    pub max_queued_messages: usize,
    /// Listen queue of each listener: connections the kernel holds while the gateway
    /// accepts (a fleet reconnecting at once arrives in bursts).
    pub listen_backlog: u32,
}

/// See `BrokerConfig::tls_identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsIdentity {
    None,
    CommonName,
    SanDns,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:1883";

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            tls_listen: None,
            ws_listen: None,
            wss_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_identity: TlsIdentity::None,
            tls_identity_is_client_id: false,
            max_packet_size: 1024 * 1024,
            max_connections: 10_000,
            reserved_files: 256,
            connect_timeout_ms: 5_000,
            max_inflight: 100,
            max_queued_messages: 1000,
            listen_backlog: 1024,
        }
    }
}
