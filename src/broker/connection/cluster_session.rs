//! A connection's session in the cluster (`ClusterSession`: its claim, mailbox cursor and
//! what is yet to be written), how it is claimed (`claim_in_cluster`), and a stored
//! session's subscriptions and will as the connection uses them again.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use rdkafka::producer::DeliveryFuture;
use rumqttd::protocol::LastWill;
use tokio::sync::Notify;

use crate::broker::subscription::Subscription;
use crate::broker::Edge;
use crate::cluster::{ClaimError, Claimed, Cluster, SessionRecord, StoredSubscription, StoredWill};
use crate::hooks::now_ms;

pub(super) struct ClusterSession {
    pub cluster: Arc<Cluster>,
    /// This connection's claim.
    pub generation: String,
    /// Notified when the mailbox has new messages.
    pub wake: Arc<Notify>,
    /// Offset of the next mailbox message to take.
    pub next: i64,
    /// Offsets of mailbox messages written at QoS 1/2 and not yet acknowledged.
    pub unacked: BTreeSet<i64>,
    /// The session changed since it was last written to the cluster.
    pub dirty: bool,
    /// Its subscriptions changed: what the client is told of it (SUBACK, UNSUBACK)
    /// waits until Kafka has the session (see `written`).
    pub subscriptions_changed: bool,
    /// The session written with changed subscriptions, on its way to Kafka.
    pub written: Option<DeliveryFuture>,
}

impl ClusterSession {
    pub fn new(cluster: Arc<Cluster>, generation: String, cursor: i64) -> ClusterSession {
        ClusterSession {
            cluster,
            generation,
            wake: Arc::new(Notify::new()),
            next: cursor,
            unacked: BTreeSet::new(),
            dirty: true,
            subscriptions_changed: false,
            written: None,
        }
    }

    /// The offset of the first message not acknowledged.
    pub(super) fn cursor(&self) -> i64 {
        self.unacked.first().copied().unwrap_or(self.next)
    }
}

/// A session claimed in the cluster, as the claim left it.
pub(super) struct Stored {
    pub cluster: Arc<Cluster>,
    pub record: SessionRecord,
    /// The client resumes a session (CONNACK session present).
    pub present: bool,
}

/// Claims `client`'s session in the cluster for connection `serial` of this node, and
/// returns the session it resumes or starts: as read back from Kafka, or, when the claim
/// is deferred (Kafka away or slow), as this node knows it.
pub(super) async fn claim_in_cluster(
    cluster: &Arc<Cluster>,
    edge: &Edge,
    client: &Arc<str>,
    serial: u64,
    clean: bool,
    expiry: u32,
) -> Result<Stored, ClaimError> {
    let generation = cluster.generation();
    edge.registry.set_generation(client, serial, &generation);
    let record = SessionRecord {
        node: cluster.node().to_string(),
        generation: generation.clone(),
        claim: true,
        fresh: clean,
        ended: false,
        connected: true,
        expiry,
        since_ms: 0,
        subscriptions: clean.then(Vec::new),
        cursor: Some(cluster.mailboxes().end(client)),
        next_seq: 1,
        expects: None,
        // The first state written after the CONNACK carries it.
        will: None,
    };
    let (prior, record) = match cluster.claim(client, &record).await? {
        // What reading the claim made of it: the stored session carried over, or a fresh one.
        Claimed::ReadBack(prior) => (prior, cluster.session(client).filter(|s| s.generation == generation).unwrap_or(record)),
        // What the claim makes of the session as this node knows it.
        Claimed::Deferred { prior } => {
            let record = record.claimed_over(prior.as_ref(), now_ms());
            (prior, record)
        }
    };
    let present = !clean && prior.is_some_and(|p| p.resumable(now_ms()));
    Ok(Stored { cluster: cluster.clone(), record, present })
}

/// The subscriptions of a stored session as the connection uses them again, numbered
/// for the router from `first_router_id` on.
pub(super) fn restore_all(record: &SessionRecord, first_router_id: usize) -> Vec<Subscription> {
    record.subscriptions.iter().flatten().enumerate().filter_map(|(i, stored)| restore(stored, first_router_id + i)).collect()
}

/// A stored subscription as the connection uses it again; `router_id` is its new
/// identifier with the router.
fn restore(stored: &StoredSubscription, router_id: usize) -> Option<Subscription> {
    Some(Subscription {
        filter: stored.filter.clone(),
        matcher: Subscription::matcher_of(&stored.filter)?,
        router_id,
        granted: stored.qos,
        no_local: stored.no_local,
        retain_as_published: stored.retain_as_published,
        // MQTT sends retained messages on SUBSCRIBE, not when a session resumes.
        send_retained: false,
        client_sub_id: stored.id,
    })
}

/// A will as the cluster keeps it.
pub(super) fn stored_will(will: &LastWill, delay: u32) -> StoredWill {
    StoredWill {
        topic: String::from_utf8_lossy(&will.topic).into_owned(),
        payload: base64::engine::general_purpose::STANDARD.encode(&will.message),
        qos: will.qos as u8,
        retain: will.retain,
        delay,
    }
}
