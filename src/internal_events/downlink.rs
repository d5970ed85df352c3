//! What happens in the downlink: messages not delivered, partitions not read or not
//! started, routing by sessions not read to their end.

use std::sync::atomic::AtomicU64;

use super::{InternalEvent, LogLimit};
use crate::metrics::Metrics;

/// A downlink message was not delivered (no subscriber, too large): counted by why in
/// `counter`, and its record committed.
pub struct DownlinkNotDelivered<'a> {
    pub counter: &'a AtomicU64,
    pub kafka_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub mqtt_topic: &'a str,
    pub outcome: &'a dyn std::fmt::Debug,
}

impl InternalEvent for DownlinkNotDelivered<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(self.counter, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                kafka_topic = self.kafka_topic,
                partition = self.partition,
                offset = self.offset,
                mqtt_topic = self.mqtt_topic,
                outcome = ?self.outcome,
                skipped,
                "downlink message not delivered; its record is committed"
            );
        }
    }
}

/// The downlink routes by the sessions as far as read: the sessions topic's end was not
/// reached in time.
pub struct DownlinkSessionsBehind<'a> {
    pub metrics: &'a Metrics,
}

impl InternalEvent for DownlinkSessionsBehind<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.downlink_sessions_behind, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(skipped, "downlink routing by the sessions as far as read: the sessions topic's end was not reached in time");
        }
    }
}

/// A downlink topic's partitions could not be read; those known are kept. Not counted:
/// the next look, seconds later, tries again.
pub struct DownlinkPartitionsNotRead<'a> {
    pub topic: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for DownlinkPartitionsNotRead<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(topic = self.topic, error = %self.error, skipped, "downlink cannot read a topic's partitions; keeping those known");
        }
    }
}

/// The downlink could not start reading partitions it took; it tries again.
pub struct DownlinkPartitionsNotStarted<'a> {
    pub partitions: &'a dyn std::fmt::Debug,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for DownlinkPartitionsNotStarted<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::error!(error = %self.error, partitions = ?self.partitions, skipped, "downlink cannot start reading partitions; retrying");
        }
    }
}
