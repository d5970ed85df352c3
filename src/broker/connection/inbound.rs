//! What the client sends once connected: publishes (aliases, QoS flows, the ACL, the
//! spool), subscriptions and their options, unsubscriptions and the rest of MQTT's
//! packets from a client.

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{
    self, DisconnectReasonCode, Packet, PingResp, PubAck, PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, Publish,
    PublishProperties, SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode, UnsubAck, UnsubAckReason, Unsubscribe,
};

use super::end::End;
use super::limits::TOPIC_ALIAS_MAX;
use super::state::State;
use crate::access::Action;
use crate::broker::origin::{self, Origin};
use crate::broker::subscription::Subscription;
use crate::broker::wire::{self, qos_pkid};
use crate::hooks::{Hook, Reason};
use crate::internal_events::{InternalEvent, PublishNotSpooled};
use crate::metrics::Metrics;
use crate::spool::Push;

impl State {
    /// Decodes and handles every whole packet read so far.
    pub(super) fn incoming(&mut self, read: &mut BytesMut) -> Result<(), End> {
        let max = self.edge.limits.max_packet_size;
        while let Some(&first) = read.first() {
            let kind = wire::packet_type(first);
            // rumqttd's MQTT 5 decoder panics on some packets only servers send.
            if wire::sent_only_by_servers(kind) {
                return Err(self.protocol_error("a packet only servers send", None, DisconnectReasonCode::ProtocolError));
            }
            // Shutting down: acknowledgements of work in flight still come in, new work not.
            if wire::starts_work(kind) && self.edge.closing.load(Ordering::Relaxed) {
                return Err(End::Shutdown);
            }
            let packet = match self.version.read(read, max) {
                Ok(packet) => packet,
                Err(protocol::Error::InsufficientBytes(_)) => return Ok(()),
                Err(protocol::Error::PayloadSizeLimitExceeded(size)) => {
                    Metrics::add(&self.edge.metrics.mqtt_oversized_packets, 1);
                    let what = format!("packet of {size} bytes over broker.max_packet_size = {max}");
                    return Err(self.protocol_error(&what, None, DisconnectReasonCode::PacketTooLarge));
                }
                Err(error) => return Err(self.protocol_error("malformed packet", Some(&error), DisconnectReasonCode::MalformedPacket)),
            };
            self.packet(packet)?;
            if self.spool_failed {
                return Err(End::SpoolRefused);
            }
        }
        Ok(())
    }

    fn packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish, props) => return self.accept_publish(publish, props),
            Packet::PubAck(ack, _) => {
                let ok = matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers);
                self.client_acked(ack.pkid, ok);
            }
            Packet::PubRec(rec, _) => {
                let ok = matches!(rec.reason, PubRecReason::Success | PubRecReason::NoMatchingSubscribers);
                self.client_received(rec.pkid, ok);
            }
            Packet::PubComp(comp, _) => self.client_completed(comp.pkid),
            Packet::PubRel(rel, _) => {
                let known = self.qos2_received.remove(&rel.pkid);
                let reason = match known || !self.v5() {
                    true => PubCompReason::Success,
                    false => PubCompReason::PacketIdentifierNotFound,
                };
                self.write(Packet::PubComp(PubComp { pkid: rel.pkid, reason }, None));
            }
            Packet::Subscribe(subscribe, props) => self.subscribe(subscribe, props),
            Packet::Unsubscribe(unsubscribe, _) => self.unsubscribe(unsubscribe),
            Packet::PingReq(_) => self.write(Packet::PingResp(PingResp)),
            Packet::Disconnect(disconnect, props) => {
                // MQTT 5 lets the client change its Session Expiry at the end, unless it
                // was 0 at CONNECT (then a non-zero one is a protocol error).
                match (self.session.expiry, props.and_then(|p| p.session_expiry_interval)) {
                    (0, Some(expiry)) if expiry > 0 => {
                        return Err(self.protocol_error(
                            "a DISCONNECT setting a session expiry after CONNECT set none",
                            None,
                            DisconnectReasonCode::ProtocolError,
                        ));
                    }
                    (_, Some(expiry)) => self.session.expiry = expiry,
                    _ => {}
                }
                let will = disconnect.reason_code == DisconnectReasonCode::DisconnectWithWillMessage;
                return Err(End::Disconnected { will });
            }
            Packet::Connect(..) => return Err(self.protocol_error("a second CONNECT", None, DisconnectReasonCode::ProtocolError)),
            _ => return Err(self.protocol_error("a packet only servers send", None, DisconnectReasonCode::ProtocolError)),
        }
        Ok(())
    }

    fn accept_publish(&mut self, mut publish: Publish, mut props: Option<PublishProperties>) -> Result<(), End> {
        let (qos, pkid) = qos_pkid(&publish);
        if let Some(alias) = props.as_mut().and_then(|p| p.topic_alias.take()) {
            if alias == 0 || alias > TOPIC_ALIAS_MAX {
                return Err(self.protocol_error("topic alias over the maximum of 64", None, DisconnectReasonCode::TopicAliasInvalid));
            }
            match publish.topic.is_empty() {
                true => match self.aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return Err(self.protocol_error("unknown topic alias", None, DisconnectReasonCode::ProtocolError)),
                },
                false => {
                    self.aliases.insert(alias, publish.topic.clone());
                }
            }
        }
        if let Some(why) = wire::invalid_topic_name(&publish.topic).or(publish.topic.is_empty().then_some("empty topic name")) {
            return Err(self.protocol_error(why, None, DisconnectReasonCode::TopicNameInvalid));
        }
        origin::forget(&mut props);
        if let Some(props) = props.as_mut() {
            props.subscription_identifiers.clear();
        }
        if qos == 2 && self.qos2_received.contains(&pkid) {
            // A resend of a QoS 2 publish not released yet: acknowledged, not routed, again.
            self.write(Packet::PubRec(PubRec { pkid, reason: PubRecReason::Success }, None));
            return Ok(());
        }
        let refused = if !self.edge.allows(&self.client, Action::Publish, &publish.topic) {
            let denied = self.edge.denied(&self.client, Reason::Publish, publish.topic.clone());
            self.stage(&denied);
            Some(PubAckReason::NotAuthorized)
        } else {
            let mut event = self.client.event(Hook::MessagePublish);
            event.topic = publish.topic.clone();
            event.payload = publish.payload.clone();
            event.qos = qos;
            match self.stage(&event) {
                Push::Rejected if !self.v5() => {
                    PublishNotSpooled { client: &self.client.id, peer: &self.client.peer }.emit();
                    return Err(End::SpoolRefused);
                }
                Push::Rejected => Some(PubAckReason::QuotaExceeded),
                Push::Written | Push::Dropped => {
                    self.route(publish, props, qos, event.ts_ms);
                    None
                }
            }
        };
        // MQTT 3.1.1 has no reason codes: a refused publish is acknowledged all the same.
        let refused = refused.filter(|_| self.v5());
        match qos {
            1 => self.write(Packet::PubAck(PubAck { pkid, reason: refused.unwrap_or(PubAckReason::Success) }, None)),
            2 => {
                let reason = match refused {
                    None => PubRecReason::Success,
                    Some(PubAckReason::NotAuthorized) => PubRecReason::NotAuthorized,
                    Some(_) => PubRecReason::QuotaExceeded,
                };
                if refused.is_none() {
                    self.qos2_received.insert(pkid);
                }
                self.write(Packet::PubRec(PubRec { pkid, reason }, None));
            }
            _ => {}
        }
        Ok(())
    }

    /// Routes an accepted publish: to the inboxes of its exact topic's subscribers, and
    /// to the router unless no filter it serves on this node matches. In a cluster,
    /// sessions not connected here get it through their mailbox.
    fn route(&mut self, publish: Publish, mut props: Option<PublishProperties>, qos: u8, published_ms: u64) {
        let origin = Origin { qos, retain: publish.retain, published_ms, from: self.client.id.clone(), ack: None };
        if !self.edge.route_at_edge(&publish.topic, &publish.payload, &props, &origin).router {
            Metrics::add(&self.edge.metrics.router_skipped, 1);
            return;
        }
        origin::attach(&mut props, &origin);
        // The router never keeps retained messages: the edge does (`crate::retained`).
        self.router_out.push(Packet::Publish(Publish::new(publish.topic, publish.payload, false), props));
    }

    fn subscribe(&mut self, subscribe: Subscribe, props: Option<SubscribeProperties>) {
        let client_sub_id = props.and_then(|p| p.id);
        // Retained messages are sent after the SUBACK.
        let filters: Vec<String> = subscribe.filters.iter().map(|f| f.path.clone()).collect();
        let codes = subscribe.filters.into_iter().map(|filter| self.subscribe_one(subscribe.pkid, filter, client_sub_id)).collect();
        self.session_changed();
        self.write(Packet::SubAck(SubAck { pkid: subscribe.pkid, return_codes: codes }, None));
        self.send_retained(&filters);
    }

    fn subscribe_one(&mut self, pkid: u16, requested: protocol::Filter, client_sub_id: Option<usize>) -> SubscribeReasonCode {
        let v5 = self.v5();
        let failure = |code| if v5 { code } else { SubscribeReasonCode::Failure };
        let Some(matcher) = Subscription::matcher_of(&requested.path) else {
            return failure(SubscribeReasonCode::TopicFilterInvalid);
        };
        if !self.edge.allows(&self.client, Action::Subscribe, matcher.as_str().as_bytes()) {
            let denied = self.edge.denied(&self.client, Reason::Subscribe, Bytes::from(requested.path));
            self.stage(&denied);
            return failure(SubscribeReasonCode::NotAuthorized);
        }
        // `$` topics are the server's; this one serves none of them.
        if requested.path.starts_with('$') && !requested.path.starts_with("$share/") {
            return failure(SubscribeReasonCode::TopicFilterInvalid);
        }
        let existing = self.subscriptions.iter().position(|s| s.filter == requested.path);
        let index = match existing {
            Some(i) => i,
            None => {
                // Most clients subscribe once (a lock to its command topic).
                if self.subscriptions.is_empty() {
                    self.subscriptions.reserve_exact(1);
                }
                self.subscriptions.push(Subscription {
                    filter: requested.path.clone(),
                    matcher,
                    router_id: self.next_router_id,
                    granted: 0,
                    no_local: false,
                    retain_as_published: false,
                    send_retained: true,
                    client_sub_id: None,
                });
                self.next_router_id += 1;
                let subscription = self.subscriptions.last().expect("just pushed");
                self.edge.add_route(subscription, &self.inbox);
                self.subscriptions.len() - 1
            }
        };
        let subscription = &mut self.subscriptions[index];
        subscription.update(&requested, existing.is_some(), client_sub_id);
        let granted = subscription.granted;
        if subscription.needs_router() {
            // One SUBSCRIBE per filter: the router gives every filter of a packet the
            // packet's subscription identifier.
            let router_props = SubscribeProperties { id: Some(subscription.router_id), user_properties: Vec::new() };
            let router_subscribe = Subscribe { pkid, filters: vec![subscription.router_filter()] };
            self.router_out.push(Packet::Subscribe(router_subscribe, Some(router_props)));
        }
        let mut event = self.client.event(Hook::SessionSubscribed);
        event.topic = Bytes::from(requested.path);
        event.qos = granted;
        self.stage(&event);
        match (v5, requested.qos) {
            (true, qos) => SubscribeReasonCode::Success(qos),
            (false, protocol::QoS::AtMostOnce) => SubscribeReasonCode::QoS0,
            (false, protocol::QoS::AtLeastOnce) => SubscribeReasonCode::QoS1,
            (false, protocol::QoS::ExactlyOnce) => SubscribeReasonCode::QoS2,
        }
    }

    fn unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in unsubscribe.filters {
            let Some(index) = self.subscriptions.iter().position(|s| s.filter == filter) else {
                reasons.push(UnsubAckReason::NoSubscriptionExisted);
                continue;
            };
            let subscription = self.subscriptions.remove(index);
            self.edge.remove_routes([&subscription], &self.inbox);
            if subscription.needs_router() {
                self.router_out.push(Packet::Unsubscribe(Unsubscribe { pkid: unsubscribe.pkid, filters: vec![filter.clone()] }, None));
            }
            let mut event = self.client.event(Hook::SessionUnsubscribed);
            event.topic = Bytes::from(filter);
            self.stage(&event);
            reasons.push(UnsubAckReason::Success);
        }
        self.session_changed();
        self.write(Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid, reasons }, None));
    }
}
