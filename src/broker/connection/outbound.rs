//! Deliveries from the router to the client: each capped at min(published, granted)
//! QoS, filtered by its subscription's options and the ACL, held for the client's Receive
//! Maximum, written, and acknowledged to the router in the router's order once the client
//! has acknowledged it (QoS 2 is spoken with the client by the edge alone).

use std::collections::hash_map::Entry;

use rumqttd::protocol::{Packet, PubAck, PubAckReason, PubRel, PubRelReason, PublishProperties};
use rumqttd::{Forward, Notification};

use super::end::End;
use super::flight::{Delivery, Message, Slot, Unacked};
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
    /// first whose filter matches.
    fn subscription_for(&self, props: &Option<PublishProperties>, topic: &[u8]) -> Option<&Subscription> {
        let ids = props.as_ref().map(|p| p.subscription_identifiers.as_slice()).unwrap_or_default();
        ids.iter()
            .find_map(|id| self.subscriptions.iter().find(|s| s.router_id == *id))
            .or_else(|| self.subscriptions.iter().find(|s| s.matcher.matches(topic)))
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
            let message = Message { qos, topic: publish.topic, payload: publish.payload, from, ack, mail: None };
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
        let kept = (message.qos > 0 && message.mail.is_none() && self.cluster.is_some()).then(|| props.clone()).flatten();
        let props = if self.v5() { props } else { None };
        let written = self.version.write(Packet::Publish(publish, props), &mut self.out).is_ok();
        if !written || self.out.len() - start > self.max_packet {
            self.out.truncate(start);
            Metrics::add(&self.edge.metrics.mqtt_deliveries_too_large, 1);
            if message.qos > 0 {
                self.finished(pkid, message.mail);
            }
            return;
        }
        self.stage_message(Hook::MessageDelivered, &message);
        match message.qos {
            0 => self.edge.acks.resolve(message.ack),
            _ => {
                self.inflight.insert(pkid, Unacked { message, props: kept, released: false });
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
        self.finished(pkid, unacked.message.mail);
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
            self.finished(pkid, unacked.message.mail);
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
            self.finished(pkid, unacked.message.mail);
        }
    }

    /// A QoS 1/2 delivery is over: acknowledged, refused, or not writable.
    fn finished(&mut self, pkid: u16, mail: Option<i64>) {
        match mail {
            Some(offset) => self.mail_done(offset),
            None => self.slot_done(pkid),
        }
    }

    fn slot_done(&mut self, pkid: u16) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.pkid == pkid && !s.done) {
            slot.done = true;
        }
        self.ack_router();
        while let Some(next) = self.held.front() {
            if next.message.qos > 0 && self.inflight.len() >= self.receive_max as usize {
                break;
            }
            let next = self.held.pop_front().expect("front exists");
            self.deliver(next);
        }
        self.take_mail();
    }

    /// The connection ends with deliveries of the router the client has not received
    /// (written and not acknowledged, or held for its Receive Maximum), in the router's
    /// order. MQTT sends them again when the session resumes; in a cluster the router
    /// keeps no session, so they go to the session's mailbox, behind what waits there,
    /// for whichever node the client comes back to.
    pub(super) fn repost_unacked(&self, cluster: &Cluster) {
        for slot in self.slots.iter().filter(|s| !s.done) {
            let (message, props) = match self.inflight.get(&slot.pkid) {
                Some(unacked) if unacked.released => continue,
                Some(unacked) => (&unacked.message, &unacked.props),
                None => match self.held.iter().find(|d| d.pkid == slot.pkid && d.message.mail.is_none()) {
                    Some(held) => (&held.message, &held.props),
                    None => continue,
                },
            };
            let from = message.from.clone().unwrap_or_else(|| self.client.id.clone());
            let origin = Origin { qos: message.qos, retain: false, published_ms: now_ms(), from, ack: None };
            cluster.post(&self.client.id, &mail_message::encode(message.topic.clone(), message.payload.clone(), props.clone(), &origin));
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
