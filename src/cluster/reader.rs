//! The node's reader of the cluster's topics: one thread, reading the sessions, nodes
//! and retained topics from the start, and the mailbox topic from the sessions'
//! cursors, applying each record as it comes (the session table, claims waiting to be
//! read back, takeovers, heartbeats, retained messages, mailboxes).
//!
//! The mailbox is read from where the sessions need it, not from its start: its
//! retention holds days of messages every session has acknowledged, and a node reading
//! them all at start would serve its clients alone for as long. So the reader first
//! notes where each mailbox partition ends, then reads the sessions topic to its end,
//! then reads each mailbox partition from the lowest cursor of the sessions it holds
//! (or its noted end). A message below that is for no session: each session's claim is
//! in the sessions topic before any message for it is posted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::beat::{Beat, Heartbeat};
use super::error::ClusterError;
use super::session::{Applied, SessionRecord};
use super::shared::Shared;
use super::topics::{create_topic, Topics};
use crate::hooks::now_ms;
use crate::internal_events::{InternalEvent, UnreadableClusterRecord};
use crate::kafka::KafkaContext;
use crate::metrics::Metrics;
use crate::util::thread::StoppableThread;

const POLL: Duration = Duration::from_millis(100);
/// How long one request to Kafka may take while the reader begins; it is tried again
/// until it succeeds, and a stop waits for it.
const KAFKA_WAIT: Duration = Duration::from_secs(1);
/// How soon the reader tries again to begin while Kafka is away.
const RETRY: Duration = Duration::from_secs(2);

/// The reader's thread; dropping it stops and joins it.
pub struct ReaderThread(StoppableThread);

struct Reader {
    consumer: BaseConsumer<KafkaContext>,
    sessions_topic: String,
    mailbox_topic: String,
    /// Each mailbox partition's end, noted before the sessions topic's: read from the
    /// sessions' cursors once the other topics are read (see the module doc).
    mailbox_ends: Option<Vec<i64>>,
    nodes_topic: String,
    retained_topic: String,
    /// This node and its run, to know its own heartbeats.
    node: String,
    boot: u64,
    shared: Arc<Shared>,
    /// Each partition's end when reading began, until the reader gets there.
    catching_up: HashMap<(String, i32), i64>,
    /// When reading began, and the records read until caught up: the log says what
    /// catching up cost.
    begun: Instant,
    records: u64,
}

impl ReaderThread {
    /// Starts reading, in a thread that first creates the topics if missing and finds
    /// their partitions, retrying while Kafka is away. `shared.ready` is set once both
    /// topics are read up to where they ended when reading began.
    pub fn start(client: &ClientConfig, node: &str, boot: u64, topics: Topics, shared: Arc<Shared>) -> Result<ReaderThread, ClusterError> {
        let consumer: BaseConsumer<KafkaContext> = client
            .clone()
            // Partitions are assigned, never balanced: the group only names the reader.
            .set("group.id", format!("{}.reader.{node}", topics.sessions))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            .create_with_context(KafkaContext::new("cluster reader"))
            .map_err(ClusterError::Reader)?;
        let admin: AdminClient<KafkaContext> =
            client.create_with_context(KafkaContext::new("cluster admin")).map_err(ClusterError::AdminClient)?;
        let mut reader = Reader {
            consumer,
            sessions_topic: topics.sessions.clone(),
            mailbox_topic: topics.mailbox.clone(),
            mailbox_ends: None,
            nodes_topic: topics.nodes.clone(),
            retained_topic: topics.retained.clone(),
            node: node.to_string(),
            boot,
            shared,
            catching_up: HashMap::new(),
            begun: Instant::now(),
            records: 0,
        };
        let runtime = tokio::runtime::Handle::current();
        let thread = StoppableThread::spawn("hookline-cluster", move |stop| {
            let begun = reader.begin(&admin, &topics, &runtime, stop);
            // Only needed to create the topics: its librdkafka threads go now.
            drop(admin);
            if begun {
                reader.run(stop);
            }
        })
        .map_err(ClusterError::ReaderThread)?;
        Ok(ReaderThread(thread))
    }

    pub fn stop_soon(&self) {
        self.0.stop_soon();
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

/// The mailbox partition of `client`'s messages, of `partitions`: what librdkafka's
/// default partitioner (`consistent_random`) picks for a key, CRC-32 modulo the count.
pub fn mailbox_partition(client: &str, partitions: usize) -> usize {
    crc32fast::hash(client.as_bytes()) as usize % partitions
}

/// How many partitions `topic` has (0: none, or not there).
fn partitions_of(consumer: &BaseConsumer<KafkaContext>, topic: &str) -> KafkaResult<i32> {
    let metadata = consumer.fetch_metadata(Some(topic), KAFKA_WAIT)?;
    Ok(metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len() as i32))
}

impl Reader {
    /// Creates the topics if missing and assigns every partition from the start,
    /// retrying while Kafka is away; false when stopped first.
    fn begin(&mut self, admin: &AdminClient<KafkaContext>, topics: &Topics, runtime: &Handle, stop: &AtomicBool) -> bool {
        let mut waiting_logged = false;
        while !stop.load(Ordering::Relaxed) {
            match self.assign(admin, topics, runtime) {
                Ok(()) => {
                    self.begun = Instant::now();
                    self.shared.topics_found.store(true, Ordering::SeqCst);
                    return true;
                }
                Err(error) => {
                    Metrics::add(&self.shared.metrics.cluster_errors, 1);
                    if !waiting_logged {
                        tracing::warn!(%error, "cannot read the cluster's topics yet; this node serves its clients alone until it can");
                        waiting_logged = true;
                    }
                    let again = Instant::now() + RETRY;
                    while Instant::now() < again && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(POLL);
                    }
                }
            }
        }
        false
    }

    fn assign(&mut self, admin: &AdminClient<KafkaContext>, topics: &Topics, runtime: &Handle) -> Result<(), ClusterError> {
        let mut assignment = TopicPartitionList::new();
        self.catching_up.clear();
        // The mailbox first: its ends are noted before the sessions topic's.
        let all = [
            (&topics.mailbox, topics.mailbox_partitions, false),
            (&topics.sessions, 1, true),
            (&topics.nodes, 1, true),
            (&topics.retained, 1, true),
        ];
        let mut mailbox_ends = Vec::new();
        for (topic, partitions, compact) in all {
            let mut count =
                partitions_of(&self.consumer, topic).map_err(|source| ClusterError::Metadata { topic: topic.clone(), source })?;
            if count == 0 {
                runtime.block_on(create_topic(admin, topic, partitions, topics.replication_factor, compact));
                count = partitions_of(&self.consumer, topic)?;
            }
            if count == 0 {
                return Err(ClusterError::TopicMissing { topic: topic.clone() });
            }
            for partition in 0..count {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(topic, partition, KAFKA_WAIT)
                    .map_err(|source| ClusterError::Watermarks { topic: topic.clone(), source })?;
                if *topic == topics.mailbox {
                    mailbox_ends.push(high);
                    continue;
                }
                assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
                if high > 0 {
                    self.catching_up.insert((topic.to_string(), partition), high);
                }
            }
        }
        self.consumer.assign(&assignment).map_err(ClusterError::Assign)?;
        self.mailbox_ends = Some(mailbox_ends);
        Ok(())
    }

    /// Once the other topics are read to their ends: reads each mailbox partition from
    /// the lowest cursor of the sessions whose messages it holds, or from its end noted
    /// at the start when none needs more. Messages are keyed by client id and the
    /// cluster's producer partitions keys as librdkafka's default partitioner does
    /// (CRC-32 of the key), so the session table tells each partition's cursors.
    fn assign_mailbox(&mut self) -> Result<(), ClusterError> {
        let Some(ends) = self.mailbox_ends.take() else { return Ok(()) };
        let mut starts = ends.clone();
        for (client, session) in self.shared.table().iter() {
            let start = &mut starts[mailbox_partition(client, ends.len())];
            *start = (*start).min(session.cursor.unwrap_or(0));
        }
        let mut assignment = TopicPartitionList::new();
        for (partition, (start, end)) in starts.iter().zip(&ends).enumerate() {
            let partition = partition as i32;
            assignment.add_partition_offset(&self.mailbox_topic, partition, Offset::Offset(*start))?;
            if start < end {
                self.catching_up.insert((self.mailbox_topic.clone(), partition), *end);
            }
        }
        self.consumer.incremental_assign(&assignment).map_err(ClusterError::AssignMailbox)?;
        Ok(())
    }

    fn run(&mut self, stop: &AtomicBool) {
        self.check_caught_up();
        while !stop.load(Ordering::Relaxed) {
            match self.consumer.poll(POLL) {
                Some(Ok(message)) => {
                    self.records += 1;
                    self.read(&message);
                }
                Some(Err(error)) => {
                    Metrics::add(&self.shared.metrics.cluster_errors, 1);
                    crate::kafka::warn_error("cluster reader", &error, "cannot read the cluster's topics (retrying)");
                }
                None => {}
            }
            if !self.shared.ready.load(Ordering::Relaxed) {
                self.check_caught_up();
            }
        }
    }

    fn read(&self, message: &BorrowedMessage<'_>) {
        self.apply(message);
        if message.topic() == self.sessions_topic {
            self.shared.sessions_read.store(message.offset() + 1, Ordering::SeqCst);
        }
    }

    fn apply(&self, message: &BorrowedMessage<'_>) {
        let Some(client) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else { return };
        if message.topic() == self.sessions_topic {
            self.session(client, message.payload());
        } else if message.topic() == self.retained_topic {
            let message = message.payload().filter(|p| !p.is_empty()).map(Bytes::copy_from_slice);
            self.shared.retained.set(client, message);
        } else if message.topic() == self.nodes_topic {
            if let Some(heartbeat) = message.payload().and_then(|p| serde_json::from_slice::<Heartbeat>(p).ok()) {
                let contact = &self.shared.contact;
                if heartbeat.node == self.node && heartbeat.boot == self.boot {
                    contact.own_heartbeat_read(heartbeat.at_ms);
                }
                let beat = Beat { heartbeat, read_at: Instant::now(), read_at_clock: contact.clock_ms() };
                self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner()).insert(client.to_string(), beat);
            }
        } else {
            let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
            self.shared.mailboxes.add(client, message.offset(), payload);
        }
    }

    fn session(&self, client: &str, payload: Option<&[u8]>) {
        let record = match payload.map(serde_json::from_slice::<SessionRecord>) {
            None => None,
            Some(Ok(record)) => Some(record),
            Some(Err(error)) => {
                UnreadableClusterRecord { client, error: &error }.emit();
                return;
            }
        };
        let client: Arc<str> = client.into();
        let generation = record.as_ref().map(|r| r.generation.clone());
        let mut table = self.shared.table();
        let applied = table.apply(&client, record, now_ms(), self.shared.contact.clock_ms());
        let cursor = table.get(&client).and_then(|s| s.cursor);
        if tracing::enabled!(tracing::Level::DEBUG) {
            // The table's history, for when a node's view of a session is in question.
            let now = table.get(&client).map(|s| (s.generation.clone(), s.connected, s.subscriptions.as_ref().map_or(0, Vec::len)));
            tracing::debug!(client = %client, ?applied, ?generation, ?now, "session record read");
        }
        drop(table);
        // After the table has it: a session of this node is then what the table says.
        if let Some(payload) = payload {
            self.shared.contact.read(&client, payload);
        }
        match applied {
            Applied::Claimed { prior } => {
                if let Some(cursor) = cursor {
                    self.shared.mailboxes.acknowledged(&client, cursor);
                }
                let superseded = prior.as_ref().map(|p| p.generation.clone());
                let waiter = generation.and_then(|g| self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&g));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(prior);
                }
                if let (Some(superseded), Some(callback)) = (superseded, self.shared.superseded.get()) {
                    callback(&client, &superseded);
                }
            }
            Applied::Updated => {
                if let Some(cursor) = cursor {
                    self.shared.mailboxes.acknowledged(&client, cursor);
                }
            }
            Applied::Ended => {
                self.shared.mailboxes.close(&client);
            }
            Applied::Stale => {}
        }
    }

    /// Once every partition is read up to where it ended at the start, the node knows
    /// the cluster: mailboxes of sessions that no longer exist are dropped.
    fn check_caught_up(&mut self) {
        if let Ok(position) = self.consumer.position() {
            for element in position.elements() {
                if let Offset::Offset(next) = element.offset() {
                    let key = (element.topic().to_string(), element.partition());
                    if self.catching_up.get(&key).is_some_and(|end| next >= *end) {
                        self.catching_up.remove(&key);
                    }
                }
            }
        }
        if self.mailbox_ends.is_some() && self.catching_up.is_empty() {
            if let Err(error) = self.assign_mailbox() {
                // Kafka refused an assignment of partitions it just named: nothing to wait for.
                Metrics::add(&self.shared.metrics.cluster_errors, 1);
                tracing::error!(error = format!("{error:#}"), "cannot read the cluster's mailbox; sessions get no mail on this node");
            }
        }
        if !self.catching_up.is_empty() {
            return;
        }
        let table = self.shared.table();
        self.shared.mailboxes.retain(|client| table.get(client).is_some());
        let sessions = table.count();
        drop(table);
        self.shared.ready.store(true, Ordering::SeqCst);
        self.shared.ready_notify.notify_waiters();
        let (records, took_ms) = (self.records, self.begun.elapsed().as_millis() as u64);
        tracing::info!(sessions, mailbox = self.shared.mailboxes.pending(), records, took_ms, "caught up with the cluster");
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::util::Timeout;

    use super::*;

    #[tokio::test]
    async fn the_mailbox_partition_of_a_client_is_the_one_librdkafka_writes_its_messages_to() {
        let kafka = MockCluster::new(1).expect("a mock cluster");
        let partitions = 7;
        kafka.create_topic("mailbox", partitions, 1).expect("a topic");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers())
            .set("partitioner", "consistent_random")
            .create()
            .expect("a producer");
        for client in (0..100).map(|i| format!("lock-{i}")).chain(["ü-ñ", "a/b c"].map(String::from)) {
            let record = FutureRecord::to("mailbox").key(&client).payload("m");
            let delivery = producer.send(record, Timeout::Never).await.expect("delivered");
            assert_eq!(delivery.partition as usize, mailbox_partition(&client, partitions as usize), "client {client:?}");
        }
    }
}
