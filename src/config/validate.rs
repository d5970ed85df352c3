//! Checking the configuration once: `Config::validate` turns the raw input into a
//! `ValidConfig` (with the destinations rules may route to), or an error that names the
//! key and what to do.

use super::{Config, ConfigError, Fsync, SinkKind, TlsIdentity};

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
        if self.broker.max_queued_messages == 0 {
            return invalid("broker.max_queued_messages", "must be at least 1");
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
    use std::path::PathBuf;

    use super::*;
    use crate::config::RabbitMqConfig;

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
