//! The gateway's configuration: one struct tree, loaded from an optional TOML file and
//! overridden by command-line flags and `HOOKLINE_*` environment variables (see `cli`).
//!
//! Every key has a `///` doc comment and a default defined here, in one place. Unknown
//! keys are rejected so a typo fails at start-up instead of being silently ignored.
//! `Config` is the raw input; `Config::validate` checks it once and gives a `ValidConfig`,
//! the only thing `Gateway::start` takes, or an error that names the key and the fix.
//! The field docs are also the config reference of `docs/configuration.md` (see `tests/readme_tables.rs`).

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
    Invalid { key: String, message: String },
}

/// Root of the configuration tree: the raw input, as read from the file and the flags.
/// `Config::validate` turns it into a `ValidConfig`, the only kind the gateway runs on.
///
/// The `///` docs of the fields below are the config reference of `docs/configuration.md`
/// (`tests/readme_tables.rs` renders it from them): write each as the table's "meaning" cell. A `Default:` line
/// gives the default cell where the built-in value cannot show it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of this gateway node, written as `node` in every envelope.
    /// Default: `gateway@<hostname>`
    pub node: String,
    /// Directory of local state: the spool (unless `buffer.dir` says otherwise) and the
    /// file sink's `records.jsonl`.
    pub data: PathBuf,
    /// MQTT listener and broker limits.
    pub broker: BrokerConfig,
    /// The durable buffer between the broker and the rule workers.
    pub buffer: BufferConfig,
    /// Rule modules: where they live and what each call may use.
    pub rules: RulesConfig,
    /// Where routed records go.
    pub sink: SinkConfig,
    /// Kafka client settings, used by the Kafka sink and the downlink.
    pub kafka: KafkaConfig,
    /// The downlink: records consumed from Kafka, turned into MQTT messages by rules.
    pub downlink: DownlinkConfig,
    /// The cluster: gateways on the same Kafka with the same name form one broker.
    pub cluster: ClusterConfig,
    /// The admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, the dashboard and its
    /// API).
    pub admin: AdminConfig,
    /// Who may connect, and which topics each client may use.
    pub auth: AuthConfig,
}

/// Client authentication and topic access control.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let clients connect without a username (warned about at start).
    pub anonymous: bool,
    /// TOML file of users and their password hashes (argon2id, or Mosquitto's `$7$`
    /// PBKDF2), written by `hookline user add` and `hookline user import`.
    /// Default: absent: no users
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// Access-control list file, e.g. `examples/door-locks.acl`; default deny when set.
    /// Default: absent: no ACL, every client may use every topic
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acl: Option<PathBuf>,
    /// Threads that check passwords and tokens, apart from the MQTT connections; 0: one
    /// per CPU core. An argon2id check holds 19 MiB while it runs.
    pub check_threads: usize,
    /// Logins waiting for a checking thread, at most; a CONNECT beyond them, or one that
    /// would wait longer than half of `broker.connect_timeout_ms`, is refused with CONNACK
    /// "server busy" (counted in `mqtt_refused_login_busy`).
    pub check_queue: usize,
    /// Seconds a verified login is remembered (a keyed digest, in memory), so a client
    /// logging in again costs no hash; a changed password or a removed user stops
    /// matching at once. 0: every login is checked.
    pub cache_ttl_s: u64,
    /// JSON Web Tokens as logins, sent as the MQTT password (see `docs/access-control.md`).
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: false,
            credentials: None,
            acl: None,
            check_threads: 0,
            check_queue: 1024,
            cache_ttl_s: 3600,
            jwt: JwtConfig::default(),
        }
    }
}

/// JSON Web Tokens as logins: on when one of `public_key`, `secret_file` and `jwks` is
/// set. A token must verify, be within its `exp` and `nbf`, and name the client id in
/// `client_id_claim`; the client then logs in as that name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// PEM file of the public key tokens are signed with: RSA (RS256/384/512,
    /// PS256/384/512), EC P-256 or P-384 (ES256, ES384) or Ed25519 (EdDSA).
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
    /// File holding the HMAC secret of HS256/384/512 tokens, its bytes as they are (one
    /// final newline dropped).
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// JWKS file, `{"keys": [...]}`; a token's `kid` picks its key.
    /// Default: absent
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<PathBuf>,
    /// The claim that must equal the client id.
    pub client_id_claim: String,
    /// When set, the `iss` claim must equal it.
    /// Default: absent: not checked
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, the `aud` claim must hold it.
    /// Default: absent: not checked
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Seconds of clock difference allowed when checking `exp` and `nbf`.
    pub leeway_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            public_key: None,
            secret_file: None,
            jwks: None,
            client_id_claim: "sub".into(),
            issuer: None,
            audience: None,
            leeway_s: 0,
        }
    }
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin endpoint.
    pub enabled: bool,
    /// Address of the dashboard (`/`), `/metrics` (Prometheus text), `/healthz`, `/readyz`
    /// and `/api/*`; loopback unless you mean to expose them (the tail shows device
    /// traffic).
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

/// The spool: the on-disk buffer every hook event is written to before the broker
/// acknowledges it, and that rule workers deliver from (see `docs/delivery.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Directory of the spool's segment files.
    /// Default: absent: `<data>/spool`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Disk budget of the spool (8 GiB): the most bytes of events written and not yet
    /// delivered; on disk add at most one segment per rule worker of delivered events
    /// not yet deleted.
    pub max_bytes: u64,
    /// Size at which a segment file is finished and the next one started; at most half
    /// of `max_bytes`.
    pub segment_bytes: u64,
    /// When the spool is forced to disk: `always` (before a QoS 1/2 publish is
    /// acknowledged), `interval` (every `fsync_interval_ms`) or `never` (when the OS
    /// decides); see "Delivery guarantee".
    pub fsync: Fsync,
    /// Period of `fsync = "interval"`, in milliseconds.
    pub fsync_interval_ms: u64,
    /// When the disk budget is used up: `backpressure` (stop reading from the client),
    /// `reject` (refuse the publish) or `drop` (acknowledge and drop it, counted in
    /// `spool_dropped`); see "Delivery guarantee".
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
            dir: None,
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
    /// Rule worker threads; events are sharded across them by client id, which keeps
    /// each device's events in order. 0 means one per CPU core.
    pub workers: usize,
    /// Instruction budget of one guest call (wasmtime fuel, about one unit per
    /// WebAssembly instruction); a call that uses it up is stopped and its decision void.
    pub call_fuel: u64,
    /// Largest linear memory a rule instance may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Quiet time after a change in the rules directory before it is reloaded, in
    /// milliseconds; lets editors and copies finish writing.
    pub reload_debounce_ms: u64,
    /// Hex ed25519 public key file (`hookline rule keygen`); when set, a rule loads only
    /// if its `<module>.sig` verifies (`hookline rule sign`).
    /// Default: absent: off
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PathBuf>,
}

/// Where routed records go: the destinations rules route to, each a sink with its
/// folder under `src/sink/` and its arm in `Gateway::start`. `kind` names the first
/// destination; each `[sink.<name>]` table adds a RabbitMQ destination called `<name>`,
/// in the order written. A rule's `route` goes to the first destination, `route_to`
/// names one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SinkConfig {
    /// `file` (the embedded file sink: `records.jsonl` under `data`) or `kafka` (a Kafka
    /// producer set up by `[kafka]`, which then needs `bootstrap_servers`); `--kafka`
    /// selects `kafka`. The destination's name is its kind.
    /// Default: `file`, unless `[sink.<name>]` tables are configured
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<SinkKind>,
    #[serde(flatten)]
    pub rabbitmq: indexmap::IndexMap<String, RabbitMqConfig>,
}

/// See `SinkConfig::kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    File,
    Kafka,
}

/// A RabbitMQ destination, `[sink.<name>]`: records routed to `<name>` are published
/// over AMQP 0-9-1 as persistent messages with publisher confirms (see
/// `docs/rabbitmq.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitMqConfig {
    /// The RabbitMQ destination `<name>`: its connection URI,
    /// `amqp://user:password@host:port/vhost`, or `amqps://` for TLS; the
    /// vhost URL-encoded (`%2f` is `/`). Its query may tune the connection: `heartbeat`,
    /// `connection_timeout` (ms), `channel_max`, `frame_max`.
    /// Default: `amqp://guest:guest@127.0.0.1:5672/%2f`
    pub uri: String,
    /// PEM file of the certificate authorities that sign the broker's certificate, for
    /// `amqps://` with a private CA; unset: the system's roots.
    /// Default: unset
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Declare each exchange a rule routes to before the first publish to it, with
    /// `exchange_type` and `exchange_durable`; off, the exchange must exist and a record
    /// routed to a missing one fails (`records_failed`).
    /// Default: `false`
    pub declare_exchanges: bool,
    /// Type of the exchanges declared: `direct`, `fanout`, `topic` or `headers`.
    /// Default: `topic`
    pub exchange_type: ExchangeType,
    /// Declared exchanges survive a broker restart.
    /// Default: `true`
    pub exchange_durable: bool,
    /// How long a message may wait for the broker's confirm before the connection is
    /// taken as broken and the message sent again, in milliseconds; time the broker
    /// says it blocks the connection (memory or disk alarm, `connection.blocked`) does not
    /// count.
    /// Default: `30000`
    pub confirm_timeout_ms: u64,
    /// Messages published and not yet confirmed, at most; beyond it the rule workers
    /// wait (the spool holds what comes meanwhile).
    /// Default: `1000`
    pub max_in_flight: usize,
    /// AMQP client properties sent when connecting, as strings (e.g. `connection_name`,
    /// which `rabbitmqctl list_connections client_properties` and the management UI
    /// show); the URI carries the connection's tuning.
    /// Default: empty
    pub properties: std::collections::BTreeMap<String, String>,
}

/// See `RabbitMqConfig::exchange_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        RabbitMqConfig {
            uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            ca_file: None,
            declare_exchanges: false,
            exchange_type: ExchangeType::Topic,
            exchange_durable: true,
            confirm_timeout_ms: 30_000,
            max_in_flight: 1000,
            properties: Default::default(),
        }
    }
}

/// Kafka client settings. The Kafka sink's producer uses them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`; needed by `sink.kind =
    /// "kafka"`.
    /// Default: empty
    pub bootstrap_servers: String,
    /// Compression codec of record batches: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: Compression,
    /// How long the producer waits to fill a batch, in milliseconds.
    pub linger_ms: u64,
    /// How long a record may wait for delivery before it is reported failed, in
    /// milliseconds; 0 waits forever (records stay queued while Kafka is down).
    pub message_timeout_ms: u64,
    /// librdkafka properties passed through as is (e.g. `"security.protocol" = "ssl"`);
    /// they override the settings above.
    /// Default: empty
    pub properties: std::collections::BTreeMap<String, String>,
}

/// The downlink: a Kafka consumer of the topics rules subscribe to with `kafka.record`
/// (see `docs/downlink.md`). Runs when `kafka.bootstrap_servers` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownlinkConfig {
    /// Kafka consumer group the downlink commits its offsets under. The nodes of a
    /// cluster share the partitions by their heartbeats, not by joining the group.
    pub group: String,
    /// Where a group with no committed offset starts reading: `earliest` (nothing
    /// produced before the first start is missed) or `latest`.
    pub start_from: StartFrom,
    /// Most MQTT messages published and not yet delivered; beyond it the downlink
    /// stops consuming until deliveries catch up.
    pub max_outstanding: usize,
}

/// Gateway nodes pointed at the same Kafka with the same cluster name are one MQTT
/// broker: sessions, takeovers and messages span the nodes (see `docs/cluster.md`).
/// In force whenever Kafka is configured (`kafka.bootstrap_servers`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Cluster name; its Kafka topics are `<name>.sessions`, `<name>.mailbox`,
    /// `<name>.nodes` and `<name>.retained`.
    pub name: String,
    /// Partitions of the mailbox topic when the gateway creates it. Never add partitions
    /// to it later: a client's messages must stay in one partition.
    pub mailbox_partitions: i32,
    /// Replication factor of the cluster's topics when the gateway creates them; -1:
    /// the Kafka broker's default.
    pub replication_factor: i32,
    /// The most a CONNECT waits on Kafka, in milliseconds: for its claim on the client id
    /// to be read back (a few milliseconds on a healthy Kafka), or for a starting node to
    /// catch up with the cluster. Past it, and at once while the node knows Kafka is away,
    /// the node serves the client from what it knows of the session and the claim takes
    /// effect when Kafka has it (see docs/cluster.md, "When Kafka is away"). Less than
    /// `broker.connect_timeout_ms`.
    pub claim_wait_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { name: "hookline".into(), mailbox_partitions: 8, replication_factor: -1, claim_wait_ms: 1000 }
    }
}

/// See `DownlinkConfig::start_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    /// As librdkafka's `auto.offset.reset` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

impl Default for DownlinkConfig {
    fn default() -> Self {
        DownlinkConfig { group: "hookline-downlink".into(), start_from: StartFrom::Earliest, max_outstanding: 10_000 }
    }
}

/// See `KafkaConfig::compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's name, as librdkafka's `compression.type` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
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
            sink: SinkConfig::default(),
            kafka: KafkaConfig::default(),
            downlink: DownlinkConfig::default(),
            cluster: ClusterConfig::default(),
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
            public_key: None,
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: String::new(),
            compression: Compression::Lz4,
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

/// A configuration that `Config::validate` accepted: the only kind `Gateway::start`
/// takes. Read it through `Deref`; it cannot be built or changed any other way, so
/// what the gateway runs on is what was checked.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    config: Config,
    destinations: Vec<Destination>,
}

/// A destination rules may route to (see `SinkConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    File,
    Kafka,
    /// The name of its `[sink.<name>]` table.
    RabbitMq(String),
}

impl Destination {
    /// The name rules give it (`route_to`).
    pub fn name(&self) -> &str {
        match self {
            Destination::File => "file",
            Destination::Kafka => "kafka",
            Destination::RabbitMq(name) => name,
        }
    }
}

impl ValidConfig {
    /// Where records go, in order: the first is where a rule's `route` goes. Never empty.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Config {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML text; the error is a single line naming the offending key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let one_line = |e: &toml::de::Error| {
            e.message().replace('\n', " ").trim().to_string() + &e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default()
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| one_line(&e))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| match e.path().to_string().as_str() {
            "." => one_line(e.inner()),
            key => format!("`{key}`: {}", one_line(e.inner())),
        })
    }

    /// Checks values that parse but cannot work, once: the result is what the gateway
    /// runs on. Each error names its key and what to do.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let invalid = |key: &str, message: &str| Err(ConfigError::Invalid { key: key.to_string(), message: message.to_string() });
        if self.node.is_empty() {
            return invalid("node", "must not be empty");
        }
        let paths = [
            ("broker.tls_cert", &self.broker.tls_cert),
            ("broker.tls_key", &self.broker.tls_key),
            ("broker.tls_client_ca", &self.broker.tls_client_ca),
            ("buffer.dir", &self.buffer.dir),
            ("rules.public_key", &self.rules.public_key),
            ("auth.credentials", &self.auth.credentials),
            ("auth.acl", &self.auth.acl),
            ("auth.jwt.public_key", &self.auth.jwt.public_key),
            ("auth.jwt.secret_file", &self.auth.jwt.secret_file),
            ("auth.jwt.jwks", &self.auth.jwt.jwks),
        ];
        for (key, path) in paths {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return invalid(key, "is an empty path; to leave it unset, remove the key");
            }
        }
        if self.broker.max_packet_size < 64 {
            return invalid("broker.max_packet_size", "must be at least 64 bytes");
        }
        let tls = self.broker.tls_listen.is_some() || self.broker.wss_listen.is_some();
        for (key, path) in [("broker.tls_cert", &self.broker.tls_cert), ("broker.tls_key", &self.broker.tls_key)] {
            match path {
                _ if !tls => {}
                Some(path) if path.is_file() => {}
                Some(path) => {
                    return invalid(key, &format!("{:?} is not a file; the TLS and WSS listeners need a PEM certificate and key", path))
                }
                None => return invalid(key, "is not set; the TLS and WSS listeners need a PEM certificate and key"),
            }
        }
        if let Some(ca) = self.broker.tls_client_ca.as_ref().filter(|ca| !ca.is_file()) {
            return invalid("broker.tls_client_ca", &format!("{:?} is not a file", ca));
        }
        if self.broker.max_connections == 0 {
            return invalid("broker.max_connections", "must be at least 1");
        }
        let certificates = self.broker.tls_identity != TlsIdentity::None;
        if certificates && self.broker.tls_client_ca.is_none() {
            return invalid("broker.tls_identity", "needs broker.tls_client_ca: only a certificate that CA verified can name a client");
        }
        if self.broker.max_inflight == 0 {
            return invalid("broker.max_inflight", "must be at least 1");
        }
        if self.downlink.max_outstanding == 0 {
            return invalid("downlink.max_outstanding", "must be at least 1");
        }
        if let Err(why) = crate::names::check_kafka_topic(&format!("{}.sessions", self.cluster.name)) {
            return invalid("cluster.name", &format!("names Kafka topics `<name>.sessions`, `<name>.mailbox`, ...: {why}"));
        }
        if self.cluster.mailbox_partitions < 1 {
            return invalid("cluster.mailbox_partitions", "must be at least 1");
        }
        if self.cluster.replication_factor == 0 || self.cluster.replication_factor < -1 {
            return invalid("cluster.replication_factor", "must be -1 (the broker's default) or at least 1");
        }
        if self.cluster.claim_wait_ms == 0 || self.cluster.claim_wait_ms >= self.broker.connect_timeout_ms as u64 {
            return invalid(
                "cluster.claim_wait_ms",
                "must be at least 1 and less than broker.connect_timeout_ms (a CONNECT that waits longer is dropped unanswered)",
            );
        }
        if !self.kafka.bootstrap_servers.trim().is_empty() {
            if let Err(why) = check_bootstrap_servers(&self.kafka.bootstrap_servers) {
                return invalid(
                    "kafka.bootstrap_servers",
                    &format!(
                        "{why}: write `host:port[,host:port...]`, e.g. `127.0.0.1:9092` or `kafka-1:9092,kafka-2:9092` \
                         (the value of --kafka and HOOKLINE_KAFKA too)"
                    ),
                );
            }
        }
        if self.downlink.group.is_empty() {
            return invalid("downlink.group", "must not be empty (a Kafka consumer group id)");
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
        let first = match (self.sink.kind, self.kafka.bootstrap_servers.trim().is_empty()) {
            (Some(SinkKind::Kafka), true) => {
                return invalid(
                    "kafka.bootstrap_servers",
                    "is empty, and sink.kind = \"kafka\" needs it: set it to `host:port[,host:port...]` \
                     (or pass --kafka SERVERS, HOOKLINE_KAFKA)",
                )
            }
            (None, false) if self.sink.rabbitmq.is_empty() => {
                return invalid(
                    "sink.kind",
                    "is not set, but kafka.bootstrap_servers is: to send records to Kafka add `[sink] kind = \"kafka\"`; \
                     to keep them in the file sink say `[sink] kind = \"file\"`",
                )
            }
            (Some(SinkKind::Kafka), _) => Some(Destination::Kafka),
            (Some(SinkKind::File), _) => Some(Destination::File),
            (None, _) if self.sink.rabbitmq.is_empty() => Some(Destination::File),
            // The first RabbitMQ destination comes first.
            (None, _) => None,
        };
        for (name, rabbit) in &self.sink.rabbitmq {
            let key = |field: &str| format!("sink.{name}.{field}");
            if matches!(name.as_str(), "file" | "kafka") {
                return invalid(
                    &format!("sink.{name}"),
                    "names a RabbitMQ destination `file` or `kafka`, which are the names of those sinks: choose another name",
                );
            }
            if let Err(error) = rabbit.uri.parse::<lapin::uri::AMQPUri>() {
                return invalid(
                    &key("uri"),
                    &format!("is not an AMQP URI ({error}): write `amqp://user:password@host:port/vhost` or `amqps://...`"),
                );
            }
            if let Some(ca) = rabbit.ca_file.as_ref().filter(|ca| !ca.is_file()) {
                return invalid(&key("ca_file"), &format!("{:?} is not a file", ca));
            }
            if rabbit.confirm_timeout_ms == 0 {
                return invalid(&key("confirm_timeout_ms"), "must be at least 1");
            }
            if rabbit.max_in_flight == 0 {
                return invalid(&key("max_in_flight"), "must be at least 1");
            }
        }
        let rabbits = self.sink.rabbitmq.keys().map(|name| Destination::RabbitMq(name.clone()));
        let destinations = first.into_iter().chain(rabbits).collect();
        let jwt = &self.auth.jwt;
        let jwt_keys = [&jwt.public_key, &jwt.secret_file, &jwt.jwks].into_iter().flatten().count();
        if jwt_keys > 1 {
            return invalid("auth.jwt", "set one of public_key, secret_file and jwks: a token is checked against one kind of key");
        }
        if jwt.client_id_claim.is_empty() {
            return invalid("auth.jwt.client_id_claim", "must name a claim, e.g. `sub`");
        }
        if self.auth.check_queue == 0 {
            return invalid("auth.check_queue", "must be at least 1");
        }
        if !self.auth.anonymous && self.auth.credentials.is_none() && !certificates && jwt_keys == 0 {
            return invalid(
                "auth.credentials",
                "no client could connect: auth.anonymous is false and no credentials file is set \
                 (create one with `hookline user add`, allow anonymous clients with --allow-anonymous, \
                 name clients by their TLS certificates with broker.tls_identity, or accept tokens with auth.jwt)",
            );
        }
        Ok(ValidConfig { config: self, destinations })
    }

    /// Rule worker count with `0` resolved to the number of CPU cores.
    pub fn rule_workers(&self) -> usize {
        match self.rules.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Checks a bootstrap server list: `host:port[,host:port...]`, each optionally behind
/// the security protocol as librdkafka allows it (`SSL://host:port`). The error says
/// which entry is wrong and why.
fn check_bootstrap_servers(servers: &str) -> Result<(), String> {
    const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
    for entry in servers.split(',').map(str::trim) {
        let address = match entry.split_once("://") {
            Some((scheme, rest)) if PROTOCOLS.contains(&scheme.to_ascii_lowercase().as_str()) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "`{entry}`: `{scheme}://` is not a Kafka protocol (the protocol goes in kafka.properties.\"security.protocol\")"
                ))
            }
            None => entry,
        };
        if address.is_empty() {
            return Err("an empty entry (a comma too many?)".to_string());
        }
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err(format!("`{entry}` has no port"));
        };
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(ipv6) if ipv6.parse::<std::net::Ipv6Addr>().is_ok() => ipv6,
            Some(_) => return Err(format!("`{entry}`: not an IPv6 address in brackets")),
            None if host.contains(':') => return Err(format!("`{entry}`: write an IPv6 address in brackets, `[::1]:9092`")),
            None => host,
        };
        if host.is_empty() || host.contains(['/', ' ', '@', '[', ']']) {
            return Err(format!("`{entry}` has no usable host name"));
        }
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("`{entry}`: `{port}` is not a port number"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_servers_are_host_port_lists() {
        for good in ["127.0.0.1:9092", "kafka-1:9092, kafka-2:9093", "[::1]:9092", "SSL://kafka:9093", "sasl_ssl://k.example:9094"] {
            assert_eq!(check_bootstrap_servers(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("9092", "has no port"),
            ("http://localhost:9092", "not a Kafka protocol"),
            ("kafka", "has no port"),
            (":9092", "no usable host"),
            ("kafka:0", "not a port number"),
            ("kafka:99999", "not a port number"),
            ("kafka:9092,", "empty entry"),
            ("::1:9092", "in brackets"),
            ("[zz]:9092", "in brackets"),
        ] {
            let error = check_bootstrap_servers(bad).expect_err(bad);
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../examples/hookline.toml");
        let config = Config::from_toml(text).expect("example config parses").validate().expect("example config is valid");
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.broker.listen.port(), 1883);
        assert_eq!(config.destinations(), [Destination::Kafka]);
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
    fn docs_document_every_config_key() {
        let doc = include_str!("../docs/configuration.md");
        for key in all_keys() {
            assert!(doc.contains(&format!("| `{key}` |")), "docs/configuration.md's config reference lacks `{key}`");
        }
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::from_toml("[broker]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_compression_names_the_key() {
        let err = Config::from_toml("[kafka]\ncompression = \"brotli\"\n").unwrap_err();
        assert!(err.contains("kafka.compression"), "{err}");
        assert!(err.contains("zstd"), "the error lists the codecs: {err}");
    }

    /// A config every check passes, to break one key at a time.
    fn anonymous() -> Config {
        let mut config = Config::default();
        config.auth.anonymous = true;
        config
    }

    fn refused(config: Config) -> String {
        config.validate().expect_err("config should be refused").to_string()
    }

    #[test]
    fn rabbitmq_destinations_follow_the_first_in_the_order_written() {
        let text = "[sink]\nkind = \"kafka\"\n\n[sink.zeta]\nuri = \"amqp://h:5672/%2f\"\n\n[sink.alpha]\nuri = \"amqps://u:p@h:5671/v\"\nconfirm_timeout_ms = 10\n\n[sink.alpha.properties]\nconnection_name = \"gw-1\"\n\n[kafka]\nbootstrap_servers = \"k:9092\"\n";
        let mut config = Config::from_toml(text).unwrap();
        config.auth.anonymous = true;
        let config = config.validate().unwrap();
        let expected = [Destination::Kafka, Destination::RabbitMq("zeta".into()), Destination::RabbitMq("alpha".into())];
        assert_eq!(config.destinations(), expected);
        assert_eq!(config.sink.rabbitmq["alpha"].confirm_timeout_ms, 10);
        assert_eq!(config.sink.rabbitmq["alpha"].properties["connection_name"], "gw-1");
    }

    #[test]
    fn rabbitmq_alone_may_share_kafka_with_the_cluster() {
        let text = "[sink.rabbit]\nuri = \"amqp://h:5672/%2f\"\n\n[kafka]\nbootstrap_servers = \"k:9092\"\n";
        let mut config = Config::from_toml(text).unwrap();
        config.auth.anonymous = true;
        assert_eq!(config.validate().unwrap().destinations(), [Destination::RabbitMq("rabbit".into())]);
    }

    #[test]
    fn bad_rabbitmq_settings_name_their_key() {
        let mut config = anonymous();
        config.sink.rabbitmq.insert("rabbit".into(), RabbitMqConfig { uri: "http://h".into(), ..RabbitMqConfig::default() });
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`sink.rabbit.uri`") && err.contains("amqp://"), "{err}");

        let mut config = anonymous();
        config.sink.rabbitmq.insert("kafka".into(), RabbitMqConfig::default());
        assert!(config.validate().unwrap_err().to_string().contains("`sink.kafka`"));

        let err = Config::from_toml("[sink.rabbit]\nurl = \"amqp://h\"\n").unwrap_err();
        assert!(err.contains("sink") && err.contains("url"), "{err}");
    }

    #[test]
    fn without_a_sink_section_records_go_to_the_file_sink() {
        assert_eq!(anonymous().validate().unwrap().destinations(), [Destination::File]);
    }

    #[test]
    fn compression_reaches_librdkafka_by_its_name() {
        let config = Config::from_toml("[kafka]\ncompression = \"zstd\"\n").unwrap();
        assert_eq!(config.kafka.compression.as_str(), "zstd");
        assert_eq!(Config::default().kafka.compression.as_str(), "lz4");
    }

    #[test]
    fn a_kafka_sink_without_bootstrap_servers_names_the_key_and_the_flag() {
        let mut config = anonymous();
        config.sink.kind = Some(SinkKind::Kafka);
        let err = refused(config);
        assert!(err.contains("`kafka.bootstrap_servers`") && err.contains("--kafka"), "{err}");
    }

    #[test]
    fn bootstrap_servers_without_a_sink_kind_are_refused_not_ignored() {
        let mut config = Config::from_toml("[kafka]\nbootstrap_servers = \"kafka:9092\"\n").unwrap();
        config.auth.anonymous = true;
        let err = refused(config);
        assert!(err.contains("`sink.kind`") && err.contains("[sink] kind = \"kafka\""), "{err}");
    }

    #[test]
    fn a_file_sink_may_keep_kafka_settings_for_others() {
        let mut config = Config::from_toml("[sink]\nkind = \"file\"\n\n[kafka]\nbootstrap_servers = \"kafka:9092\"\n").unwrap();
        config.auth.anonymous = true;
        assert_eq!(config.validate().unwrap().destinations(), [Destination::File]);
    }

    #[test]
    fn an_empty_path_is_refused_and_told_to_remove_the_key() {
        for key in ["auth.acl", "broker.tls_client_ca", "buffer.dir", "rules.public_key"] {
            let (section, name) = key.split_once('.').unwrap();
            let mut config = Config::from_toml(&format!("[{section}]\n{name} = \"\"\n")).unwrap();
            config.auth.anonymous = true;
            let err = refused(config);
            assert!(err.contains(&format!("`{key}`")) && err.contains("remove the key"), "{err}");
        }
    }

    #[test]
    fn a_tls_listener_without_a_key_names_the_key() {
        let mut config = anonymous();
        config.broker.wss_listen = Some("127.0.0.1:0".parse().unwrap());
        config.broker.tls_cert = Some(PathBuf::from("Cargo.toml"));
        let err = refused(config);
        assert!(err.contains("`broker.tls_key`") && err.contains("is not set"), "{err}");
    }

    #[test]
    fn no_way_to_connect_is_refused_with_the_three_fixes() {
        let err = refused(Config::default());
        assert!(err.contains("`auth.credentials`") && err.contains("hookline user add") && err.contains("--allow-anonymous"), "{err}");
    }
}
