//! What happens between this node and the cluster's topics: claims deferred, writes
//! the producer refuses, heartbeats not queued, records that cannot be read.

use super::{InternalEvent, LogLimit};
use crate::metrics::Metrics;

/// A connection's claim was not read back in time (or not waited for, Kafka away): the
/// client is served from what this node knows, and the claim takes effect later.
pub struct ClaimDeferred<'a> {
    pub metrics: &'a Metrics,
    pub client: &'a str,
    pub why: &'a str,
}

impl InternalEvent for ClaimDeferred<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.cluster_claims_deferred, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                client = self.client,
                skipped,
                "{}: serving the client from what this node knows of its session; the claim takes effect when Kafka has it",
                self.why
            );
        }
    }
}

/// The cluster's producer would not take a record; `lost` says what that costs.
pub struct ClusterWriteRefused<'a> {
    pub metrics: &'a Metrics,
    pub topic: &'a str,
    pub key: &'a str,
    pub error: &'a dyn std::fmt::Display,
    pub lost: &'a str,
}

impl InternalEvent for ClusterWriteRefused<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.cluster_errors, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::error!(topic = self.topic, key = self.key, error = %self.error, skipped, "{}", self.lost);
        }
    }
}

/// This node's heartbeat could not be queued. Not counted: the next one, a second
/// later, tries again; other nodes count this node as gone only after `NODE_TIMEOUT`.
pub struct HeartbeatNotQueued<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for HeartbeatNotQueued<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(error = %self.error, skipped, "cannot queue this node's heartbeat");
        }
    }
}

/// A record of the cluster's sessions topic that does not parse: skipped. Not counted:
/// only another program writing to the topic, or a newer gateway, makes one.
pub struct UnreadableClusterRecord<'a> {
    pub client: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for UnreadableClusterRecord<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                client = self.client,
                error = %self.error,
                skipped,
                "skipping an unreadable record of the cluster's sessions topic"
            );
        }
    }
}
