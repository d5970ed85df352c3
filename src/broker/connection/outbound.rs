//! Deliveries from the router to the client: each capped at min(published, granted)
//! QoS, filtered by its subscription's options and the ACL, held for the client's Receive
//! Maximum, written, and acknowledged to the router in the router's order once the client
//! has acknowledged it (QoS 2 is spoken with the client by the edge alone).

use std::collections::hash_map::Entry;

use rumqttd::protocol::{Packet, PubAck, PubAckReason, PubRel, PubRelReason, PublishProperties};
use rumqttd::{Forward, Notification};

use super::end::End;
use super::flight::{Delivery, Message, Slot, Source, Unacked};
use super::limits::FIRST_OWN_PKID;
use super::state::State;
use crate::access::Action;
use crate::broker::mail_message;
use crate::broker::origin::{self, Origin};
use crate::broker::subscription::Subscription;
use crate::broker::wire::{publish_with, qos_pkid};
use crate::cluster::Cluster;
use crate::hooks::now_ms;
use crate::hooks::Hook;
use crate::metrics::Metrics;

impl State {
    pub(super) fn notification(&mut self, note: Notification) -> Result<(), End> {
        match note {
            Notification::Forward(forward) => self.forward(forward),
            Notification::Unschedule => self.wake_router = true,
            Notification::Disconnect(disconnect, _) => return Err(End::Router(disconnect.reason_code)),
            // The router's acknowledgements of what the edge answered itself.
            _ => {}
        }
        Ok(())
    }

    /// The subscription a delivery is for: the one whose identifier the router attached,
    /// else (a session resumed from the router's store, whose identifiers it forgot) the
    /// first the router serves whose filter matches.
    fn subscription_for(&self, props: &Option<PublishProperties>, topic: &[u8]) -> Option<&Subscription> {
        let ids = props.as_ref().map(|p| p.subscription_identifiers.as_slice()).unwrap_or_default();
        ids.iter()
            .find_map(|id| self.subscriptions.iter().find(|s| s.router_id == *id))
            .or_else(|| self.subscriptions.iter().find(|s| s.needs_router() && s.matcher.matches(topic)))
    }

    /// A delivery from the router: capped, filtered by the subscription's options and
    /// the ACL, then written, held for the client's Receive Maximum, or dropped.
    fn forward(&mut self, forward: Forward) {
        let Forward { publish, mut properties, .. } = forward;
        let (router_qos, pkid) = qos_pkid(&publish);
        let origin = origin::take(&mut properties);
        let published_qos = origin.as_ref().map_or(router_qos, |o| o.qos);
        let delivery = self.subscription_for(&properties, &publish.topic).and_then(|sub| {
            let from_self = origin.as_ref().is_some_and(|o| o.from == self.client.id);
            // MQTT 5 lets a server drop QoS 0 messages for a client that was away; they
            // were published before this connection and are not retained.
            let stale = published_qos == 0 && origin.as_ref().is_some_and(|o| o.published_ms < self.connected_ms);
            let own_unwanted = sub.no_local && from_self;
            let wanted = !(own_unwanted || stale);
            let qos = match router_qos {
                0 => 0,
                _ => published_qos.min(sub.granted),
            };
            let retain = sub.retain_as_published && origin.as_ref().is_some_and(|o| o.retain);
            let client_sub_id = sub.client_sub_id;
            wanted.then_some((qos, retain, client_sub_id))
        });
        let delivery = delivery.filter(|_| {
            let readable = self.edge.allows(&self.client, Action::Subscribe, &publish.topic);
            if !readable {
                Metrics::add(&self.edge.metrics.mqtt_deliveries_denied, 1);
            }
            readable
        });
        if router_qos > 0 {
            let done = delivery.is_none_or(|(qos, ..)| qos == 0);
            self.slots.push_back(Slot { pkid, done });
        }
        if let Some((qos, retain, client_sub_id)) = delivery {
            if let Some(props) = properties.as_mut() {
                props.subscription_identifiers = client_sub_id.into_iter().collect();
            }
            let (from, ack) = origin.map_or((None, None), |o| (Some(o.from), o.ack));
            let message = Message { qos, topic: publish.topic, payload: publish.payload, from, ack, source: Source::Router };
            self.deliver_or_hold(Delivery { pkid, retain, props: properties, message });
        }
        self.ack_router();
    }

    /// After a SUBACK: the retained messages matching each of `filters` whose
    /// subscription wants them (Retain Handling; none for shared subscriptions), as MQTT
    /// sends them on SUBSCRIBE (see `crate::retained`).
    pub(super) fn send_retained(&mut self, filters: &[String]) {
        for filter in filters.iter().filter(|f| !f.starts_with("$share/")) {
            let Some(index) = self.subscriptions.iter().position(|s| s.filter == *filter && s.send_retained) else { continue };
            let matcher = self.subscriptions[index].matcher.clone();
            for message in self.edge.retained_matching(|topic| matcher.matches(topic)) {
                let Some(mut delivery) = mail_message::decode(&message).and_then(|m| self.delivery_for(index, m, true)) else { continue };
                if delivery.message.qos > 0 {
                    delivery.pkid = self.own_pkid();
                }
                self.deliver_or_hold(delivery);
            }
        }
    }

    /// How many more messages the edge may take for the client now (from its inbox or
    /// mailbox): the room left in its Receive Maximum, none while deliveries are held.
    pub(super) fn room_for_more(&self) -> usize {
        match self.held.is_empty() {
            true => (self.receive_max as usize).saturating_sub(self.inflight.len()),
            false => 0,
        }
    }

    /// A packet id for a delivery the edge makes itself, not in flight now.
    pub(super) fn own_pkid(&mut self) -> u16 {
        loop {
            let pkid = self.next_own_pkid;
            self.next_own_pkid = if pkid == u16::MAX { FIRST_OWN_PKID } else { pkid + 1 };
            if !self.inflight.contains_key(&pkid) {
                return pkid;
            }
        }
    }

    /// Delivers now, or holds the delivery (in order) while the client's Receive Maximum
    /// is reached.
    pub(super) fn deliver_or_hold(&mut self, delivery: Delivery) {
        match self.held.is_empty() && (delivery.message.qos == 0 || self.inflight.len() < self.receive_max as usize) {
            true => self.deliver(delivery),
            false => self.held.push_back(delivery),
        }
    }

    /// Writes a delivery to the client, unless it is over the client's Maximum Packet
    /// Size (MQTT 5: then it is dropped, as if delivered).
    pub(super) fn deliver(&mut self, delivery: Delivery) {
        let Delivery { pkid, retain, props, message } = delivery;
        let start = self.out.len();
        let publish = publish_with(message.qos, pkid, retain, message.topic.clone(), message.payload.clone());
        // What may have to go again when the connection ends (see `unfinished`).
        let kept = (message.qos > 0 && message.source.sent_again(self.cluster.is_some())).then(|| props.clone()).flatten();
        let props = if self.v5() { props } else { None };
        let written = self.version.write(Packet::Publish(publish, props), &mut self.out).is_ok();
        if !written || self.out.len() - start > self.max_packet {
            self.out.truncate(start);
            Metrics::add(&self.edge.metrics.mqtt_deliveries_too_large, 1);
            if message.qos > 0 {
                self.finished(pkid, message.source);
            }
            return;
        }
        self.stage_message(Hook::MessageDelivered, &message);
        match message.qos {
            0 => self.edge.acks.resolve(message.ack),
            _ => {
                self.sent += 1;
                self.inflight.insert(pkid, Unacked { message, props: kept, released: false, order: self.sent });
            }
        }
    }

    /// `message.delivered` or `message.acked` of a delivery.
    fn stage_message(&mut self, hook: Hook, message: &Message) {
        let mut event = self.client.event(hook);
        event.topic = message.topic.clone();
        event.payload = message.payload.clone();
        event.qos = message.qos;
        event.from = message.from.clone();
        self.stage(&event);
    }

    /// PUBACK of a QoS 1 delivery.
    pub(super) fn client_acked(&mut self, pkid: u16, ok: bool) {
        let Some(unacked) = self.take_unacked(pkid, |u| u.message.qos == 1) else { return };
        if ok {
            self.stage_message(Hook::MessageAcked, &unacked.message);
            self.edge.acks.resolve(unacked.message.ack);
        }
        self.finished(pkid, unacked.message.source);
    }

    /// Takes the delivery in flight under `pkid` if it is the one an acknowledgement is
    /// for; a stray acknowledgement leaves every delivery in flight untouched.
    fn take_unacked(&mut self, pkid: u16, acknowledges: impl FnOnce(&Unacked) -> bool) -> Option<Unacked> {
        match self.inflight.entry(pkid) {
            Entry::Occupied(entry) if acknowledges(entry.get()) => Some(entry.remove()),
            _ => None,
        }
    }

    /// PUBREC of a QoS 2 delivery: the client has it (`message.acked`, as MQTT 5 lets a
    /// receiver act on it now); PUBREL follows.
    pub(super) fn client_received(&mut self, pkid: u16, ok: bool) {
        let Some(unacked) = self.take_unacked(pkid, |u| u.message.qos == 2) else { return };
        if !ok {
            self.finished(pkid, unacked.message.source);
            return;
        }
        if !unacked.released {
            self.stage_message(Hook::MessageAcked, &unacked.message);
            self.edge.acks.resolve(unacked.message.ack);
        }
        self.inflight.insert(pkid, Unacked { released: true, ..unacked });
        self.write(Packet::PubRel(PubRel { pkid, reason: PubRelReason::Success }, None));
    }

    /// PUBCOMP: a QoS 2 delivery is complete.
    pub(super) fn client_completed(&mut self, pkid: u16) {
        if let Some(unacked) = self.take_unacked(pkid, |u| u.released) {
            self.finished(pkid, unacked.message.source);
        }
    }

    /// A QoS 1/2 delivery is over: acknowledged, refused, or not writable.
    fn finished(&mut self, pkid: u16, source: Source) {
        match source {
            Source::Mailbox(offset) => self.mail_done(offset),
            Source::Router => {
                if let Some(slot) = self.slots.iter_mut().find(|s| s.pkid == pkid && !s.done) {
                    slot.done = true;
                }
                self.ack_router();
                self.release_held();
            }
            Source::Edge => self.release_held(),
        }
    }

    /// There is room in the client's Receive Maximum: what waits for it goes out, held
    /// deliveries first.
    pub(super) fn release_held(&mut self) {
        while let Some(next) = self.held.front() {
            if next.message.qos > 0 && self.inflight.len() >= self.receive_max as usize {
                break;
            }
            let next = self.held.pop_front().expect("front exists");
            self.deliver(next);
        }
        self.take_mail();
        self.take_inbox();
    }

    /// Takes the inbox's next messages, as many as the client's Receive Maximum lets
    /// through, and delivers them.
    pub(super) fn take_inbox(&mut self) {
        let room = self.room_for_more();
        if room == 0 {
            return;
        }
        for mail in self.inbox.take(room) {
            let ack = mail.origin.ack;
            let Some(mut delivery) = self.inbox_delivery(mail) else { continue };
            delivery.message.ack = ack;
            if delivery.message.qos > 0 {
                delivery.pkid = self.own_pkid();
            }
            self.deliver(delivery);
        }
    }

    /// What an inbox message becomes for this client, under its subscription to the
    /// message's exact topic (or, put back from an earlier connection, any matching one):
    /// `None` when none wants it any more, it expired, the ACL hides its topic, or it is
    /// a QoS 0 message from before this connection (MQTT 5 lets a server drop those for
    /// a client that was away).
    fn inbox_delivery(&self, mail: mail_message::Mail) -> Option<Delivery> {
        if mail.origin.qos == 0 && mail.origin.published_ms < self.connected_ms {
            return None;
        }
        let exact = self.subscriptions.iter().position(|s| !s.needs_router() && s.filter.as_bytes() == &mail.topic[..]);
        match exact {
            Some(index) => self.delivery_for(index, mail, false),
            None => self.mail_delivery(mail),
        }
    }

    /// The deliveries the client has not received that must go again when its session
    /// resumes, in the order they were first written, then those held for its Receive
    /// Maximum (see `Source::sent_again`). A QoS 2 delivery already received (PUBREC) is
    /// not among them.
    pub(super) fn unfinished(&self, in_cluster: bool) -> Vec<mail_message::Mail> {
        let again = |source: Source| source.sent_again(in_cluster);
        let mut written: Vec<&Unacked> = self.inflight.values().filter(|u| !u.released && again(u.message.source)).collect();
        written.sort_by_key(|u| u.order);
        let written = written.into_iter().map(|u| (&u.message, &u.props));
        let held = self.held.iter().filter(|d| again(d.message.source)).map(|d| (&d.message, &d.props));
        written
            .chain(held)
            .map(|(message, props)| {
                let from = message.from.clone().unwrap_or_else(|| self.client.id.clone());
                let origin = Origin { qos: message.qos, retain: false, published_ms: now_ms(), from, ack: message.ack };
                mail_message::Mail { topic: message.topic.clone(), payload: message.payload.clone(), props: props.clone(), origin }
            })
            .collect()
    }

    /// The connection of a cluster session ends: what the client has not received (see
    /// `unfinished`) and what still waits in the inbox goes to the session's mailbox,
    /// behind what waits there, for whichever node the client comes back to.
    pub(super) fn repost_unfinished(&self, cluster: &Cluster) {
        for mut mail in self.unfinished(true).into_iter().chain(self.inbox.drain()) {
            // Acknowledgement ids are this node's own.
            mail.origin.ack = None;
            cluster.post(&self.client.id, &mail_message::encode(mail.topic, mail.payload, mail.props, &mail.origin));
            Metrics::add(&self.edge.metrics.cluster_mail_reposted, 1);
        }
    }

    /// Acknowledges to the router every finished delivery at the head of its order.
    fn ack_router(&mut self) {
        while self.slots.front().is_some_and(|s| s.done) {
            let slot = self.slots.pop_front().expect("front exists");
            self.router_out.push(Packet::PubAck(PubAck { pkid: slot.pkid, reason: PubAckReason::Success }, None));
        }
    }
}
