//! `[sink]` and its `[sink.<name>]` RabbitMQ tables: where routed records go.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
