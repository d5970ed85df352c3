//! This node's membership in the cluster: joining (the producer, the reader of the
//! cluster's topics, the heartbeat), catching up, and leaving.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use tokio::sync::Notify;

use super::contact::Contact;
use super::error::ClusterError;
use super::handle::Cluster;
use super::heartbeat::start_heartbeat;
use super::mailbox::Mailboxes;
use super::reader;
use super::shared::Shared;
use super::topics::{topics, Topics};
use crate::config::{ClusterConfig, KafkaConfig};
use crate::hooks::now_ms;
use crate::kafka::KafkaContext;
use crate::metrics::Metrics;
use crate::retained::Retained;

impl Cluster {
    /// Joins the cluster: starts reading its topics (creating them if missing) and
    /// writing heartbeats, without waiting for Kafka. Until the reader catches up (see
    /// `is_ready`) a CONNECT waits up to `cluster.claim_wait_ms` for it, then the node
    /// serves that client alone.
    pub fn join(kafka: &KafkaConfig, config: &ClusterConfig, node: &str, metrics: Arc<Metrics>) -> Result<Arc<Cluster>, ClusterError> {
        let [(sessions, _), (mailbox, _), (nodes, _), (retained, _)] = topics(config);
        let topics = Topics {
            sessions,
            mailbox,
            nodes,
            retained,
            mailbox_partitions: config.mailbox_partitions,
            replication_factor: config.replication_factor,
        };
        let client = crate::kafka::client_config(kafka);
        // Not idempotent: an idempotent producer fails for good when Kafka forgets its
        // id (a broker replaced or restored), and the claims and session updates it held
        // would be lost. One request in flight keeps them in order through retries; no
        // timeout keeps them queued through an outage of any length; a record written
        // twice by a retry is harmless (a claim read twice is ignored, see
        // `session::Table::apply`).
        let producer: FutureProducer<KafkaContext> = client
            .clone()
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            // The default, named: a node reads each mailbox partition from the cursors of
            // the sessions it holds (`reader::mailbox_partition`).
            .set("partitioner", "consistent_random")
            // Claims and mailbox messages wait on it: batch for a millisecond, no more.
            .set("linger.ms", "1")
            .create_with_context(KafkaContext::new("cluster"))
            .map_err(ClusterError::Producer)?;
        let shared = Arc::new(Shared {
            table: Mutex::default(),
            mailboxes: Mailboxes::default(),
            waiters: Mutex::default(),
            superseded: OnceLock::new(),
            nodes: Mutex::default(),
            retained: Retained::default(),
            topics_found: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            sessions_read: AtomicI64::new(0),
            ready_notify: Notify::new(),
            contact: Contact::default(),
            metrics,
        });
        let (sessions_topic, mailbox_topic, nodes_topic, retained_topic) =
            (topics.sessions.clone(), topics.mailbox.clone(), topics.nodes.clone(), topics.retained.clone());
        let boot = now_ms();
        let reader = reader::ReaderThread::start(&client, node, boot, topics, shared.clone())?;
        let cluster = Arc::new(Cluster {
            name: config.name.clone(),
            node: node.into(),
            boot,
            sessions_topic,
            mailbox_topic,
            nodes_topic,
            retained_topic,
            producer,
            shared,
            reader: Mutex::new(Some(reader)),
            next_serial: AtomicU64::new(1),
            heartbeat: Mutex::new(None),
            beat_in_flight: Arc::default(),
            claim_wait: Duration::from_millis(config.claim_wait_ms),
            downlink_held: Mutex::default(),
            beat_now: Arc::new(Notify::new()),
        });
        start_heartbeat(&cluster);
        Ok(cluster)
    }

    /// Waits, at most `wait`, for this node to catch up with the cluster's topics (see
    /// `is_ready`); whether it has.
    pub async fn ready_within(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.caught_up()).await.is_ok()
    }

    /// Resolves once this node has caught up with the cluster's topics (see `is_ready`).
    pub async fn caught_up(&self) {
        loop {
            let notified = self.shared.ready_notify.notified();
            if self.is_ready() {
                return;
            }
            notified.await;
        }
    }

    /// Waits, blocking the thread, until this node has read the sessions topic up to
    /// offset `end`, at most `cluster.claim_wait_ms`: whether it has.
    pub fn read_sessions_to(&self, end: i64) -> bool {
        let until = Instant::now() + self.claim_wait;
        loop {
            if self.shared.sessions_read.load(Ordering::SeqCst) >= end {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Leaves the cluster: stops the heartbeats, writes the last one, waits at most
    /// `wait` for what is queued to reach Kafka, and stops reading the cluster's topics.
    pub fn leave(&self, wait: Duration) {
        use rdkafka::producer::Producer;
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(reader) = &reader {
            // It ends while the last records go out.
            reader.stop_soon();
        }
        if let Some(heartbeat) = self.heartbeat.lock().unwrap_or_else(|p| p.into_inner()).take() {
            heartbeat.abort();
            self.beat(true);
            if let Err(error) = self.producer.flush(Timeout::After(wait)) {
                tracing::warn!(%error, "session updates not all written to Kafka at shutdown; the cluster may see stale sessions of this node");
            }
        }
        if let Some(reader) = reader {
            reader.stop();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.leave(Duration::from_secs(1));
    }
}
