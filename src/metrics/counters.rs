//! The gateway's counters and gauges, declared once (`counters!`): each with its Prometheus
//! name and help, a snapshot for logs and tests, and the rule and hook counts beside them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::by_topic::{Outcome, RecordsByTopic, TopicSeries};
use super::latency::LatencyHistogram;
use crate::hooks::Hook;

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident,)*) => {
        /// Gateway-wide counters. Each field is a monotonically increasing count unless
        /// its doc says gauge.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[doc = $doc])+ pub $name: AtomicU64,)*
            /// Hook events raised, by hook (indexed by `Hook::code`).
            pub hook_events: [AtomicU64; Hook::ALL.len()],
            /// Gauge: MQTT clients currently connected.
            pub connections: AtomicI64,
            /// Gauge: bytes of spool segment files on disk.
            pub spool_bytes: AtomicI64,
            /// Gauge: bytes in the spool not yet delivered (the buffer depth).
            pub spool_backlog_bytes: AtomicI64,
            /// Gauge: sessions the cluster holds (all nodes), and how many are connected.
            pub cluster_sessions: AtomicI64,
            pub cluster_sessions_connected: AtomicI64,
            /// Gauge: mailbox messages waiting for their sessions (all nodes).
            pub cluster_mail_pending: AtomicI64,
            /// Records delivered and failed, by topic (Kafka topic, RabbitMQ exchange).
            pub records: RecordsByTopic,
            /// Time from each delivered record's hook event to the sink's confirmation.
            pub delivery_latency: LatencyHistogram,
        }

        impl Metrics {
            /// The plain counters: (name, help text, value).
            pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), concat!($($doc),+).trim_ascii(), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

impl Metrics {
    /// Every counter by name; hook events as `hook_events{<hook name>}`.
    pub fn snapshot(&self) -> BTreeMap<String, i64> {
        let mut map: BTreeMap<String, i64> = self.counters().into_iter().map(|(name, _, v)| (name.to_string(), v as i64)).collect();
        for hook in Hook::ALL {
            let count = self.hook_events[hook.code() as usize].load(Ordering::Relaxed);
            map.insert(format!("hook_events{{{}}}", hook.name()), count as i64);
        }
        for outcome in Outcome::ALL {
            map.insert(outcome.name().to_string(), self.records.total(outcome) as i64);
        }
        for (name, _, value) in self.gauges() {
            map.insert(name.to_string(), value);
        }
        map
    }

    /// The gauges: (name, help text, value).
    pub fn gauges(&self) -> [(&'static str, &'static str, i64); 6] {
        [
            ("connections", "MQTT clients connected now.", self.connections.load(Ordering::Relaxed)),
            ("spool_bytes", "Bytes of spool segment files on disk.", self.spool_bytes.load(Ordering::Relaxed)),
            ("spool_backlog_bytes", "Bytes in the spool not yet delivered.", self.spool_backlog_bytes.load(Ordering::Relaxed)),
            ("cluster_sessions", "MQTT sessions the cluster holds, on all nodes.", self.cluster_sessions.load(Ordering::Relaxed)),
            (
                "cluster_sessions_connected",
                "MQTT sessions of the cluster whose client is connected, on any node.",
                self.cluster_sessions_connected.load(Ordering::Relaxed),
            ),
            ("cluster_mail_pending", "Mailbox messages waiting for their sessions.", self.cluster_mail_pending.load(Ordering::Relaxed)),
        ]
    }
}

counters! {
    /// Connections closed for a malformed or oversized MQTT packet, or a topic name
    /// MQTT forbids in a publish (not UTF-8, wildcards).
    mqtt_protocol_errors,
    /// Of those, connections closed for a packet over `broker.max_packet_size`.
    mqtt_oversized_packets,
    /// Publishes, subscriptions and wills the ACL refused.
    access_denied,
    /// CONNECTs refused for a bad user name or password (CONNACK 0x04 / 0x86).
    mqtt_refused_bad_credentials,
    /// CONNECTs refused as not authorized: no login where one is needed, or a client id
    /// the user is not bound to (CONNACK 0x05 / 0x87).
    mqtt_refused_not_authorized,
    /// CONNECTs refused for their client id (CONNACK 0x02 / 0x85).
    mqtt_refused_client_id,
    /// CONNECTs refused at `broker.max_connections`, or at the open-file limit less
    /// `broker.reserved_files` (CONNACK 0x03 / 0x89).
    mqtt_refused_server_busy,
    /// CONNECTs refused because their login could not be checked in time: the login
    /// checks' queue (`auth.check_queue`) was full (CONNACK 0x03 / 0x89).
    mqtt_refused_login_busy,
    /// CONNECTs refused because the spool could not take their events (CONNACK 0x03 /
    /// 0x88).
    mqtt_refused_unavailable,
    /// CONNECTs refused for their protocol version (CONNACK 0x01 / 0x84).
    mqtt_refused_protocol_version,
    /// Logins checked on the login threads: a password against its hash, or a token's
    /// signature (those refused as busy included).
    logins_checked,
    /// Logins answered from the cache of logins verified lately (`auth.cache_ttl_s`).
    logins_cached,
    /// Connections that failed their TLS or WebSocket handshake.
    mqtt_handshake_failures,
    /// Publishes kept from the router because no subscription it serves on this node
    /// (wildcards, shared) matched.
    router_skipped,
    /// Messages not kept for a session because its inbox held
    /// `broker.max_queued_messages` already.
    mqtt_inbox_full,
    /// Deliveries dropped because the ACL does not let the subscriber read the topic.
    mqtt_deliveries_denied,
    /// Deliveries dropped for being over the client's Maximum Packet Size.
    mqtt_deliveries_too_large,
    /// Events dropped because the spool was full (`buffer.when_full = "drop"`).
    spool_dropped,
    /// Publishes refused because the spool was full (`buffer.when_full = "reject"`).
    spool_rejected,
    /// Times a connection waited for room in the full spool (`backpressure`).
    spool_full_waits,
    /// Writes to the spool that failed (disk full or failing); no publish among the
    /// events they held was acknowledged.
    spool_write_errors,
    /// Damaged spool records (bad checksum or torn by a crash) skipped when read.
    spool_damaged_records,
    /// Guest calls made (`hookline_on_event`).
    rule_calls,
    /// Routes and publishes emitted by rules and accepted.
    rule_routes,
    /// Events a rule rejected in band (non-zero return).
    rule_errors,
    /// Guest calls that trapped, including memory exhaustion and stack overflow.
    rule_traps,
    /// Guest calls stopped when they used up their instruction budget.
    rule_out_of_fuel,
    /// Decisions discarded for invalid output (bad topic, too many routes, ...).
    rule_invalid_output,
    /// Rule files that failed to load (the previous version, if any, kept running).
    rule_load_failures,
    /// Rule files loaded or reloaded successfully.
    rule_loads,
    /// Records handed to the sink.
    records_sent,
    /// Records not delivered for a reason that may clear (destination away, write
    /// failed, producer shut down): their events are sent again.
    records_resent,
    /// Records the downlink consumed from Kafka.
    downlink_records,
    /// MQTT messages the downlink published into the broker for consumed records.
    downlink_messages,
    /// Downlink messages no subscription on this node matched: not delivered, their
    /// records committed.
    downlink_undeliverable,
    /// Downlink messages over `broker.max_packet_size`: not published.
    downlink_too_large,
    /// Consumed records whose every message was delivered (or could not be), so their
    /// offsets may be committed.
    downlink_done,
    /// Errors of the downlink's Kafka consumer (it keeps retrying).
    downlink_errors,
    /// Batches of downlink records routed before this node had read the sessions topic
    /// up to its end (not within `cluster.claim_wait_ms`): routed by the sessions as far
    /// as read.
    downlink_sessions_behind,
    /// Downlink messages given up because the sessions that could receive them expired.
    downlink_expired,
    /// Persistent sessions ended by their Session Expiry Interval.
    sessions_expired,
    /// Messages this node put in the cluster's mailbox topic, for sessions to take on
    /// whichever node they are connected to.
    cluster_mail_posted,
    /// Mailbox messages this node delivered to its clients.
    cluster_mail_delivered,
    /// Messages routed to a client of this node and not acknowledged when its connection
    /// ended: put in its session's mailbox, to be sent again when it comes back.
    cluster_mail_reposted,
    /// Mailbox messages past their Message Expiry Interval when their client could take
    /// them: dropped.
    cluster_mail_expired,
    /// Connections of this node closed because a connection on another node took their
    /// session over.
    cluster_takeovers,
    /// Sessions this node adopted because their node was gone (died, stopped, or an
    /// earlier run of this node).
    cluster_adopted,
    /// Errors reading or writing the cluster's Kafka topics.
    cluster_errors,
    /// CONNECTs served before their claim on the client id was read back from Kafka:
    /// not within `cluster.claim_wait_ms`, or not waited for while Kafka was away. The
    /// claim takes effect when Kafka has it.
    cluster_claims_deferred,
    /// SUBACKs and UNSUBACKs sent before Kafka had the session's new subscriptions: not
    /// within `cluster.claim_wait_ms`, or not waited for while Kafka was away.
    cluster_subacks_unwritten,
    /// CONNECTs served by this node alone, without a claim in the cluster, because it had
    /// not caught up with the cluster's topics (just started, or Kafka away since).
    cluster_served_alone,
    /// Connections served alone that claimed their session once this node caught up with
    /// the cluster, going on in the cluster without a reconnect.
    cluster_alone_joined,
    /// Live-tail items a viewer missed because it read slower than records were routed.
    tail_dropped,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The sink confirmed a record of `series` made from the hook event raised at
    /// `event_ms` (unix ms).
    pub fn record_delivered(&self, series: TopicSeries, event_ms: u64) {
        self.records.add(series, Outcome::Delivered, 1);
        self.delivery_latency.observe_since(event_ms);
    }
}
