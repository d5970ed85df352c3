//! The edge's side of sessions the cluster keeps: messages posted to the mailboxes of
//! sessions this node's router does not serve, a session's end and expiry, sessions an
//! earlier run of this node left behind, and connections another node took over.

use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rumqttd::protocol::{LastWill, PublishProperties, QoS};
use tokio::sync::Notify;

use super::mail_message;
use super::origin::Origin;
use super::registry::CloseReason;
use super::Edge;
use crate::cluster::{Cluster, SessionRecord, StoredWill};
use crate::hooks::{now_ms, Hook, HookEvent};
use crate::metrics::Metrics;

/// How often a node looks for sessions whose node is gone.
const ADOPT_EVERY: Duration = Duration::from_secs(1);

impl Edge {
    /// Posts a message to the mailboxes of the cluster's sessions that match its topic
    /// and that this node's router does not serve: connected to another node, or away
    /// (those only at QoS 1/2, as MQTT keeps only those for an absent client).
    pub(super) fn post_elsewhere(&self, topic: &Bytes, payload: &Bytes, props: &Option<PublishProperties>, origin: &Origin) {
        let Some(cluster) = &self.cluster else { return };
        let mut message = None;
        for (client, connected) in cluster.subscribers(topic) {
            if self.registry.is_connected(&client) || (origin.qos == 0 && !connected) {
                continue;
            }
            let message = message.get_or_insert_with(|| mail_message::encode(topic.clone(), payload.clone(), props.clone(), origin));
            cluster.post(&client, message);
        }
    }

    /// A connection of a cluster session ended here: the session is kept for its
    /// expiry (and ends then unless its client is back, on any node), or ends now.
    /// A connection taken over leaves the session to the claim that took it.
    pub(super) fn leave_cluster_session(
        self: &Arc<Self>,
        client: &Arc<str>,
        cluster: &Cluster,
        wake: &Arc<Notify>,
        record: SessionRecord,
        taken_over: bool,
    ) {
        cluster.mailboxes().detach(client, wake);
        if taken_over {
            return;
        }
        if record.expiry == 0 {
            cluster.update(client, &SessionRecord { ended: true, ..record });
            return;
        }
        cluster.update(client, &record);
        if let Some(will) = record.will.clone() {
            let fire_at = record.since_ms + will.delay as u64 * 1000;
            self.fire_will_later(client.clone(), record.generation.clone(), will, fire_at);
        }
        self.expire_cluster_session_later(client.clone(), &record);
    }

    /// Ends `record`'s session at its expiry unless its client came back by then.
    fn expire_cluster_session_later(self: &Arc<Self>, client: Arc<str>, record: &SessionRecord) {
        let Some(at) = record.expires_at_ms() else { return };
        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
        let (edge, generation) = (self.clone(), record.generation.clone());
        self.session_timer(async move {
            tokio::time::sleep(wait).await;
            edge.expire_cluster_session(&client, &generation);
        });
    }

    /// Ends a session whose expiry passed, if it is still the away session of claim
    /// `generation`; its mailbox messages are given up (counted, logged).
    fn expire_cluster_session(&self, client: &Arc<str>, generation: &str) {
        let Some(cluster) = &self.cluster else { return };
        let Some(session) = cluster.session(client) else { return };
        if session.generation != generation || session.connected {
            return;
        }
        let given_up = cluster.mailboxes().pending_for(client);
        let from_kafka = given_up.iter().filter_map(mail_message::decode).filter(|m| m.origin.from.starts_with("kafka:")).count();
        cluster.update(client, &SessionRecord { ended: true, ..session.as_update() });
        Metrics::add(&self.metrics.sessions_expired, 1);
        Metrics::add(&self.metrics.downlink_expired, from_kafka as u64);
        if !given_up.is_empty() {
            tracing::warn!(
                client = %client,
                messages = given_up.len(),
                downlink_messages = from_kafka,
                "session expired with messages undelivered; they are given up"
            );
        }
    }

    /// Adopts, as they appear, the sessions whose node is gone (see
    /// `Cluster::orphans`): a conditional claim makes exactly one node their keeper.
    /// The keeper fires the will of a client that was connected when its node died
    /// (after its delay, unless the client is back by then) and ends the session at its
    /// expiry. Runs until the broker stops.
    pub(super) async fn adopt_orphans(self: Arc<Self>) {
        let Some(cluster) = self.cluster.clone() else { return };
        let mut tick = tokio::time::interval(ADOPT_EVERY);
        loop {
            tick.tick().await;
            if !cluster.is_ready() {
                continue;
            }
            for (client, orphan) in cluster.orphans() {
                self.adopt(&cluster, client, orphan).await;
            }
        }
    }

    async fn adopt(self: &Arc<Self>, cluster: &Arc<Cluster>, client: Arc<str>, orphan: SessionRecord) {
        let generation = cluster.generation();
        let died_connected = orphan.connected;
        let claim = SessionRecord {
            node: cluster.node().to_string(),
            generation: generation.clone(),
            claim: true,
            expects: Some(orphan.generation.clone()),
            connected: false,
            since_ms: if died_connected { now_ms() } else { orphan.since_ms },
            subscriptions: None,
            cursor: None,
            // The will of a client connected when its node died, or one still pending.
            will: orphan.will.clone(),
            ..orphan.clone()
        };
        if died_connected && orphan.expiry == 0 && claim.will.is_none() {
            // Nothing outlives the connection: the session just ends.
            cluster.update(&client, &SessionRecord { ended: true, connected: false, ..orphan.as_update() });
            return;
        }
        // A deferred claim is queued all the same: the timers below act only if the
        // session is still this claim's when they fire.
        if cluster.claim(&client, &claim).await.is_err() {
            return;
        }
        let Some(adopted) = cluster.session(&client).filter(|s| s.generation == generation) else { return };
        tracing::info!(client = %client, from = %orphan.node, "adopted a session whose node is gone");
        Metrics::add(&self.metrics.cluster_adopted, 1);
        if let Some(will) = adopted.will.clone() {
            // From when the client left: its node's death, or its disconnect.
            let fire_at = adopted.since_ms + will.delay as u64 * 1000;
            self.fire_will_later(client.clone(), generation, will, fire_at);
        }
        match adopted.expiry {
            0 => {}
            _ => self.expire_cluster_session_later(client, &adopted),
        }
    }

    /// Fires a session's pending will at `fire_at_ms` (Unix ms), unless its client is
    /// back (the session claimed again, on any node) by then; the session then says the
    /// will is fired, so no node fires it again.
    fn fire_will_later(self: &Arc<Self>, client: Arc<str>, generation: String, will: StoredWill, fire_at_ms: u64) {
        let edge = self.clone();
        self.session_timer(async move {
            tokio::time::sleep(Duration::from_millis(fire_at_ms.saturating_sub(now_ms()))).await;
            let Some(cluster) = &edge.cluster else { return };
            let session = cluster.session(&client);
            if session.as_ref().is_some_and(|s| s.generation != generation || s.will.is_none()) {
                return;
            }
            if let Some(session) = session {
                cluster.update(&client, &SessionRecord { will: None, ..session.as_update() });
            }
            let Ok(message) = base64::engine::general_purpose::STANDARD.decode(&will.payload) else { return };
            let qos = match will.qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            let last_will = LastWill { topic: Bytes::from(will.topic), message: Bytes::from(message), qos, retain: will.retain };
            let event = HookEvent::new(Hook::MessagePublish, client.clone(), "".into());
            let shard = edge.spool.shard_for(&client);
            edge.fire_will(event, shard, last_will, None).await;
            if cluster.session(&client).is_some_and(|s| s.expiry == 0 && s.generation == generation) {
                if let Some(session) = cluster.session(&client) {
                    cluster.update(&client, &SessionRecord { ended: true, ..session.as_update() });
                }
            }
        });
    }
}

/// What the cluster calls when a claim supersedes another: this node closes its
/// connection of the superseded claim, if it has one (MQTT 5: DISCONNECT 0x8E).
pub(super) fn close_superseded(edge: Weak<Edge>) -> impl Fn(&str, &str) + Send + Sync + 'static {
    move |client, generation| {
        let Some(edge) = edge.upgrade() else { return };
        if edge.registry.close_generation(client, generation, CloseReason::TakenOver) {
            Metrics::add(&edge.metrics.cluster_takeovers, 1);
        }
    }
}
