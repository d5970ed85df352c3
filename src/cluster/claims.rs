//! Who owns a session: a connection's claim written to the sessions topic and read back
//! (or deferred while Kafka is away), the session updates that follow, and what this node
//! knows of every session.

use std::sync::Arc;

use rdkafka::producer::{DeliveryFuture, FutureRecord};
use tokio::sync::oneshot;

use super::handle::Cluster;
use super::session::SessionRecord;
use crate::hooks::now_ms;
use crate::internal_events::{ClaimDeferred, InternalEvent};
use crate::metrics::Metrics;

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

/// Why a connection could not claim its session.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("the cluster's Kafka producer did not take the claim: {0}")]
    Produce(String),
}

impl Cluster {
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
        ClaimDeferred { metrics: &self.shared.metrics, client, why }.emit();
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
}
