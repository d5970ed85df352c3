//! The edge: what every connection shares (limits, the router's links, the registry of
//! connected clients, the spool, access, the cluster, the index of exact subscriptions)
//! and what the broker does for them; and the `Broker` value that builds the router and
//! the listeners and stops them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, LastWill, LastWillProperties, Packet, Publish, PublishProperties};
use rumqttd::{Notification, Router, RouterConfig};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::acks;
use super::capacity;
use super::cluster_sessions;
use super::connection::Client;
use super::downlink::Downlink;
use super::error::BrokerError;
use super::inbox::Inbox;
use super::listener;
use super::mail_message::{self, Mail};
use super::origin::{self, Origin};
use super::registry::CloseReason;
use super::registry::{Parked, Registry};
use super::subscription::Subscription;
use crate::access::{Access, Action};
use crate::cluster::Cluster;
use crate::config::BrokerConfig;
use crate::hooks::{now_ms, Hook, HookEvent, Reason};
use crate::internal_events::{AccessDenied, InboxFull, InternalEvent};
use crate::metrics::Metrics;
use crate::retained::Retained;
use crate::spool::Spool;
use crate::topic::FilterSet;
use crate::util::readiness::ReadyFlag;

/// Commit-log segment size per subscription filter; with `SEGMENT_COUNT` it bounds how
/// far a slow subscriber may lag before the router drops its oldest messages.
const SEGMENT_SIZE: usize = 1024 * 1024;
const SEGMENT_COUNT: usize = 8;

/// Where the edge routed a publish (see `Edge::route_at_edge`).
pub(in crate::broker) struct Routed {
    /// An inbox on this node took it.
    pub inboxes: bool,
    /// A filter the router serves on this node matches: it goes to the router too.
    pub router: bool,
}

/// The limits every connection checks.
pub struct Limits {
    pub max_packet_size: usize,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// Cap on every client's Receive Maximum.
    pub max_inflight: u16,
    /// A client certificate's identity must be the client id.
    pub identity_is_client_id: bool,
    /// Messages a session's inbox holds at most.
    pub max_queued: usize,
}

/// A client's link to the router: its sending and receiving ends and the router's
/// CONNACK.
type Link = (LinkTx, LinkRx, Notification);

/// Opens a link to the router for a client id; holds the router's sender, whose type
/// rumqttd does not export. The error is rumqttd's, as text.
type Links = Box<dyn Fn(&str, bool) -> Result<Link, String> + Send + Sync>;

/// What every connection of the gateway shares.
pub struct Edge {
    pub(in crate::broker) spool: Arc<Spool>,
    pub(in crate::broker) metrics: Arc<Metrics>,
    pub(in crate::broker) access: Arc<Access>,
    pub(in crate::broker) registry: Registry,
    /// Every filter the router serves on this node (wildcards, shared), live or parked:
    /// a publish none of them matches stays away from the router.
    pub(in crate::broker) filters: RwLock<FilterSet>,
    /// Subscriptions to one exact topic, which the edge serves itself: each topic with
    /// the inboxes of the sessions subscribed to it, live or parked.
    pub(in crate::broker) exact: RwLock<HashMap<Bytes, Vec<Arc<Inbox>>>>,
    pub(in crate::broker) links: Links,
    pub(in crate::broker) limits: Limits,
    /// Shutdown has begun: connections close when they send new work.
    pub(in crate::broker) closing: AtomicBool,
    /// The links every publish for the router goes through, one per core, each client's
    /// always the same one (its publishes stay in order): a client needs no link of its
    /// own unless it subscribes to what the router serves. The gateway's own messages
    /// (wills, the downlink) go through them too. The receiving ends are kept only so the
    /// router keeps the links.
    pub(in crate::broker) publishers: Vec<tokio::sync::Mutex<(LinkTx, LinkRx)>>,
    /// Downlink messages waiting for their first delivery.
    pub(in crate::broker) acks: acks::Acks,
    /// Session expiry timers of parked sessions; ended with the broker.
    pub(in crate::broker) session_timers: std::sync::Mutex<JoinSet<()>>,
    pub(in crate::broker) live: AtomicUsize,
    pub(in crate::broker) none_live: Notify,
    /// Sockets that may be open at once (`capacity`): a listener accepts one only with
    /// a permit, which the socket holds until it closes.
    pub(in crate::broker) sockets: Arc<Semaphore>,
    /// The cluster this node is part of: sessions and mailboxes in Kafka.
    pub(in crate::broker) cluster: Option<Arc<Cluster>>,
    /// The retained messages, without a cluster (a cluster keeps its own).
    pub(in crate::broker) retained: Retained,
}

impl Edge {
    /// Opens `client_id`'s link to the router: `clean` starts its session anew and ends
    /// it with the link; otherwise an existing one resumes and outlives the link. Off
    /// the runtime's threads: rumqttd waits for the router's answer.
    pub(in crate::broker) async fn open_link(self: &Arc<Self>, client_id: &str, clean: bool) -> Result<(LinkTx, LinkRx), String> {
        let (edge, id) = (self.clone(), router_client_id(client_id));
        match tokio::task::spawn_blocking(move || (edge.links)(&id, clean)).await {
            Ok(Ok((tx, rx, _))) => Ok((tx, rx)),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Makes the router forget `client_id`'s persistent session, with a clean link
    /// opened and closed. The caller holds the client id, so no connection of it is live.
    pub(in crate::broker) async fn forget_router_session(self: &Arc<Self>, client_id: &Arc<str>) {
        match self.open_link(client_id, true).await {
            Ok((mut link_tx, _link_rx)) => {
                let goodbye = Disconnect { reason_code: DisconnectReasonCode::NormalDisconnection };
                if let Err(error) = link_tx.send(Packet::Disconnect(goodbye, None)).await {
                    tracing::warn!(client = %client_id, %error, "cannot end a session in the router");
                }
            }
            _ => tracing::warn!(client = %client_id, "cannot end a session in the router; it ends when the client id connects again"),
        }
    }

    /// Keeps an ended connection's persistent session for `expiry` seconds (`u32::MAX`:
    /// for good), then forgets it unless its client came back.
    pub(in crate::broker) fn park_session(self: &Arc<Self>, client_id: Arc<str>, session: Parked, expiry: u32) {
        let serial = self.registry.park(client_id.clone(), session);
        if expiry == u32::MAX {
            return;
        }
        let edge = self.clone();
        self.session_timer(async move {
            tokio::time::sleep(Duration::from_secs(expiry as u64)).await;
            edge.expire_session(client_id, serial).await;
        });
    }

    /// Runs a task about sessions (a timer, the adopter) until it ends or the broker
    /// stops.
    pub(in crate::broker) fn session_timer(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut timers = self.session_timers.lock().unwrap_or_else(|p| p.into_inner());
        // Tasks that ended are let go of here.
        while timers.try_join_next().is_some() {}
        timers.spawn(task);
    }

    /// A session's expiry passed: unless its client came back (or is connecting), its
    /// subscriptions and the router's copy are forgotten, and downlink messages nobody
    /// else can receive are given up (counted).
    pub(in crate::broker) async fn expire_session(self: &Arc<Self>, client_id: Arc<str>, serial: u64) {
        let Some(claim) = self.registry.claim_if_free(&client_id) else { return };
        if let Some(session) = self.registry.unpark_expired(&client_id, serial) {
            self.remove_routes(&session.subscriptions, &session.inbox);
            if session.router_session {
                self.forget_router_session(&client_id).await;
            }
            Metrics::add(&self.metrics.sessions_expired, 1);
            let given_up = self.acks.resolve_unreachable(|topic| self.any_subscriber(topic));
            Metrics::add(&self.metrics.downlink_expired, given_up as u64);
            if given_up > 0 {
                tracing::warn!(client = %client_id, downlink_messages = given_up, "session expired with downlink messages undelivered; their records are committed");
            }
        }
        self.registry.release(&client_id, claim.serial);
        claim.hold.end();
    }

    pub(in crate::broker) fn allows(&self, client: &Client, action: Action, topic: &[u8]) -> bool {
        std::str::from_utf8(topic).is_ok_and(|t| self.access.allows(action, &client.id, &client.username, t))
    }

    /// Counts and logs an ACL refusal, and gives the `access.denied` event that tells
    /// the client's hook chain, and the audit trail, about it.
    pub(in crate::broker) fn denied(&self, client: &Client, action: Reason, topic: Bytes) -> HookEvent {
        AccessDenied { metrics: &self.metrics, client: &client.id, peer: &client.peer, action: action.name(), topic: &topic }.emit();
        let mut event = client.event(Hook::AccessDenied);
        event.topic = topic;
        event.reason = Some(action);
        event
    }

    /// Keeps a retained publish as its topic's retained message (an empty payload
    /// removes it): the cluster's when there is one, else this node's.
    pub(in crate::broker) fn retain(&self, topic: &Bytes, payload: &Bytes, props: &Option<PublishProperties>, origin: &Origin) {
        let Ok(name) = std::str::from_utf8(topic) else { return };
        let message = (!payload.is_empty()).then(|| mail_message::encode(topic.clone(), payload.clone(), props.clone(), origin));
        match &self.cluster {
            Some(cluster) => cluster.retain(name, message),
            None => self.retained.set(name, message),
        }
    }

    /// The retained messages whose topic `matches` (encoded as mailbox messages).
    pub(in crate::broker) fn retained_matching(&self, matches: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        match &self.cluster {
            Some(cluster) => cluster.retained(matches),
            None => self.retained.matching(matches),
        }
    }

    /// Whether any subscription on this node, the edge's or the router's, matches.
    pub(in crate::broker) fn any_subscriber(&self, topic: &[u8]) -> bool {
        self.exact.read().unwrap_or_else(|p| p.into_inner()).contains_key(topic) || self.any_router_subscriber(topic)
    }

    pub(in crate::broker) fn any_router_subscriber(&self, topic: &[u8]) -> bool {
        self.filters.read().unwrap_or_else(|p| p.into_inner()).matches(topic)
    }

    /// Makes a new subscription of the session with `inbox` reachable: in the index of
    /// exact topics, or among the filters the router serves.
    pub(in crate::broker) fn add_route(&self, subscription: &Subscription, inbox: &Arc<Inbox>) {
        match subscription.needs_router() {
            true => self.filters.write().unwrap_or_else(|p| p.into_inner()).insert(&subscription.matcher, ()),
            false => {
                let mut exact = self.exact.write().unwrap_or_else(|p| p.into_inner());
                let inboxes = exact.entry(Bytes::from(subscription.filter.clone())).or_default();
                // Most exact topics have one subscriber (a lock's own topic).
                if inboxes.is_empty() {
                    inboxes.reserve_exact(1);
                }
                inboxes.push(inbox.clone());
            }
        }
    }

    /// Undoes `add_route` for each of `subscriptions`.
    pub(in crate::broker) fn remove_routes<'a>(&self, subscriptions: impl IntoIterator<Item = &'a Subscription>, inbox: &Arc<Inbox>) {
        let (mut filters, mut exact) =
            (self.filters.write().unwrap_or_else(|p| p.into_inner()), self.exact.write().unwrap_or_else(|p| p.into_inner()));
        for subscription in subscriptions {
            if subscription.needs_router() {
                filters.remove(&subscription.matcher, &());
                continue;
            }
            let Some(inboxes) = exact.get_mut(subscription.filter.as_bytes()) else { continue };
            inboxes.retain(|other| !Arc::ptr_eq(other, inbox));
            if inboxes.is_empty() {
                exact.remove(subscription.filter.as_bytes());
            }
        }
    }

    /// Queues a message in the inbox of every session subscribed to its exact topic;
    /// whether any took it. A full inbox does not (counted, logged).
    pub(in crate::broker) fn deliver_exact(
        &self,
        topic: &Bytes,
        payload: &Bytes,
        props: &Option<PublishProperties>,
        origin: &Origin,
    ) -> bool {
        let exact = self.exact.read().unwrap_or_else(|p| p.into_inner());
        let Some(inboxes) = exact.get(&topic[..]) else { return false };
        let mut taken = false;
        for inbox in inboxes {
            let mail = Mail { topic: topic.clone(), payload: payload.clone(), props: props.clone(), origin: origin.clone() };
            match inbox.push(mail, self.limits.max_queued) {
                Ok(()) => taken = true,
                Err(_) => InboxFull { metrics: &self.metrics, client: &inbox.client, topic }.emit(),
            }
        }
        taken
    }

    /// The link `client`'s publishes go through to the router.
    pub(in crate::broker) fn publisher(&self, client: &str) -> &tokio::sync::Mutex<(LinkTx, LinkRx)> {
        &self.publishers[crc32fast::hash(client.as_bytes()) as usize % self.publishers.len()]
    }

    /// Counts a connection task for as long as the returned guard lives.
    pub(in crate::broker) fn live_connection(self: &Arc<Self>) -> LiveConnection {
        self.live.fetch_add(1, Ordering::Relaxed);
        LiveConnection(self.clone())
    }

    /// Publishes a will: at once, or after its delay unless the client came back.
    pub(in crate::broker) async fn publish_will(
        self: &Arc<Self>,
        client: &Client,
        will: LastWill,
        props: Option<LastWillProperties>,
        delay: u32,
    ) {
        let event = client.event(Hook::MessagePublish);
        let props = props.map(|p| PublishProperties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            content_type: p.content_type,
            ..PublishProperties::default()
        });
        let (edge, shard) = (self.clone(), client.shard);
        let fire = async move { edge.fire_will(event, shard, will, props).await };
        if delay == 0 {
            return fire.await;
        }
        let (edge, id) = (self.clone(), client.id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(delay as u64)).await;
            // MQTT 5: a client back within its will delay cancels the will.
            if !edge.registry.is_connected(&id) {
                fire.await;
            }
        });
    }

    /// Publishes a will now, as its client's `message.publish` event (`event`, of the
    /// client's spool shard) and as a message to every subscriber, on every node.
    pub(in crate::broker) async fn fire_will(
        self: &Arc<Self>,
        mut event: HookEvent,
        shard: usize,
        will: LastWill,
        props: Option<PublishProperties>,
    ) {
        event.topic = will.topic.clone();
        event.payload = will.message.clone();
        event.qos = will.qos as u8;
        event.ts_ms = now_ms();
        self.spool.push(shard, &event);
        let origin = Origin { qos: event.qos, retain: will.retain, published_ms: event.ts_ms, from: event.client_id.clone(), ack: None };
        self.publish_from_inside(Publish::new(will.topic, will.message, will.retain), props, &origin).await;
    }

    /// Routes a publish as far as the edge goes: to the mailboxes of the cluster's
    /// sessions not connected here, into the retained messages (with `origin.retain`),
    /// and to the inboxes of its exact topic's subscribers; says whether the router has
    /// it to route as well.
    pub(in crate::broker) fn route_at_edge(
        &self,
        topic: &Bytes,
        payload: &Bytes,
        props: &Option<PublishProperties>,
        origin: &Origin,
    ) -> Routed {
        self.post_elsewhere(topic, payload, props, origin);
        if origin.retain {
            self.retain(topic, payload, props, origin);
        }
        let inboxes = self.deliver_exact(topic, payload, props, origin);
        Routed { inboxes, router: self.any_router_subscriber(topic) }
    }

    /// Publishes from inside the gateway (a will, a downlink message), routed as a
    /// client's publish is (see `route_at_edge`). False when nothing on this node took it.
    pub(in crate::broker) async fn publish_from_inside(
        &self,
        publish: Publish,
        mut props: Option<PublishProperties>,
        origin: &Origin,
    ) -> bool {
        let routed = self.route_at_edge(&publish.topic, &publish.payload, &props, origin);
        if !routed.router {
            return routed.inboxes;
        }
        origin::attach(&mut props, origin);
        // The router never keeps retained messages: the edge does (`crate::retained`).
        let publish = Publish::new(publish.topic, publish.payload, false);
        let mut publisher = self.publisher(&origin.from).lock().await;
        if let Err(error) = send_to_router(&mut publisher.0, &mut vec![Packet::Publish(publish, props)]).await {
            tracing::error!(%error, "the router refused a message published by the gateway");
        }
        true
    }
}

pub(in crate::broker) struct LiveConnection(Arc<Edge>);

impl Drop for LiveConnection {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.none_live.notify_waiters();
        }
    }
}

/// A running broker: the router, the listeners and their connections.
pub struct Broker {
    edge: Arc<Edge>,
    listeners: JoinSet<()>,
    addrs: Vec<SocketAddr>,
    /// Each listener's transport, by its short name, in the order of `addrs`.
    keys: Vec<&'static str>,
    ready: Arc<ReadyFlag>,
}

impl Broker {
    /// Starts the router, binds the listeners and starts accepting clients. `ready` is
    /// set once every listener is bound, and cleared when shutdown begins.
    pub async fn start(
        config: &BrokerConfig,
        spool: Arc<Spool>,
        metrics: Arc<Metrics>,
        access: Arc<Access>,
        cluster: Option<Arc<Cluster>>,
        ready: Arc<ReadyFlag>,
    ) -> Result<Broker, BrokerError> {
        let bound = listener::bind_all(config)?;
        let capacity = capacity::Capacity::plan(config);
        let router_config = RouterConfig {
            // Room for the gateway's own link and for connections being taken over.
            max_connections: capacity.connections * 2 + 16,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_SIZE,
            max_segment_count: SEGMENT_COUNT,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();
        let links: Links = Box::new(move |client_id, clean| {
            LinkBuilder::new(client_id, router_tx.clone())
                .clean_session(clean)
                .dynamic_filters(true)
                .build()
                .map_err(|e: LinkError| e.to_string())
        });
        // No client's router id can be one of these: theirs have every `%` escaped.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut publishers = Vec::with_capacity(cores);
        for i in 0..cores {
            let (tx, rx, _) = tokio::task::block_in_place(|| links(&format!("%hookline-{i}"), true)).map_err(BrokerError::RouterLink)?;
            publishers.push(tokio::sync::Mutex::new((tx, rx)));
        }
        let edge = Arc::new(Edge {
            spool,
            metrics,
            access,
            registry: Registry::default(),
            filters: RwLock::default(),
            exact: RwLock::default(),
            links,
            limits: Limits {
                max_packet_size: config.max_packet_size,
                max_connections: capacity.connections,
                connect_timeout: Duration::from_millis(config.connect_timeout_ms as u64),
                max_inflight: config.max_inflight.min(u16::MAX as usize) as u16,
                identity_is_client_id: config.tls_identity_is_client_id,
                max_queued: config.max_queued_messages,
            },
            closing: AtomicBool::new(false),
            publishers,
            acks: acks::Acks::default(),
            session_timers: Default::default(),
            live: AtomicUsize::new(0),
            none_live: Notify::new(),
            sockets: Arc::new(Semaphore::new(capacity.sockets)),
            cluster,
            retained: Retained::default(),
        });
        if let Some(cluster) = &edge.cluster {
            cluster.on_superseded(cluster_sessions::close_superseded(Arc::downgrade(&edge)));
            edge.session_timer(edge.clone().adopt_orphans());
        }
        let mut listeners = JoinSet::new();
        let (mut addrs, mut keys) = (Vec::new(), Vec::new());
        for (socket, transport) in bound {
            let addr = socket.local_addr().map_err(BrokerError::ListenerAddress)?;
            tracing::info!(listen = %addr, "{} listener up (MQTT 3.1.1 and 5)", transport.name());
            addrs.push(addr);
            keys.push(transport.key());
            listeners.spawn(listener::accept(edge.clone(), socket, transport));
        }
        ready.set_ready();
        Ok(Broker { edge, listeners, addrs, keys, ready })
    }

    /// Where the listeners are bound, in the order TCP, TLS, WebSocket, WSS (those
    /// configured).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The listeners' addresses, each by its transport's short name (`mqtt`, `tls`, `ws`,
    /// `wss`), in the order of `local_addrs`.
    pub fn named_addrs(&self) -> impl Iterator<Item = (&'static str, SocketAddr)> + '_ {
        self.keys.iter().copied().zip(self.addrs.iter().copied())
    }

    /// Stops accepting new connections and closes each connection when it next sends
    /// new work (CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE), unread: shutdown finishes
    /// the work in flight instead of taking more. From now on the gateway is not ready.
    pub fn stop_accepting(&mut self) {
        self.ready.set_not_ready("shutting down: no new connections accepted");
        self.listeners.abort_all();
        self.edge.closing.store(true, Ordering::SeqCst);
    }

    /// Closes every connection (MQTT 5 clients hear DISCONNECT 0x8B) and waits, at most
    /// `wait`, for their tasks to end.
    pub async fn stop(mut self, wait: Duration) {
        self.stop_accepting();
        self.edge.session_timers.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
        while self.listeners.join_next().await.is_some() {}
        let none_live = self.edge.none_live.notified();
        self.edge.registry.close_all();
        if self.edge.live.load(Ordering::Relaxed) > 0 {
            let _ = tokio::time::timeout(wait, none_live).await;
        }
    }

    /// The downlink's way in.
    pub fn downlink(&self) -> Downlink {
        Downlink(self.edge.clone())
    }

    /// Closes a client's connection (MQTT 5: DISCONNECT 0x98 Administrative action);
    /// false when that client is not connected.
    pub fn disconnect(&self, client_id: &str) -> bool {
        self.edge.registry.close(client_id, CloseReason::Administrative)
    }
}

/// Hands `packets` to the router through `link`, in order. The router takes a link's
/// whole buffer per notification, so a notification is pending exactly while the buffer
/// holds packets: notify only when it was empty. A second notification would reach the
/// router after the buffer it announced was taken, and after a DISCONNECT would name a
/// connection that is gone (or, its id reused, another one).
pub(in crate::broker) async fn send_to_router(link: &mut LinkTx, packets: &mut Vec<Packet>) -> Result<(), LinkError> {
    let Some(last) = packets.pop() else { return Ok(()) };
    {
        let mut buffer = link.buffer();
        let pending = !buffer.is_empty();
        buffer.extend(packets.drain(..));
        if pending {
            buffer.push_back(last);
            return Ok(());
        }
    }
    // Nothing pending: the router leaves the buffer alone until this notification.
    link.send(last).await.map(|_| ())
}

/// rumqttd's router refuses client ids holding `+ $ # /`, which MQTT allows; it knows
/// each client by its id with those characters (and `%`) percent-escaped.
fn router_client_id(client_id: &str) -> String {
    let mut id = String::with_capacity(client_id.len());
    for c in client_id.chars() {
        match c {
            '+' | '$' | '#' | '/' | '%' => id.push_str(&format!("%{:02X}", c as u32)),
            c => id.push(c),
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_the_router_would_refuse_are_escaped_one_to_one() {
        assert_eq!(router_client_id("lock-1"), "lock-1");
        assert_eq!(router_client_id("a/b+c#$%"), "a%2Fb%2Bc%23%24%25");
    }
}
