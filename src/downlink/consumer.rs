//! The downlink's consumer: one thread that reads the downlink topics from Kafka, has the
//! rules decide each record, publishes their MQTT messages and commits a record once its
//! messages are delivered.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::error::DownlinkError;
use super::offsets::Progress;
use super::share::{self, Partition};
use crate::broker::{Downlink, Downlinked, RecordAcks};
use crate::cluster::Cluster;
use crate::config::{DownlinkConfig, KafkaConfig};
use crate::hooks::{ConsumedRecord, Hook, HookEvent};
use crate::internal_events::{
    DownlinkNotDelivered, DownlinkPartitionsNotRead, DownlinkPartitionsNotStarted, DownlinkSessionsBehind, InternalEvent,
};
use crate::kafka::KafkaContext;
use crate::metrics::Metrics;
use crate::rules::{Dispatcher, MqttMessage, Output, RuleSet, SharedRuleSet};
use crate::util::thread::StoppableThread;

/// Longest wait for a record before looking at the rest (stop, rules, commits).
const POLL: Duration = Duration::from_millis(100);
/// How often done offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How often the node looks at its share of the partitions.
const SHARE_EVERY: Duration = Duration::from_millis(100);
/// How often the topics' partitions are read again (a topic created or grown).
const PARTITIONS_EVERY: Duration = Duration::from_secs(10);
/// The longest one request to Kafka for metadata or a topic's end may take.
const KAFKA_WAIT: Duration = Duration::from_secs(1);
/// How long a partition given up waits for its records consumed to be done, so the
/// node that takes it does not read them again.
const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// Records read at once, then routed together (after one look at the sessions topic
/// when a message of them finds no subscriber).
const BATCH: usize = 500;

/// A consumed record and the MQTT messages the rules made of it, to publish.
struct Decided {
    topic: String,
    partition: i32,
    offset: i64,
    value: Bytes,
    publishes: Vec<MqttMessage>,
}

/// The running downlink; `stop` commits what is done and waits for its thread.
pub struct DownlinkSource(StoppableThread);

struct Consuming {
    consumer: BaseConsumer<KafkaContext>,
    dispatcher: Dispatcher,
    rules: SharedRuleSet,
    broker: Downlink,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    max_outstanding: usize,
    /// The rule set `topics` was taken from; rules change rarely, records come often.
    rules_seen: Option<Arc<RuleSet>>,
    topics: BTreeSet<String>,
    paused: bool,
    progress: Progress,
    cluster: Arc<Cluster>,
    /// The partitions of `topics`, as last read, and when.
    partitions: BTreeSet<Partition>,
    partitions_read: Option<Instant>,
    /// The partitions this node consumes.
    held: BTreeSet<Partition>,
    shared_at: Instant,
}

impl DownlinkSource {
    /// Creates the consumer and starts consuming this node's share of the topics the
    /// rules subscribe to (and follows them as rules and nodes change).
    pub fn start(
        kafka: &KafkaConfig,
        config: &DownlinkConfig,
        cluster: Arc<Cluster>,
        dispatcher: Dispatcher,
        rules: SharedRuleSet,
        broker: Downlink,
        metrics: Arc<Metrics>,
    ) -> Result<DownlinkSource, DownlinkError> {
        let mut client = crate::kafka::client_config(kafka);
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", config.start_from.as_str())
            .set("enable.partition.eof", "false")
            // A command waits for its fetch: librdkafka's default lets a broker hold an
            // empty fetch 500 ms, which would be most of a command's latency.
            .set("fetch.wait.max.ms", "10");
        // The user's properties win over the settings above.
        for (key, value) in &kafka.properties {
            client.set(key, value);
        }
        let consumer: BaseConsumer<KafkaContext> =
            client.create_with_context(KafkaContext::new("downlink")).map_err(DownlinkError::Consumer)?;
        let mut consuming = Consuming {
            consumer,
            dispatcher,
            rules,
            broker,
            runtime: tokio::runtime::Handle::current(),
            metrics,
            max_outstanding: config.max_outstanding,
            rules_seen: None,
            topics: BTreeSet::new(),
            paused: false,
            progress: Progress::default(),
            cluster,
            partitions: BTreeSet::new(),
            partitions_read: None,
            held: BTreeSet::new(),
            shared_at: Instant::now(),
        };
        let thread = StoppableThread::spawn("hookline-downlink", move |stop| consuming.run(stop)).map_err(DownlinkError::Thread)?;
        Ok(DownlinkSource(thread))
    }

    /// Stops consuming, commits what is done, and waits for the thread.
    pub fn stop(self) {
        self.0.stop();
    }
}

impl Consuming {
    fn run(&mut self, stop: &AtomicBool) {
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.follow_rules();
            self.share();
            self.pace();
            if let Some(first) = self.poll(POLL) {
                let mut batch = vec![first];
                while let Some(next) = (batch.len() < BATCH).then(|| self.poll(Duration::ZERO)).flatten() {
                    batch.push(next);
                }
                let decided: Vec<Decided> = batch.iter().map(|message| self.decide(message)).collect();
                let unmatched =
                    decided.iter().flat_map(|d| &d.publishes).any(|p| !p.retain && self.cluster.subscribers(p.topic.as_bytes()).is_empty());
                if unmatched {
                    self.read_sessions();
                }
                for decided in decided {
                    self.publish_decided(decided);
                }
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        self.commit(CommitMode::Sync);
    }

    /// Follows the Kafka topics of the rules' `kafka.record` subscriptions as they change.
    fn follow_rules(&mut self) {
        let rules = self.rules.load_full();
        if self.rules_seen.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, &rules)) {
            return;
        }
        let topics: BTreeSet<String> = rules
            .modules
            .iter()
            .flat_map(|m| &m.subscriptions)
            .filter(|(hook, _)| *hook == Hook::KafkaRecord)
            .map(|(_, filter)| filter.as_str().to_string())
            .collect();
        self.rules_seen = Some(rules);
        if topics != self.topics {
            tracing::info!(?topics, "downlink consuming");
            self.topics = topics;
            // Read now: the share follows the new topics at once.
            self.partitions_read = None;
        }
    }

    /// One record, or an error logged and counted; `None` when nothing came in `wait`.
    /// Detached (copied) so the consumer is free while rules and the broker run.
    fn poll(&mut self, wait: Duration) -> Option<OwnedMessage> {
        match self.consumer.poll(wait)? {
            Ok(message) => Some(message.detach()),
            Err(error) => {
                Metrics::add(&self.metrics.downlink_errors, 1);
                crate::kafka::warn_error("downlink", &error, "downlink consumer error (it keeps retrying)");
                None
            }
        }
    }

    /// Reads the sessions topic up to its end now, at most `cluster.claim_wait_ms`, so the
    /// records just read find every session subscribed before they were produced.
    fn read_sessions(&mut self) {
        let topic = self.cluster.sessions_topic();
        let caught_up = self.consumer.fetch_watermarks(topic, 0, KAFKA_WAIT).is_ok_and(|(_, end)| self.cluster.read_sessions_to(end));
        if !caught_up {
            DownlinkSessionsBehind { metrics: &self.metrics }.emit();
        }
    }

    /// Takes and gives up partitions so this node consumes its share (see `share`).
    fn share(&mut self) {
        if self.shared_at.elapsed() < SHARE_EVERY {
            return;
        }
        self.shared_at = Instant::now();
        let Some(view) = self.cluster.downlink_view() else { return };
        self.read_partitions();
        let wanted = share::share_of(&self.partitions, &view.members, self.cluster.node());
        let release: BTreeSet<Partition> = self.held.difference(&wanted).cloned().collect();
        let take: BTreeSet<Partition> = wanted.difference(&self.held).filter(|p| !view.held_elsewhere.contains(*p)).cloned().collect();
        if release.is_empty() && take.is_empty() {
            return;
        }
        self.release(&release);
        self.take(&take);
        self.cluster.hold_downlink(self.held.iter().cloned().collect());
        tracing::info!(nodes = ?view.members, held = ?self.held, released = ?release, taken = ?take, "downlink partitions shared");
    }

    /// Reads which partitions the topics have, when due.
    fn read_partitions(&mut self) {
        if self.partitions_read.is_some_and(|at| at.elapsed() < PARTITIONS_EVERY) {
            return;
        }
        let mut partitions = BTreeSet::new();
        for topic in &self.topics {
            match self.consumer.fetch_metadata(Some(topic), KAFKA_WAIT) {
                Ok(metadata) => {
                    let found = metadata.topics().iter().filter(|t| t.name() == topic);
                    partitions.extend(found.flat_map(|t| t.partitions().iter().map(|p| (topic.clone(), p.id()))));
                }
                Err(error) => {
                    DownlinkPartitionsNotRead { topic, error: &error }.emit();
                    return;
                }
            }
        }
        self.partitions = partitions;
        self.partitions_read = Some(Instant::now());
    }

    /// Gives partitions up: waits, at most `RELEASE_WAIT`, for their records consumed to
    /// be done, commits, and stops reading them.
    fn release(&mut self, partitions: &BTreeSet<Partition>) {
        if partitions.is_empty() {
            return;
        }
        let until = Instant::now() + RELEASE_WAIT;
        while self.progress.pending_in(partitions) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.commit(CommitMode::Sync);
        self.progress.forget(partitions);
        if let Err(error) = self.consumer.incremental_unassign(&list(partitions)) {
            tracing::error!(%error, ?partitions, "downlink cannot stop reading partitions it gave up");
        }
        self.held.retain(|p| !partitions.contains(p));
    }

    /// Starts reading partitions from their last commit (`downlink.start_from` when none).
    fn take(&mut self, partitions: &BTreeSet<Partition>) {
        if partitions.is_empty() {
            return;
        }
        let list = list(partitions);
        match self.consumer.incremental_assign(&list) {
            Ok(()) => {
                if self.paused {
                    let _ = self.consumer.pause(&list);
                }
                self.held.extend(partitions.iter().cloned());
            }
            Err(error) => {
                DownlinkPartitionsNotStarted { partitions: &partitions, error: &error }.emit();
            }
        }
    }

    /// Pauses consuming while too many messages wait for delivery; resumes below half.
    fn pace(&mut self) {
        let outstanding = self.broker.outstanding();
        let pause = outstanding >= self.max_outstanding || (self.paused && outstanding > self.max_outstanding / 2);
        if pause == self.paused {
            return;
        }
        if let Ok(assignment) = self.consumer.assignment() {
            let changed = match pause {
                true => self.consumer.pause(&assignment),
                false => self.consumer.resume(&assignment),
            };
            if changed.is_ok() {
                self.paused = pause;
                tracing::info!(outstanding, paused = pause, "downlink pacing: messages waiting for delivery");
            }
        }
    }

    /// Runs a record through the rules: the MQTT messages they make of it.
    fn decide(&mut self, message: &OwnedMessage) -> Decided {
        Metrics::add(&self.metrics.downlink_records, 1);
        let topic = message.topic();
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
            .unwrap_or_default();
        let record =
            ConsumedRecord { partition: message.partition(), offset: message.offset(), key: message.key().map(<[u8]>::to_vec), headers };
        let value = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let event = HookEvent::kafka_record(topic, value.clone(), record);
        let mut publishes = Vec::new();
        self.dispatcher.dispatch(&event, |output| {
            if let Output::Publish(publish) = output {
                publishes.push(publish.clone());
            }
        });
        Decided { topic: topic.to_string(), partition: message.partition(), offset: message.offset(), value, publishes }
    }

    /// Publishes a record's messages into the broker; the record is done once they are
    /// delivered (see `Progress`).
    fn publish_decided(&mut self, decided: Decided) {
        let Decided { topic, partition, offset, value, publishes } = decided;
        let acks = Arc::new(RecordAcks::default());
        let from: Arc<str> = format!("kafka:{topic}").into();
        for publish in &publishes {
            let outcome = self.runtime.block_on(self.broker.publish_as(publish, &value, &from, &acks));
            let counter = match outcome {
                Downlinked::Published => {
                    Metrics::add(&self.metrics.downlink_messages, 1);
                    continue;
                }
                Downlinked::NoSubscriber => &self.metrics.downlink_undeliverable,
                Downlinked::TooLarge => &self.metrics.downlink_too_large,
            };
            let (kafka_topic, mqtt_topic) = (topic.as_str(), publish.topic.as_str());
            DownlinkNotDelivered { counter, kafka_topic, partition, offset, mqtt_topic, outcome: &outcome }.emit();
        }
        self.progress.track(&topic, partition, offset, acks);
    }

    /// Commits the offsets of the records done since the last commit.
    fn commit(&mut self, mode: CommitMode) {
        let (commits, done) = self.progress.take_done();
        Metrics::add(&self.metrics.downlink_done, done as u64);
        if commits.is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (topic, partition, next) in &commits {
            if let Err(error) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::error!(%error, topic, partition, "cannot list a downlink offset to commit");
            }
        }
        if let Err(error) = self.consumer.commit(&offsets, mode) {
            Metrics::add(&self.metrics.downlink_errors, 1);
            crate::kafka::warn_error(
                "downlink",
                &error,
                "downlink cannot commit offsets; the records after the last commit are consumed again after a restart",
            );
        }
    }
}

/// Partitions as librdkafka lists them, each read from its committed offset.
fn list(partitions: &BTreeSet<Partition>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (topic, partition) in partitions {
        let _ = list.add_partition_offset(topic, *partition, Offset::Stored);
    }
    list
}
