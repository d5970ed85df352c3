//! The node's handle on the cluster (`Cluster`): its topics, its producer, its reader
//! thread and what that shares (`shared`); and what anyone may ask of it without waiting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::Notify;

use super::reader;
use super::shared::Shared;
use crate::kafka::KafkaContext;

/// This node's membership in the cluster.
pub struct Cluster {
    pub(super) name: String,
    pub(super) node: Arc<str>,
    /// When this process started (Unix ms): tells this run's claims from an earlier run's.
    pub(super) boot: u64,
    pub(super) sessions_topic: String,
    pub(super) mailbox_topic: String,
    pub(super) nodes_topic: String,
    pub(super) retained_topic: String,
    pub(super) producer: FutureProducer<KafkaContext>,
    pub(super) shared: Arc<Shared>,
    pub(super) reader: Mutex<Option<reader::ReaderThread>>,
    pub(super) next_serial: AtomicU64,
    pub(super) heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// A heartbeat is on its way to Kafka: the next waits (see `beat`).
    pub(super) beat_in_flight: Arc<AtomicBool>,
    /// `cluster.claim_wait_ms`.
    pub(super) claim_wait: Duration,
    /// The downlink partitions this node consumes, told in its heartbeats.
    pub(super) downlink_held: Mutex<Vec<(String, i32)>>,
    /// Has the next heartbeat written now rather than at its time.
    pub(super) beat_now: Arc<Notify>,
}

impl Cluster {
    /// Whether this node takes Kafka to be away now (see `contact`): a CONNECT does not
    /// wait for its claim meanwhile.
    pub fn kafka_away(&self) -> bool {
        self.shared.contact.kafka_away()
    }

    /// `cluster.claim_wait_ms`: how long a CONNECT waits for its claim, or for this node
    /// to catch up with the cluster.
    pub fn claim_wait(&self) -> Duration {
        self.claim_wait
    }

    /// Whether this node has read the cluster's topics up to where they ended when it
    /// began: only then may it claim sessions.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The cluster's name (`cluster.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets what happens when another connection's claim supersedes one of this node's.
    pub fn on_superseded(&self, superseded: impl Fn(&str, &str) + Send + Sync + 'static) {
        let _ = self.shared.superseded.set(Box::new(superseded));
    }

    /// A new generation name for a claim of this node.
    pub fn generation(&self) -> String {
        format!("{}/{}/{}", self.node, self.boot, self.next_serial.fetch_add(1, Ordering::Relaxed))
    }

    /// Whether `generation` is a claim of this run of this node.
    pub fn is_own(&self, generation: &str) -> bool {
        generation
            .strip_prefix(&*self.node)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| rest.split_once('/').is_some_and(|(boot, _)| boot.parse() == Ok(self.boot)))
    }

    /// The sessions topic, whose end the downlink reads before it routes a record that
    /// finds no subscriber.
    pub fn sessions_topic(&self) -> &str {
        &self.sessions_topic
    }
}
