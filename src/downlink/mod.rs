//! The downlink: Kafka to devices. A consumer of the Kafka topics that rules subscribe
//! to with `kafka.record`; each record goes through the rules, and the MQTT messages
//! they decide on are published into the broker as if a client had published them,
//! with `from` = `kafka:<topic>`.
//!
//! A record's offset is committed only once it is done: every message of it delivered
//! to a subscriber (PUBACK, PUBREC, or written at QoS 0), or found to have no
//! subscriber on this node (counted in `downlink_undeliverable`), or refused by the
//! rules. Until then a restart, or a rebalance, consumes it again: at least once. When
//! `downlink.max_outstanding` messages wait for delivery, consuming pauses.
//!
//! One thread: rules are CPU-bound and records of a partition are published in order.

mod progress;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::{Downlink, Downlinked, RecordAcks};
use crate::config::{DownlinkConfig, KafkaConfig};
use crate::hooks::{ConsumedRecord, Hook, HookEvent};
use crate::kafka::KafkaContext;
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::rules::{Dispatcher, Output, RuleSet, SharedRuleSet};
use crate::thread::StoppableThread;
use progress::Progress;

/// Longest wait for a record before looking at the rest (stop, rules, commits).
const POLL: Duration = Duration::from_millis(100);
/// How often done offsets are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

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
    error_log: LogLimit,
    publish_log: LogLimit,
}

impl DownlinkSource {
    /// Creates the consumer and starts consuming the topics the rules subscribe to (and
    /// follows them as rules change).
    pub fn start(
        kafka: &KafkaConfig,
        config: &DownlinkConfig,
        dispatcher: Dispatcher,
        rules: SharedRuleSet,
        broker: Downlink,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<DownlinkSource> {
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
        let consumer: BaseConsumer<KafkaContext> = client
            .create_with_context(KafkaContext::new("downlink"))
            .context("cannot create the downlink's Kafka consumer (check [kafka] and [downlink])")?;
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
            error_log: LogLimit::new(),
            publish_log: LogLimit::new(),
        };
        let thread =
            StoppableThread::spawn("hookline-downlink", move |stop| consuming.run(stop)).context("cannot start the downlink thread")?;
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
            self.pace();
            match self.consumer.poll(POLL) {
                // Detached (copied) so the consumer is free while rules and the broker run.
                Some(Ok(message)) => self.consume(&message.detach()),
                Some(Err(error)) => {
                    Metrics::add(&self.metrics.downlink_errors, 1);
                    crate::kafka::warn_error("downlink", &error, "downlink consumer error (it keeps retrying)");
                }
                None => {}
            }
            if last_commit.elapsed() >= COMMIT_EVERY {
                self.commit(CommitMode::Async);
                last_commit = Instant::now();
            }
        }
        self.commit(CommitMode::Sync);
    }

    /// Subscribes to the Kafka topics of the rules' `kafka.record` subscriptions when
    /// they change.
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
        if topics == self.topics {
            self.rules_seen = Some(rules);
            return;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let subscribed = match names.is_empty() {
            true => {
                self.consumer.unsubscribe();
                Ok(())
            }
            false => self.consumer.subscribe(&names),
        };
        match subscribed {
            Ok(()) => {
                tracing::info!(topics = ?names, "downlink consuming");
                self.topics = topics;
                self.rules_seen = Some(rules);
            }
            Err(error) => {
                if let Some(skipped) = self.error_log.allow() {
                    tracing::error!(%error, topics = ?names, skipped, "downlink cannot subscribe; retrying");
                }
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

    fn consume(&mut self, message: &OwnedMessage) {
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
        let acks = Arc::new(RecordAcks::default());
        let from: Arc<str> = format!("kafka:{topic}").into();
        let (runtime, broker, metrics, publish_log) = (&self.runtime, &self.broker, &self.metrics, &self.publish_log);
        self.dispatcher.dispatch(&event, |output| {
            let Output::Publish(publish) = output else { return };
            let outcome = runtime.block_on(broker.publish(publish, &value, &from, &acks));
            let counter = match outcome {
                Downlinked::Published => &metrics.downlink_messages,
                Downlinked::NoSubscriber => &metrics.downlink_undeliverable,
                Downlinked::TooLarge => &metrics.downlink_too_large,
            };
            Metrics::add(counter, 1);
            if outcome != Downlinked::Published {
                if let Some(skipped) = publish_log.allow() {
                    tracing::warn!(
                        kafka_topic = topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        mqtt_topic = %publish.topic,
                        ?outcome,
                        skipped,
                        "downlink message not delivered; its record is committed"
                    );
                }
            }
        });
        self.progress.track(topic, message.partition(), message.offset(), acks);
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
