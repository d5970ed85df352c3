//! The gateway's configuration: one struct tree, loaded from an optional TOML file and
//! overridden by command-line flags and `HOOKLINE_*` environment variables (see `cli`).
//!
//! Every key has a `///` doc comment and a default defined here, in one place. Unknown
//! keys are rejected so a typo fails at start-up instead of being silently ignored.
//! `Config::validate` turns the raw values into errors that name the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors found while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Root of the configuration tree.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of this gateway node, written as `node` in every envelope.
    pub node: String,
    /// Directory for local state: the spool (see `buffer`) and the embedded file sink's records.
    pub data: PathBuf,
    /// MQTT listener and broker limits.
    pub broker: BrokerConfig,
    /// The durable buffer between the broker and the rule workers.
    pub buffer: BufferConfig,
    /// Rule modules: where they live and what each call may use.
    pub rules: RulesConfig,
    /// Kafka producer. When `kafka.bootstrap_servers` is empty, records go to the
    /// embedded file sink under `data` instead.
    pub kafka: KafkaConfig,
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, the dashboard and its
    /// API).
    pub admin: AdminConfig,
    /// Who may connect, and which topics each client may use.
    pub auth: AuthConfig,
}

/// Client authentication and topic access control.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let clients connect without a username. Off unless asked for; the gateway warns
    /// loudly at start when it is on.
    pub anonymous: bool,
    /// TOML file of users and argon2 password hashes (`hookline user add` writes it);
    /// empty: no users.
    pub credentials: PathBuf,
    /// Access-control list file (see examples/door-locks.acl); empty: no ACL, every
    /// client may use every topic.
    pub acl: PathBuf,
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// Address of `/metrics`, `/healthz`, `/readyz`, the dashboard (`/`) and `/api/*`;
    /// loopback unless you mean to expose them (the tail shows device traffic).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { enabled: true, listen: "127.0.0.1:9180".parse().expect("default admin address parses") }
    }
}

/// The embedded MQTT broker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// MQTT TCP listener; one port speaks both MQTT 3.1.1 and MQTT 5.
    pub listen: SocketAddr,
    /// MQTT over TLS listener; needs `tls_cert` and `tls_key`. Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_listen: Option<SocketAddr>,
    /// MQTT over WebSocket listener (subprotocol `mqtt`, any path). Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_listen: Option<SocketAddr>,
    /// MQTT over WebSocket over TLS listener; needs `tls_cert` and `tls_key`. Absent: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wss_listen: Option<SocketAddr>,
    /// PEM certificate chain of the TLS and WSS listeners.
    pub tls_cert: PathBuf,
    /// PEM private key of the TLS and WSS listeners.
    pub tls_key: PathBuf,
    /// PEM CA certificates: when set, TLS clients must present a certificate it signed.
    pub tls_client_ca: PathBuf,
    /// What of a verified client certificate is the client's identity: `none` (the MQTT
    /// login is), `common_name`, or `san_dns` (its first DNS subject alternative name).
    /// The identity is the username (ACL `%u`) and no password is asked for.
    pub tls_identity: TlsIdentity,
    /// With `tls_identity`: a client's id must equal its certificate's identity.
    pub tls_identity_is_client_id: bool,
    /// Largest accepted MQTT packet, in bytes; bigger packets close the connection.
    pub max_packet_size: usize,
    /// Most simultaneous client connections.
    pub max_connections: usize,
    /// How long a new TCP connection may take to send CONNECT, in milliseconds.
    pub connect_timeout_ms: u16,
    /// Most unacknowledged QoS 1/2 messages in flight to one subscriber (fewer when the
    /// client's MQTT 5 Receive Maximum says so; the router itself holds at most 100).
    pub max_inflight: usize,
    /// Length of the listen queue of each listener: connections the kernel holds while
    /// the gateway accepts (a fleet reconnecting at once arrives in bursts).
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

/// The spool: the on-disk buffer every hook event is written to before the broker
/// acknowledges it, and that rule workers deliver from (see README, "Delivery guarantee").
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Directory of the spool's segment files; empty: `<data>/spool`.
    pub dir: PathBuf,
    /// Disk budget: the most bytes of events written and not yet delivered. On disk
    /// add at most one segment per rule worker of delivered events not yet deleted.
    pub max_bytes: u64,
    /// Size at which a segment file is finished and the next one started.
    pub segment_bytes: u64,
    /// When the spool is forced to disk: `always` (before a QoS 1/2 publish is
    /// acknowledged: nothing acknowledged is lost even on power loss), `interval`
    /// (every `fsync_interval_ms`: a power loss loses at most that much), `never`
    /// (when the OS decides). A killed process loses nothing in any of them: the
    /// writes are in the OS's page cache before the acknowledgement.
    pub fsync: Fsync,
    /// Period of `fsync = "interval"`, in milliseconds.
    pub fsync_interval_ms: u64,
    /// When the disk budget is used up: `backpressure` stops reading from the client
    /// until deliveries free room (nothing is acknowledged meanwhile); `reject` refuses
    /// the publish (MQTT 5: PUBACK/PUBREC reason 0x97 Quota exceeded; MQTT 3.1.1, which
    /// has no reason codes: the connection is closed unacknowledged, so the client
    /// sends it again later); `drop` acknowledges and drops it, counted in
    /// `spool_dropped` and logged.
    pub when_full: WhenFull,
}

/// See `BufferConfig::fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

/// See `BufferConfig::when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    Backpressure,
    Reject,
    Drop,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            dir: PathBuf::new(),
            max_bytes: 8 * 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            fsync: Fsync::Interval,
            fsync_interval_ms: 100,
            when_full: WhenFull::Backpressure,
        }
    }
}

/// Rule modules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory watched for `*.wasm` and `*.wat` rule modules.
    pub dir: PathBuf,
    /// Rule worker threads. Events are sharded across them by client id, which keeps
    /// each device's events in order. 0 means one per CPU core.
    pub workers: usize,
    /// Instruction budget of one guest call (wasmtime fuel, about one unit per
    /// WebAssembly instruction). A call that uses it up is stopped and its decision void.
    pub call_fuel: u64,
    /// Largest linear memory a rule instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Quiet time after a change in the rules directory before it is reloaded, in
    /// milliseconds; lets editors and copies finish writing.
    pub reload_debounce_ms: u64,
    /// Hex ed25519 public key file: when set, a rule loads only if `<module>.sig`
    /// verifies (see `hookline rule keygen` and `hookline rule sign`). Empty: off.
    pub public_key: PathBuf,
}

/// Kafka producer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`. Empty: use the embedded file sink.
    pub bootstrap_servers: String,
    /// Compression codec for record batches: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// How long the producer waits to fill a batch, in milliseconds.
    pub linger_ms: u64,
    /// How long a record may wait for delivery before it is reported failed, in
    /// milliseconds; 0 waits forever (records stay queued while Kafka is down).
    pub message_timeout_ms: u64,
    /// Extra librdkafka properties passed through as is (e.g. `"security.protocol" =
    /// "ssl"`). They override the settings above.
    pub properties: std::collections::BTreeMap<String, String>,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:1883";

impl Default for Config {
    fn default() -> Self {
        Config {
            node: default_node(),
            data: PathBuf::from("data"),
            broker: BrokerConfig::default(),
            buffer: BufferConfig::default(),
            rules: RulesConfig::default(),
            kafka: KafkaConfig::default(),
            admin: AdminConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            tls_listen: None,
            ws_listen: None,
            wss_listen: None,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_client_ca: PathBuf::new(),
            tls_identity: TlsIdentity::None,
            tls_identity_is_client_id: false,
            max_packet_size: 1024 * 1024,
            max_connections: 10_000,
            connect_timeout_ms: 5_000,
            max_inflight: 100,
            listen_backlog: 1024,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: PathBuf::from("rules"),
            workers: 0,
            call_fuel: 10_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            reload_debounce_ms: 100,
            public_key: PathBuf::new(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: String::new(),
            compression: "lz4".to_string(),
            linger_ms: 5,
            message_timeout_ms: 0,
            properties: Default::default(),
        }
    }
}

/// `gateway@<hostname>`, as the widely deployed bridge names its nodes.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string());
    format!("gateway@{host}")
}

impl Config {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML text; the error is a single line naming the offending key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            e.message().replace('\n', " ").trim().to_string() + &e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default()
        })
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| Err(ConfigError::Invalid { key, message: message.to_string() });
        if self.node.is_empty() {
            return invalid("node", "must not be empty");
        }
        if self.broker.max_packet_size < 64 {
            return invalid("broker.max_packet_size", "must be at least 64 bytes");
        }
        let tls = self.broker.tls_listen.is_some() || self.broker.wss_listen.is_some();
        for (key, path) in [("broker.tls_cert", &self.broker.tls_cert), ("broker.tls_key", &self.broker.tls_key)] {
            if tls && !path.is_file() {
                return invalid(key, &format!("{:?} is not a file; the TLS and WSS listeners need a PEM certificate and key", path));
            }
        }
        if !self.broker.tls_client_ca.as_os_str().is_empty() && !self.broker.tls_client_ca.is_file() {
            return invalid("broker.tls_client_ca", &format!("{:?} is not a file", self.broker.tls_client_ca));
        }
        if self.broker.max_connections == 0 {
            return invalid("broker.max_connections", "must be at least 1");
        }
        let certificates = self.broker.tls_identity != TlsIdentity::None;
        if certificates && self.broker.tls_client_ca.as_os_str().is_empty() {
            return invalid("broker.tls_identity", "needs broker.tls_client_ca: only a certificate that CA verified can name a client");
        }
        if self.broker.max_inflight == 0 {
            return invalid("broker.max_inflight", "must be at least 1");
        }
        if self.buffer.segment_bytes < 4096 || self.buffer.segment_bytes > self.buffer.max_bytes / 2 {
            return invalid(
                "buffer.segment_bytes",
                "must be at least 4096 and at most half of buffer.max_bytes (the spool frees space a whole segment at a time)",
            );
        }
        if self.buffer.max_bytes < 2 * self.broker.max_packet_size as u64 {
            return invalid("buffer.max_bytes", "must be at least twice broker.max_packet_size (the largest event must fit the budget)");
        }
        if self.buffer.fsync == Fsync::Interval && self.buffer.fsync_interval_ms == 0 {
            return invalid("buffer.fsync_interval_ms", "must be at least 1 (or set buffer.fsync = \"always\")");
        }
        if self.rules.call_fuel < 1000 {
            return invalid("rules.call_fuel", "must be at least 1000");
        }
        if self.rules.max_memory_bytes < 64 * 1024 {
            return invalid("rules.max_memory_bytes", "must be at least 65536 (one WebAssembly page)");
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.kafka.compression.as_str()) {
            return invalid("kafka.compression", "must be one of none, gzip, snappy, lz4, zstd");
        }
        if !self.auth.anonymous && self.auth.credentials.as_os_str().is_empty() && !certificates {
            return invalid(
                "auth.credentials",
                "no client could connect: auth.anonymous is false and no credentials file is set \
                 (create one with `hookline user add`, allow anonymous clients with --allow-anonymous, \
                 or name clients by their TLS certificates with broker.tls_identity)",
            );
        }
        Ok(())
    }

    /// Rule worker count with `0` resolved to the number of CPU cores.
    pub fn rule_workers(&self) -> usize {
        match self.rules.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../examples/hookline.toml");
        let config = Config::from_toml(text).expect("example config parses");
        config.validate().expect("example config is valid");
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.broker.listen.port(), 1883);
    }

    /// Every key, dotted (`broker.listen`), from the defaults.
    fn all_keys() -> Vec<String> {
        fn walk(prefix: &str, value: &toml::Value, keys: &mut Vec<String>) {
            if let toml::Value::Table(table) = value {
                for (key, value) in table {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    match value {
                        toml::Value::Table(_) if key != "properties" => walk(&path, value, keys),
                        _ => keys.push(path),
                    }
                }
            }
        }
        let mut keys = Vec::new();
        walk("", &toml::Value::try_from(Config::default()).unwrap(), &mut keys);
        keys
    }

    #[test]
    fn readme_documents_every_config_key() {
        let readme = include_str!("../README.md");
        for key in all_keys() {
            assert!(readme.contains(&format!("| `{key}` |")), "README config reference lacks `{key}`");
        }
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::from_toml("[broker]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_compression_names_the_key() {
        let mut config = Config::default();
        config.kafka.compression = "brotli".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("kafka.compression"), "{err}");
    }
}
