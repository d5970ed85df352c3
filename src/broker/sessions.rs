//! The edge's side of sessions the cluster keeps: messages posted to the mailboxes of
//! sessions this node's router does not serve, a session's end and expiry, sessions an
//! earlier run of this node left behind, and connections another node took over.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::protocol::PublishProperties;
use tokio::sync::Notify;

use super::mail;
use super::origin::Origin;
use super::registry::CloseReason;
use super::Edge;
use crate::cluster::{Cluster, SessionRecord};
use crate::hooks::now_ms;
use crate::metrics::Metrics;

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
            let message = message.get_or_insert_with(|| mail::encode(topic.clone(), payload.clone(), props.clone(), origin));
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
        self.expire_cluster_session_later(client.clone(), &record);
    }

    /// Ends `record`'s session at its expiry unless its client came back by then.
    fn expire_cluster_session_later(self: &Arc<Self>, client: Arc<str>, record: &SessionRecord) {
        let Some(at) = record.expires_at_ms() else { return };
        let wait = Duration::from_millis(at.saturating_sub(now_ms()));
        let (edge, generation) = (self.clone(), record.generation.clone());
        let mut timers = self.session_timers.lock().unwrap_or_else(|p| p.into_inner());
        while timers.try_join_next().is_some() {}
        timers.spawn(async move {
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
        let from_kafka = given_up.iter().filter_map(mail::decode).filter(|m| m.origin.from.starts_with("kafka:")).count();
        cluster.update(client, &SessionRecord { ended: true, claim: false, fresh: false, ..session });
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

    /// Looks after the sessions an earlier run of this node left (it stopped, or died):
    /// those it left connected are away from now on, and each expires in time.
    pub(super) fn adopt_left_sessions(self: &Arc<Self>, cluster: &Cluster) {
        let left = cluster.left_by_earlier_runs();
        let adopted = left.len();
        for (client, mut record) in left {
            if record.connected {
                record = SessionRecord { connected: false, since_ms: now_ms(), claim: false, fresh: false, ..record };
                match record.expiry {
                    0 => {
                        cluster.update(&client, &SessionRecord { ended: true, ..record });
                        continue;
                    }
                    _ => cluster.update(&client, &record),
                }
            }
            self.expire_cluster_session_later(client, &record);
        }
        if adopted > 0 {
            tracing::info!(sessions = adopted, "looking after the sessions this node's earlier run left");
        }
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
