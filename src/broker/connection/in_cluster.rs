//! What a connection does as part of the cluster: it goes on in its session there (at
//! CONNECT, or once this node catches up), takes its mailbox messages in order within the
//! client's Receive Maximum, and writes the session back to the cluster as it changes.

use std::sync::atomic::Ordering;

use rumqttd::protocol::{Packet, Subscribe, SubscribeProperties};

use super::cluster_session::{claim_in_cluster, restore_all, stored_will, ClusterSession};
use super::flight::{Delivery, Message, Source};
use super::state::State;
use crate::access::Action;
use crate::broker::mail_message;
use crate::broker::subscription::Subscription;
use crate::cluster::{SessionRecord, StoredSubscription};
use crate::hooks::now_ms;
use crate::metrics::Metrics;

impl State {
    /// Goes on in `session`, the client's session in the cluster: `subscriptions` (the
    /// stored session's) are made again (in the edge's index or the router), but for
    /// filters the connection has already, and the mailbox is read from the session's
    /// cursor.
    pub(super) fn enter_cluster(&mut self, session: ClusterSession, subscriptions: Vec<Subscription>) {
        for subscription in subscriptions {
            if self.subscriptions.iter().any(|s| s.filter == subscription.filter) {
                continue;
            }
            self.edge.add_route(&subscription, &self.inbox);
            if subscription.needs_router() {
                let props = SubscribeProperties { id: Some(subscription.router_id), user_properties: Vec::new() };
                self.router_out.push(Packet::Subscribe(Subscribe { pkid: 1, filters: vec![subscription.router_filter()] }, Some(props)));
            }
            self.subscriptions.push(subscription);
        }
        session.cluster.mailboxes().attach(&self.client.id, session.wake.clone());
        self.cluster = Some(session);
    }

    /// This node caught up with the cluster after serving the client alone: the
    /// connection claims the client's session now, as its CONNECT would have, without a
    /// reconnect. A session the client resumes brings its subscriptions and the messages
    /// its mailbox got meanwhile; a claim that fails leaves the client served alone.
    pub(super) async fn join_cluster(&mut self) {
        let (Some(clean), Some(cluster)) = (self.claim_when_caught_up.take(), self.edge.cluster.clone()) else { return };
        let claimed = claim_in_cluster(&cluster, &self.edge, &self.client.id, self.claim.serial, clean, self.session.expiry).await;
        let stored = match claimed {
            Ok(stored) => stored,
            Err(error) => {
                Metrics::add(&self.edge.metrics.cluster_errors, 1);
                tracing::warn!(client = %self.client.id, %error, "cannot claim the session in the cluster now that this node caught up: it goes on serving the client alone");
                return;
            }
        };
        Metrics::add(&self.edge.metrics.cluster_alone_joined, 1);
        let subscriptions = restore_all(&stored.record, self.next_router_id);
        self.next_router_id = subscriptions.iter().map(|s| s.router_id + 1).max().unwrap_or(self.next_router_id);
        // Events go on from the larger number: the session's, or this connection's.
        self.client.next_seq.fetch_max(stored.record.next_seq, Ordering::Relaxed);
        let session = ClusterSession::new(stored.cluster, stored.record.generation, stored.record.cursor.unwrap_or(0));
        self.enter_cluster(session, subscriptions);
    }

    /// Takes the mailbox's next messages, as many as the client's Receive Maximum lets
    /// through, and delivers them.
    pub(super) fn take_mail(&mut self) {
        let room = self.room_for_more();
        let Some(session) = self.cluster.as_ref().filter(|_| room > 0) else { return };
        let mail = session.cluster.mailboxes().take(&self.client.id, session.next, room);
        // Written only if the cursor moves: a message delivered at QoS 1 or 2 holds it
        // until acknowledged (a session record per command, not two).
        let cursor = session.cursor();
        for (offset, bytes) in mail {
            let delivery = mail_message::decode(&bytes).and_then(|mail| self.mail_delivery(mail));
            let Some(session) = self.cluster.as_mut() else { return };
            session.next = offset + 1;
            let Some(mut delivery) = delivery else { continue };
            Metrics::add(&self.edge.metrics.cluster_mail_delivered, 1);
            delivery.message.source = Source::Mailbox(offset);
            if delivery.message.qos > 0 {
                session.unacked.insert(offset);
                delivery.pkid = self.own_pkid();
            }
            self.deliver(delivery);
        }
        if let Some(session) = self.cluster.as_mut() {
            session.dirty |= session.cursor() != cursor;
        }
    }

    /// What a mailbox message (or an inbox message put back from an earlier connection)
    /// becomes for this client, under its matching subscription of the highest granted
    /// QoS: `None` when it is expired, no subscription wants it any more, or the ACL
    /// hides its topic.
    pub(super) fn mail_delivery(&self, mail: mail_message::Mail) -> Option<Delivery> {
        let index = (0..self.subscriptions.len())
            .filter(|&i| self.subscriptions[i].matcher.matches(&mail.topic))
            .max_by_key(|&i| self.subscriptions[i].granted)?;
        self.delivery_for(index, mail, false)
    }

    /// A message for subscription `index`: a live one, or a retained one because of a
    /// SUBSCRIBE (`on_subscribe`: sent with the retain flag, as MQTT says).
    pub(super) fn delivery_for(&self, index: usize, mail: mail_message::Mail, on_subscribe: bool) -> Option<Delivery> {
        let mail_message::Mail { topic, payload, mut props, origin } = mail;
        if let Some(interval) = props.as_ref().and_then(|p| p.message_expiry_interval) {
            let age_s = now_ms().saturating_sub(origin.published_ms) / 1000;
            if age_s >= interval as u64 {
                Metrics::add(&self.edge.metrics.cluster_mail_expired, 1);
                return None;
            }
            // MQTT 5: the receiver hears the interval that is left.
            props.as_mut().expect("has an interval").message_expiry_interval = Some(interval - age_s as u32);
        }
        let subscription = &self.subscriptions[index];
        if subscription.no_local && origin.from == self.client.id && !on_subscribe {
            return None;
        }
        if !self.edge.allows(&self.client, Action::Subscribe, &topic) {
            Metrics::add(&self.edge.metrics.mqtt_deliveries_denied, 1);
            return None;
        }
        let qos = origin.qos.min(subscription.granted);
        let retain = on_subscribe || (subscription.retain_as_published && origin.retain);
        // A message published without properties gets some to carry the identifier.
        match (subscription.client_sub_id, props.as_mut()) {
            (Some(id), _) => props.get_or_insert_with(Default::default).subscription_identifiers = vec![id],
            (None, Some(props)) => props.subscription_identifiers.clear(),
            (None, None) => {}
        }
        let message = Message { qos, topic, payload, from: Some(origin.from), ack: None, source: Source::Edge };
        Some(Delivery { pkid: 0, retain, props, message })
    }

    /// The session's subscriptions changed: the cluster hears of it at the next flush,
    /// before the client does.
    pub(super) fn session_changed(&mut self) {
        if let Some(session) = self.cluster.as_mut() {
            session.dirty = true;
            session.subscriptions_changed = true;
        }
    }

    /// The client acknowledged mailbox message `offset` (or it could not be written).
    pub(super) fn mail_done(&mut self, offset: i64) {
        if let Some(session) = self.cluster.as_mut() {
            // The cursor moves only when the first unacknowledged one is done.
            session.dirty |= session.unacked.first() == Some(&offset);
            session.unacked.remove(&offset);
        }
        self.release_held();
    }

    /// The session as the cluster keeps it, now.
    pub(super) fn session_record(&self, connected: bool) -> Option<SessionRecord> {
        let session = self.cluster.as_ref()?;
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|s| StoredSubscription {
                filter: s.filter.clone(),
                qos: s.granted,
                no_local: s.no_local,
                retain_as_published: s.retain_as_published,
                id: s.client_sub_id,
            })
            .collect();
        Some(SessionRecord {
            node: session.cluster.node().to_string(),
            generation: session.generation.clone(),
            claim: false,
            fresh: false,
            ended: false,
            connected,
            expiry: self.session.expiry,
            since_ms: if connected { 0 } else { now_ms() },
            subscriptions: Some(subscriptions),
            cursor: Some(session.cursor()),
            next_seq: self.client.next_seq.load(Ordering::Relaxed),
            expects: None,
            will: self.will.as_ref().map(|(will, _, delay)| stored_will(will, *delay)),
        })
    }

    /// Writes the session to the cluster if it changed.
    pub(super) fn write_session(&mut self) {
        let Some(session) = self.cluster.as_ref().filter(|s| s.dirty) else { return };
        let cluster = session.cluster.clone();
        let written = self.session_record(true).and_then(|record| cluster.update(&self.client.id, &record));
        if let Some(session) = self.cluster.as_mut() {
            session.dirty = false;
            if std::mem::take(&mut session.subscriptions_changed) {
                session.written = written;
            }
        }
    }

    /// Waits until Kafka has the session written with changed subscriptions, within
    /// `cluster.claim_wait_ms` (not at all while Kafka is away): a command produced once
    /// the client has its SUBACK finds the subscription on every node.
    pub(super) async fn session_written(&mut self) {
        let Some(session) = self.cluster.as_mut() else { return };
        if let Some(written) = session.written.take() {
            if !session.cluster.written(written).await {
                Metrics::add(&self.edge.metrics.cluster_subacks_unwritten, 1);
            }
        }
    }
}
