//! The cluster: every gateway node pointed at the same Kafka with the same
//! `cluster.name` is one broker, with Kafka the only thing the nodes share. There is no
//! node list and no other coordination: a node joins by reading the cluster's topics.
//!
//! Four topics carry it (`topics`), read by one thread per node (`reader`):
//! - `<name>.sessions`, compacted, keyed by client id: each MQTT session (owner node,
//!   subscriptions, expiry, mailbox cursor). Every node reads it from the start into the
//!   same table (`session::Table`); a connection's claim record decides who owns a
//!   client id, and the node it supersedes closes its connection (`superseded`).
//! - `<name>.mailbox`, keyed by client id: messages for a session that are not
//!   delivered by the local router: every downlink message, and MQTT publishes for
//!   sessions connected to another node or away. Every node reads it too, from the
//!   sessions' cursors (`mailbox::Mailboxes`), so whichever node a client lands on has
//!   its messages.
//! - `<name>.nodes`, compacted, keyed by node name: heartbeats, so nodes know who is gone.
//! - `<name>.retained`, compacted, keyed by MQTT topic: the retained messages.
//!
//! A downlink record is committed once its messages are in the mailbox topic (Kafka
//! acknowledged them: acks=all); from there they are delivered when the session's
//! client is connected, on any node, until the session expires.

mod contact;
mod mailbox;
mod reader;
mod session;
mod topics;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};

use self::contact::Contact;
use self::mailbox::Mailboxes;
use self::session::Table;
pub use self::session::{SessionRecord, StoredSubscription, StoredWill};
pub use self::topics::topics;
use self::topics::Topics;
use crate::config::{ClusterConfig, KafkaConfig};
use crate::hooks::now_ms;
use crate::kafka::KafkaContext;
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::retained::Retained;

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard of for this long, on this node's clock of heartbeats (`contact`),
/// is gone: a live node adopts its sessions (their wills fire, they expire in time).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

static CLAIM_LOG: LogLimit = LogLimit::new();

static UPDATE_LOG: LogLimit = LogLimit::new();

/// Called when a claim supersedes another: (client id, the superseded generation).
type Superseded = Box<dyn Fn(&str, &str) + Send + Sync>;

/// What the node's reader thread and its connections share.
struct Shared {
    table: Mutex<Table>,
    mailboxes: Mailboxes,
    /// Claims of this node waiting to be read back, by generation.
    waiters: Mutex<HashMap<String, oneshot::Sender<Option<SessionRecord>>>>,
    superseded: OnceLock<Superseded>,
    /// The last heartbeat of each node, as read.
    nodes: Mutex<HashMap<String, Beat>>,
    /// The cluster's retained messages.
    retained: Retained,
    /// The reader found (or made) the cluster's topics: writing to them cannot make Kafka
    /// create one with its default partitions.
    topics_found: AtomicBool,
    /// The reader has caught up with the topics.
    ready: AtomicBool,
    /// The offset after the last sessions record read.
    sessions_read: AtomicI64,
    ready_notify: Notify,
    contact: Contact,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// This node's membership in the cluster.
pub struct Cluster {
    name: String,
    node: Arc<str>,
    /// When this process started (Unix ms): tells this run's claims from an earlier run's.
    boot: u64,
    sessions_topic: String,
    mailbox_topic: String,
    nodes_topic: String,
    retained_topic: String,
    producer: FutureProducer<KafkaContext>,
    shared: Arc<Shared>,
    reader: Mutex<Option<reader::ReaderThread>>,
    next_serial: AtomicU64,
    heartbeat: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// A heartbeat is on its way to Kafka: the next waits (see `beat`).
    beat_in_flight: Arc<AtomicBool>,
    /// `cluster.claim_wait_ms`.
    claim_wait: Duration,
    /// The downlink partitions this node consumes, told in its heartbeats.
    downlink_held: Mutex<Vec<(String, i32)>>,
    /// Has the next heartbeat written now rather than at its time.
    beat_now: Arc<Notify>,
}

/// A node's heartbeat, as written to the nodes topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub boot: u64,
    pub at_ms: u64,
    /// MQTT clients connected to it.
    pub connections: i64,
    /// It stopped (its last heartbeat).
    #[serde(default)]
    pub left: bool,
    /// The downlink partitions it consumes: another node takes one only once no live
    /// node says it holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downlink: Vec<(String, i32)>,
    /// It has not caught up with the cluster's topics since it started: it takes no
    /// share of the downlink yet, so the others keep consuming its partitions meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catching_up: bool,
}

/// A heartbeat as this node read it, and when: on the wall clock, and on this node's
/// clock of heartbeats (`contact`).
struct Beat {
    heartbeat: Heartbeat,
    read_at: Instant,
    read_at_clock: u64,
}

impl Beat {
    /// Whether its node is alive as far as this node can tell (`clock_ms`: now, on its
    /// clock of heartbeats).
    fn alive(&self, clock_ms: u64) -> bool {
        !self.heartbeat.left && !gone_by(self.read_at_clock, clock_ms)
    }
}

/// Whether something last heard of at `heard_ms` is gone at `clock_ms` (both on a
/// node's clock of heartbeats).
fn gone_by(heard_ms: u64, clock_ms: u64) -> bool {
    clock_ms.saturating_sub(heard_ms) >= NODE_TIMEOUT.as_millis() as u64
}

/// What became of a claim (see `Cluster::claim`).
#[derive(Debug)]
pub enum Claimed {
    /// Read back within `cluster.claim_wait_ms`: the session as it was before the claim.
    ReadBack(Option<SessionRecord>),
    /// Not read back in time, or not waited for while Kafka is away: the claim stays
    /// queued and takes effect when Kafka has it. `prior` is the session as this node
    /// knew it when it claimed.
    Deferred { prior: Option<SessionRecord> },
}

/// A node of the cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    pub alive: bool,
    pub connections: i64,
    /// Sessions it holds, and how many of them are connected.
    pub sessions: usize,
    pub connected: usize,
    /// Milliseconds since its last heartbeat was read.
    pub last_heard_ms: u64,
}

/// What the downlink needs to know to share its partitions (see `downlink::share`).
pub struct DownlinkView {
    /// The nodes alive and caught up with the cluster, this one among them.
    pub members: BTreeSet<String>,
    /// The downlink partitions the other live nodes said, in their last heartbeats, they
    /// consume.
    pub held_elsewhere: HashSet<(String, i32)>,
}

/// Why a connection could not claim its session.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the cluster's Kafka producer did not take the claim: {0}")]
    Produce(String),
}

impl Cluster {
    /// Joins the cluster: starts reading its topics (creating them if missing) and
    /// writing heartbeats, without waiting for Kafka. Until the reader catches up (see
    /// `is_ready`) a CONNECT waits up to `cluster.claim_wait_ms` for it, then the node
    /// serves that client alone.
    pub fn join(kafka: &KafkaConfig, config: &ClusterConfig, node: &str, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Cluster>> {
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
            .context("cannot create the cluster's Kafka producer (check [kafka])")?;
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
        // Weak: the heartbeat must not keep the cluster (and its reader thread) alive.
        let beating = Arc::downgrade(&cluster);
        let (beat_now, in_flight) = (cluster.beat_now.clone(), cluster.beat_in_flight.clone());
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = beat_now.notified() => {
                        // Not dropped behind the heartbeat on its way: it says what changed.
                        let until = Instant::now() + HEARTBEAT;
                        while in_flight.load(Ordering::SeqCst) && Instant::now() < until {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
                match beating.upgrade() {
                    Some(cluster) => cluster.beat(false),
                    None => return,
                }
            }
        });
        *cluster.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(heartbeat);
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

    /// Claims a client id for a connection of this node: queues the claim and waits
    /// until it is read back, so everything written before it about this client is
    /// known, at most `cluster.claim_wait_ms`, and not at all while Kafka is away (see
    /// `Claimed`).
    pub async fn claim(&self, client: &str, record: &SessionRecord) -> Result<Claimed, ClaimError> {
        let prior = self.session(client);
        if self.kafka_away() {
            self.write_claim(client, record, prior.as_ref())?;
            self.deferred(client, "Kafka is away");
            return Ok(Claimed::Deferred { prior });
        }
        let (tx, rx) = oneshot::channel();
        self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).insert(record.generation.clone(), tx);
        let forget = || self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&record.generation);
        if let Err(error) = self.write_claim(client, record, prior.as_ref()) {
            forget();
            return Err(error);
        }
        match tokio::time::timeout(self.claim_wait, rx).await {
            Ok(Ok(read_back)) => Ok(Claimed::ReadBack(read_back)),
            _ => {
                forget();
                self.shared.contact.claim_timed_out();
                self.deferred(client, "the claim was not read back in time (cluster.claim_wait_ms)");
                Ok(Claimed::Deferred { prior })
            }
        }
    }

    /// Queues a claim; this node takes the session to be what it makes of `prior` until
    /// the claim is read back.
    fn write_claim(&self, client: &str, record: &SessionRecord, prior: Option<&SessionRecord>) -> Result<(), ClaimError> {
        let value = serde_json::to_vec(record).expect("a session record serialises");
        let sent = self.producer.send_result(FutureRecord::to(&self.sessions_topic).key(client).payload(&value));
        if let Err((error, _)) = sent {
            Metrics::add(&self.shared.metrics.cluster_errors, 1);
            return Err(ClaimError::Produce(error.to_string()));
        }
        let view = record.clone().claimed_over(prior, now_ms());
        self.shared.contact.wrote(client, value, Some(view));
        Ok(())
    }

    fn deferred(&self, client: &str, why: &str) {
        Metrics::add(&self.shared.metrics.cluster_claims_deferred, 1);
        if let Some(skipped) = CLAIM_LOG.allow() {
            tracing::warn!(
                client,
                skipped,
                "{why}: serving the client from what this node knows of its session; the claim takes effect when Kafka has it"
            );
        }
    }

    /// Writes a session's new state; it goes out in order behind the client's earlier
    /// records, without waiting. What it returns says when Kafka has it (see `written`).
    pub fn update(&self, client: &str, record: &SessionRecord) -> Option<DeliveryFuture> {
        let value = serde_json::to_vec(record).expect("a session record serialises");
        let sent = FutureRecord::to(&self.sessions_topic).key(client).payload(&value[..]);
        let delivery = self.queue(sent, "cannot queue a session update for Kafka; the cluster keeps the session's previous state")?;
        self.shared.contact.wrote(client, value, (!record.ended).then(|| record.clone()));
        Some(delivery)
    }

    /// Waits until Kafka has a record queued by `update` (acks=all), at most
    /// `cluster.claim_wait_ms` and not at all while Kafka is away: whether it has.
    pub async fn written(&self, delivery: DeliveryFuture) -> bool {
        if self.kafka_away() {
            return false;
        }
        matches!(tokio::time::timeout(self.claim_wait, delivery).await, Ok(Ok(Ok(_))))
    }

    /// Puts a message in `client`'s mailbox without waiting for Kafka.
    pub fn post(&self, client: &str, message: &[u8]) {
        let record = FutureRecord::to(&self.mailbox_topic).key(client).payload(message);
        if self.queue(record, "cannot queue a message for another node's session; it is lost for that session").is_some() {
            Metrics::add(&self.shared.metrics.cluster_mail_posted, 1);
        }
    }

    /// Queues a record for Kafka without waiting for it; a record the producer will not
    /// take is counted in `cluster_errors` and logged with `lost`, which says what that
    /// costs. `None` then.
    fn queue(&self, record: FutureRecord<'_, str, [u8]>, lost: &str) -> Option<DeliveryFuture> {
        let (topic, key) = (record.topic, record.key.unwrap_or_default());
        let error = match self.producer.send_result(record) {
            Ok(delivery) => return Some(delivery),
            Err((error, _)) => error,
        };
        Metrics::add(&self.shared.metrics.cluster_errors, 1);
        if let Some(skipped) = UPDATE_LOG.allow() {
            tracing::error!(topic, key, %error, skipped, "{lost}");
        }
        None
    }

    /// Puts a message in `client`'s mailbox; resolves once Kafka has it (acks=all), or
    /// with Kafka's error.
    pub fn post_durably(&self, client: &str, message: &[u8]) -> impl std::future::Future<Output = Result<(), String>> + use<> {
        let queued = self.producer.send_result(FutureRecord::to(&self.mailbox_topic).key(client).payload(message));
        let queued = queued.map_err(|(error, _)| error.to_string());
        let metrics = self.shared.metrics.clone();
        async move {
            let delivery = queued?;
            match delivery.await {
                Ok(Ok(_)) => {
                    Metrics::add(&metrics.cluster_mail_posted, 1);
                    Ok(())
                }
                Ok(Err((error, _))) => Err(error.to_string()),
                Err(_) => Err("the producer was dropped".to_string()),
            }
        }
    }

    /// Keeps `message` (encoded as for a mailbox) as the cluster's retained message of
    /// `topic`; `None` removes it (MQTT: a retained publish with an empty payload).
    pub fn retain(&self, topic: &str, message: Option<Bytes>) {
        let mut record = FutureRecord::<str, [u8]>::to(&self.retained_topic).key(topic);
        if let Some(message) = &message {
            record = record.payload(message);
        }
        self.queue(record, "cannot queue a retained message for the cluster; other nodes keep the previous one");
        // This node's subscribers see it at once; the topic's order settles the rest.
        self.shared.retained.set(topic, message);
    }

    /// The cluster's retained messages whose topic `matches` (encoded as for a mailbox).
    pub fn retained(&self, matches: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        self.shared.retained.matching(matches)
    }

    /// The session of `client` as this node knows it: what it wrote last and has not
    /// read back yet, or else what it read.
    pub fn session(&self, client: &str) -> Option<SessionRecord> {
        match self.shared.contact.unread_view(client) {
            Some(view) => view,
            None => self.shared.table().get(client).cloned(),
        }
    }

    /// Clients whose sessions have a subscription matching `topic` and can take a
    /// message now, and whether each is connected (to any node).
    pub fn subscribers(&self, topic: &[u8]) -> Vec<(Arc<str>, bool)> {
        self.shared.table().subscribers(topic, now_ms())
    }

    /// Sessions the cluster holds, and how many of them are connected.
    pub fn session_counts(&self) -> (usize, usize) {
        let table = self.shared.table();
        (table.count(), table.iter().filter(|(_, s)| s.connected).count())
    }

    pub fn mailboxes(&self) -> &Mailboxes {
        &self.shared.mailboxes
    }

    /// Writes this node's heartbeat; `left`: its last one, as it stops. While one is on
    /// its way no other is queued: after an outage the nodes topic holds one stale
    /// heartbeat per node, not a backlog that would move this node's clock past the
    /// others' (`contact`) before their own heartbeats are read. None before the reader
    /// found the topics: a write to a missing topic has Kafka create it with its default
    /// partitions.
    fn beat(&self, left: bool) {
        if !self.shared.topics_found.load(Ordering::SeqCst) || (!left && self.beat_in_flight.swap(true, Ordering::SeqCst)) {
            return;
        }
        let heartbeat = Heartbeat {
            node: self.node.to_string(),
            boot: self.boot,
            at_ms: now_ms(),
            connections: self.shared.metrics.connections.load(Ordering::Relaxed),
            left,
            downlink: self.downlink_held.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            catching_up: !self.is_ready(),
        };
        let value = serde_json::to_vec(&heartbeat).expect("a heartbeat serialises");
        match self.producer.send_result(FutureRecord::to(&self.nodes_topic).key(&*self.node).payload(&value)) {
            Ok(delivery) => {
                let in_flight = self.beat_in_flight.clone();
                tokio::spawn(async move {
                    let _ = delivery.await;
                    in_flight.store(false, Ordering::SeqCst);
                });
            }
            Err((error, _)) => {
                self.beat_in_flight.store(false, Ordering::SeqCst);
                if let Some(skipped) = UPDATE_LOG.allow() {
                    tracing::warn!(%error, skipped, "cannot queue this node's heartbeat");
                }
            }
        }
    }

    /// Whether the node of claim `generation` (read at `claim_read`, on this node's
    /// clock of heartbeats) may still be alive: this run of this node; a node whose
    /// heartbeat of that run this node read within `NODE_TIMEOUT`; or one whose
    /// heartbeats of that run this node has not read, until the claim has been known for
    /// `NODE_TIMEOUT` (the claim and the heartbeats travel in different topics, read in
    /// no particular order).
    fn is_alive(&self, generation: &str, claim_read: Option<u64>, clock_ms: u64) -> bool {
        if self.is_own(generation) {
            return true;
        }
        let mut parts = generation.rsplitn(3, '/');
        let (_, boot, node) = (parts.next(), parts.next(), parts.next());
        let (Some(node), Some(boot)) = (node, boot.and_then(|b| b.parse::<u64>().ok())) else { return false };
        if node == &*self.node {
            // An earlier run of this node.
            return false;
        }
        let nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
        match nodes.get(node) {
            Some(b) if b.heartbeat.boot == boot => b.alive(clock_ms),
            // A later run of that node beats: this claim is of an earlier run.
            Some(b) if b.heartbeat.boot > boot => false,
            _ => !gone_by(claim_read.unwrap_or(clock_ms), clock_ms),
        }
    }

    /// Sessions whose claim's node is gone (died, stopped, or an earlier run of this
    /// node), for a live node to adopt: those of this node's earlier runs are this
    /// node's; the others are the live node with the first name's. None while Kafka is
    /// away: what this node has read then says nothing of the others.
    pub fn orphans(&self) -> Vec<(Arc<str>, SessionRecord)> {
        if self.kafka_away() {
            return Vec::new();
        }
        let clock_ms = self.shared.contact.clock_ms();
        let first_alive = {
            let nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
            let alive = nodes.values().filter(|b| b.alive(clock_ms)).map(|b| b.heartbeat.node.clone());
            alive.chain([self.node.to_string()]).min()
        };
        let adopts_others = first_alive.as_deref() == Some(&*self.node);
        let candidates: Vec<_> = {
            let table = self.shared.table();
            table
                .iter()
                .filter(|(_, s)| adopts_others || s.node == *self.node)
                .map(|(c, s)| (c.clone(), s.clone(), table.claim_read_at(c)))
                .collect()
        };
        candidates.into_iter().filter(|(_, s, read)| !self.is_alive(&s.generation, *read, clock_ms)).map(|(c, s, _)| (c, s)).collect()
    }

    /// Who consumes the downlink, as this node sees it; `None` until it has caught up
    /// with the cluster.
    pub fn downlink_view(&self) -> Option<DownlinkView> {
        if !self.is_ready() {
            return None;
        }
        let clock_ms = self.shared.contact.clock_ms();
        let nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
        // This node's own heartbeats, of this run or an earlier one, speak for this node.
        let others = nodes.values().filter(|b| b.heartbeat.node != *self.node && b.alive(clock_ms));
        let mut view = DownlinkView { members: BTreeSet::from([self.node.to_string()]), held_elsewhere: HashSet::new() };
        for beat in others {
            if !beat.heartbeat.catching_up {
                view.members.insert(beat.heartbeat.node.clone());
            }
            view.held_elsewhere.extend(beat.heartbeat.downlink.iter().cloned());
        }
        Some(view)
    }

    /// The downlink partitions this node consumes now; the other nodes hear of them in
    /// its next heartbeat, written at once.
    pub fn hold_downlink(&self, held: Vec<(String, i32)>) {
        *self.downlink_held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        self.beat_now.notify_one();
    }

    /// The sessions topic, whose end the downlink reads before it routes a record that
    /// finds no subscriber.
    pub fn sessions_topic(&self) -> &str {
        &self.sessions_topic
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

    /// The nodes this node has heard of, with their sessions.
    pub fn nodes(&self) -> Vec<NodeView> {
        let clock_ms = self.shared.contact.clock_ms();
        let mut views: std::collections::BTreeMap<String, NodeView> = std::collections::BTreeMap::new();
        for beat in self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner()).values() {
            views.insert(
                beat.heartbeat.node.clone(),
                NodeView {
                    node: beat.heartbeat.node.clone(),
                    alive: beat.alive(clock_ms),
                    connections: beat.heartbeat.connections,
                    sessions: 0,
                    connected: 0,
                    last_heard_ms: beat.read_at.elapsed().as_millis() as u64,
                },
            );
        }
        for (_, session) in self.shared.table().iter() {
            if let Some(view) = views.get_mut(&session.node) {
                view.sessions += 1;
                view.connected += session.connected as usize;
            }
        }
        views.into_values().collect()
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
