//! One client connection, from its CONNECT to its one disconnect: hookline's side of
//! MQTT, over a link to rumqttd's router.
//!
//! The task owns everything about its client: the socket and its buffers, the login,
//! the subscriptions' options, the QoS flows in both directions and the will. It raises
//! each hook event where the thing happens, and writes the events of one socket read to
//! the spool before anything read is acknowledged.
//!
//! The router is used for what it is good at (matching, fan-out, shared subscriptions,
//! persistent sessions) and nothing else:
//! - it receives client publishes at QoS 0, with their origin attached (`origin`); the
//!   edge itself acknowledges them once the spool has them. A publish no subscription
//!   on this node can match never reaches it, and none reaches it retained: the edge
//!   keeps retained messages (`crate::retained`) and sends them after a SUBACK.
//! - it delivers to the edge at QoS 0 or 1; the edge caps each delivery at
//!   min(published QoS, granted QoS), speaks QoS 2 with the client itself, holds
//!   deliveries beyond the client's Receive Maximum, and acknowledges the router in the
//!   order the router delivered (it accepts no other order).
//! - the edge answers SUBSCRIBE, UNSUBSCRIBE and PINGREQ itself, and tells the router
//!   exactly once that the connection is gone.
//!
//! `handshake` is the CONNECT; `outbound` the way from the router to the client;
//! `cluster_session` the session in the cluster and its mailbox; this file the loop
//! between them, what the client sends, and the end.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{
    self, v4::V4, v5::V5, Disconnect, DisconnectReasonCode, LastWill, LastWillProperties, Packet, PingResp, Protocol, PubAck, PubAckReason,
    PubComp, PubCompReason, PubRec, PubRecReason, Publish, PublishProperties, SubAck, Subscribe, SubscribeProperties, SubscribeReasonCode,
    UnsubAck, UnsubAckReason, Unsubscribe,
};
use rumqttd::Notification;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod cluster_session;
mod handshake;
mod outbound;

use self::cluster_session::ClusterSession;
use self::handshake::Handshake;
use self::outbound::{Delivery, Slot, Unacked};
use super::origin::{self, Origin};
use super::registry::{Claim, CloseReason, Parked};
use super::subscription::Subscription;
use super::wire::{self, qos_pkid};
use super::Edge;
use crate::access::Action;
use crate::cluster::SessionRecord;
use crate::hooks::{Hook, HookEvent, Reason};
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::spool::{Push, SpoolBatch};

/// Topic aliases a client may use toward the gateway (CONNACK Topic Alias Maximum).
const TOPIC_ALIAS_MAX: u16 = 64;
/// Longest client id accepted.
const MAX_CLIENT_ID: usize = 256;
/// Socket reads start this small, double while reads fill them, and shrink back when
/// traffic drops: an idle device costs little, a busy one reads in large bites.
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 * 1024;
/// How long the last words to a closing client (a DISCONNECT) may take.
const GOODBYE_WAIT: Duration = Duration::from_secs(1);

static PROTOCOL_LOG: LogLimit = LogLimit::new();
static SPOOL_LOG: LogLimit = LogLimit::new();

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V5,
}

impl Version {
    fn read(self, buffer: &mut BytesMut, max: usize) -> Result<Packet, protocol::Error> {
        match self {
            Version::V4 => V4.read_mut(buffer, max),
            Version::V5 => V5.read_mut(buffer, max),
        }
    }

    fn write(self, packet: Packet, buffer: &mut BytesMut) -> Result<usize, protocol::Error> {
        match self {
            Version::V4 => V4.write(packet, buffer),
            Version::V5 => V5.write(packet, buffer),
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// DISCONNECT from the client; `true` when it asked for its will (MQTT 5 0x04).
    Disconnected {
        will: bool,
    },
    /// The socket closed or failed without a DISCONNECT.
    Closed,
    KeepAlive,
    Closing(CloseReason),
    /// The gateway is shutting down and the client sent new work.
    Shutdown,
    /// A packet MQTT does not allow; the MQTT 5 reason sent with DISCONNECT.
    Protocol(DisconnectReasonCode),
    /// The spool could not take this client's publish; it goes unacknowledged.
    SpoolRefused,
    /// The router dropped the connection (it already knows).
    Router(DisconnectReasonCode),
}

impl End {
    /// The `reason` of `client.disconnected`.
    fn hook_reason(self) -> Reason {
        match self {
            End::Disconnected { .. } => Reason::Normal,
            End::Closed | End::Shutdown | End::SpoolRefused | End::Closing(CloseReason::ShuttingDown) => Reason::Closed,
            End::KeepAlive => Reason::KeepaliveTimeout,
            End::Closing(CloseReason::TakenOver) => Reason::Takeover,
            End::Closing(CloseReason::Administrative) => Reason::Administrative,
            End::Protocol(_) | End::Router(_) => Reason::ProtocolError,
        }
    }

    /// The MQTT 5 DISCONNECT the gateway sends as it closes, if any.
    fn goodbye(self) -> Option<DisconnectReasonCode> {
        match self {
            End::Disconnected { .. } | End::Closed | End::SpoolRefused => None,
            End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Closing(CloseReason::TakenOver) => Some(DisconnectReasonCode::SessionTakenOver),
            End::Closing(CloseReason::Administrative) => Some(DisconnectReasonCode::AdministrativeAction),
            End::Shutdown | End::Closing(CloseReason::ShuttingDown) => Some(DisconnectReasonCode::ServerShuttingDown),
            End::Protocol(code) | End::Router(code) => Some(code),
        }
    }

    fn fires_will(self) -> bool {
        !matches!(self, End::Disconnected { will: false })
    }
}

/// Serves one accepted socket until its client is gone.
/// `identity` is what the client's verified TLS certificate names it, when
/// `broker.tls_identity` asks for that.
pub(super) async fn serve<S>(edge: Arc<Edge>, mut stream: S, peer: SocketAddr, identity: Option<Arc<str>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _live = edge.live_connection();
    let mut read = BytesMut::with_capacity(READ_MIN);
    let handshake = Handshake { edge: &edge, stream: &mut stream, peer, identity, read: &mut read };
    let Ok(Some(state)) = tokio::time::timeout(edge.limits.connect_timeout, handshake.run()).await else { return };
    let mut connection = Connection { stream, read, read_size: READ_MIN, state };
    let end = connection.run().await;
    connection.finish(end).await;
}

fn log_protocol_error(metrics: &Metrics, peer: &dyn std::fmt::Display, client: &str, what: &str, error: Option<&protocol::Error>) {
    Metrics::add(&metrics.mqtt_protocol_errors, 1);
    if let Some(skipped) = PROTOCOL_LOG.allow() {
        let error = error.map(|e| e.to_string()).unwrap_or_default();
        tracing::warn!(%peer, client, %error, skipped, "closing an MQTT connection: {what}");
    }
}

/// The client a connection serves, once its CONNECT is accepted.
pub(super) struct Client {
    pub id: Arc<str>,
    pub username: Arc<str>,
    pub shard: usize,
    /// The peer's `ip:port`, as logs and every event of the connection carry it.
    pub peer: Arc<str>,
    /// The session's next event number (`HookEvent::seq`); it goes on with a resumed
    /// session.
    pub next_seq: AtomicU64,
}

impl Client {
    /// An event about this client, stamped now.
    pub fn event(&self, hook: Hook) -> HookEvent {
        let mut event = HookEvent::new(hook, self.id.clone(), self.username.clone());
        event.peer = Some(self.peer.clone());
        event.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        event
    }
}

struct Connection<S> {
    stream: S,
    read: BytesMut,
    /// How much the next read asks for.
    read_size: usize,
    state: State,
}

/// Everything about a connected client but its socket.
struct State {
    edge: Arc<Edge>,
    version: Version,
    client: Client,
    keep_alive: u16,
    session: Session,
    claim: Claim,
    link_tx: LinkTx,
    link_rx: LinkRx,
    /// Packets for the router, sent together at the end of each batch.
    router_out: Vec<Packet>,
    /// The router paused this connection (its buffer was full) and waits to be told it
    /// may go on.
    wake_router: bool,
    /// Events of this batch, written to the spool before anything is written back.
    batch: SpoolBatch,
    /// A spool write failed during this batch: nothing staged since the last flush is
    /// on disk, so nothing of the batch may be acknowledged.
    spool_failed: bool,
    /// Bytes for the client.
    out: BytesMut,
    subscriptions: Vec<Subscription>,
    next_router_id: usize,
    /// The next packet id of a delivery the edge makes itself (see `own_pkid`).
    next_own_pkid: u16,
    /// MQTT 5 topic aliases the client set.
    aliases: HashMap<u16, Bytes>,
    /// The client's Receive Maximum: QoS 1/2 deliveries unacknowledged at once.
    receive_max: u16,
    /// The client's Maximum Packet Size.
    max_packet: usize,
    slots: VecDeque<Slot>,
    inflight: HashMap<u16, Unacked>,
    /// Deliveries waiting for the client's Receive Maximum, in order.
    held: VecDeque<Delivery>,
    /// Packet ids of QoS 2 publishes received and not yet released.
    qos2_received: HashSet<u16>,
    will: Option<(LastWill, Option<LastWillProperties>, u32)>,
    connected_ms: u64,
    /// The session in the cluster, when the gateway is one.
    cluster: Option<ClusterSession>,
    /// Served alone because this node had not caught up with the cluster when the client
    /// connected: once it has, the connection claims its session (this is the CONNECT's
    /// Clean Start) and goes on in the cluster.
    claim_when_caught_up: Option<bool>,
}

/// What becomes of a client's session: whether the router's copy ends with the link
/// (`router_clean`), and how long hookline keeps it after the connection ends. In a
/// cluster the router keeps no session: the cluster does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    router_clean: bool,
    /// Seconds the session outlives its connection; `u32::MAX`: for good (MQTT 3.1.1
    /// clean session 0, and MQTT 5's "does not expire").
    expiry: u32,
}

impl Session {
    /// From the CONNECT: MQTT 5's Clean Start and Session Expiry Interval (absent: 0),
    /// or MQTT 3.1.1's clean session (0 keeps the session for good).
    fn of(version: Version, clean_start: bool, expiry: Option<u32>) -> Session {
        let expiry = match version {
            Version::V5 => expiry.unwrap_or(0),
            _ if clean_start => 0,
            _ => u32::MAX,
        };
        Session { router_clean: clean_start && expiry == 0, expiry }
    }
}

/// What woke a connection up. It lives for one turn of the loop, on the stack: the size
/// of a notification costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Close(Option<CloseReason>),
    Read(std::io::Result<usize>),
    Router(Option<Notification>),
    RouterGone,
    KeepAlive,
    Mail,
    CaughtUp,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Serves the client until the connection ends, and says how.
    async fn run(&mut self) -> End {
        let mut last_read = tokio::time::Instant::now();
        loop {
            if let Err(end) = self.flush().await {
                return end;
            }
            // MQTT: a client silent for one and a half keep-alives is gone; 0 means never.
            let keep_alive = self.state.keep_alive;
            let deadline = last_read + Duration::from_millis(keep_alive as u64 * 1500);
            self.read.reserve(self.read_size);
            let mail = self.state.cluster.as_ref().map(|c| c.wake.clone());
            let mail = async {
                match mail {
                    Some(wake) => wake.notified().await,
                    None => std::future::pending().await,
                }
            };
            let cluster = self.state.edge.cluster.clone().filter(|_| self.state.claim_when_caught_up.is_some());
            let caught_up = async {
                match cluster {
                    Some(cluster) => cluster.caught_up().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                reason = self.state.claim.close.recv() => Wake::Close(reason),
                read = self.stream.read_buf(&mut self.read) => Wake::Read(read),
                note = self.state.link_rx.next() => note.map_or(Wake::RouterGone, Wake::Router),
                _ = tokio::time::sleep_until(deadline), if keep_alive > 0 => Wake::KeepAlive,
                _ = mail => Wake::Mail,
                _ = caught_up => Wake::CaughtUp,
            };
            let step = match wake {
                Wake::Close(reason) => Err(End::Closing(reason.unwrap_or(CloseReason::Administrative))),
                Wake::Read(Ok(0) | Err(_)) => Err(End::Closed),
                Wake::Read(Ok(n)) => {
                    last_read = tokio::time::Instant::now();
                    self.fit_read_size(n);
                    self.state.incoming(&mut self.read)
                }
                Wake::RouterGone => Err(End::Router(DisconnectReasonCode::UnspecifiedError)),
                Wake::Router(note) => self.router_notifications(note),
                Wake::KeepAlive => Err(End::KeepAlive),
                Wake::Mail => {
                    self.state.take_mail();
                    Ok(())
                }
                Wake::CaughtUp => {
                    self.state.join_cluster().await;
                    Ok(())
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Takes what the router has for this client, as much as is there without waiting.
    fn router_notifications(&mut self, first: Option<Notification>) -> Result<(), End> {
        let mut next = first;
        while let Some(note) = next {
            self.state.notification(note)?;
            next = match self.state.link_rx.next().now_or_never() {
                Some(Ok(note)) => note,
                Some(Err(_)) => return Err(End::Router(DisconnectReasonCode::UnspecifiedError)),
                None => None,
            };
        }
        Ok(())
    }

    /// Reads ask for more while they come back full and for less when traffic drops; a
    /// read buffer much larger than the traffic needs is given back while it is empty.
    fn fit_read_size(&mut self, read: usize) {
        if read >= self.read_size {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        } else if read < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(READ_MIN);
        }
    }

    /// Ends a batch: the spool gets its events before anything read is acknowledged,
    /// then the router its packets, then (a changed session in Kafka, in a cluster) the
    /// client its bytes.
    async fn flush(&mut self) -> Result<(), End> {
        let state = &mut self.state;
        // Subscriptions ahead of the batch's other router packets go before the spool
        // write: a publish another client sends once this client's SUBSCRIBE is out then
        // finds the subscription, as on a broker handling packets in arrival order. Those
        // behind a publish keep their place: a client's own packets stay in order.
        let early = state.router_out.iter().take_while(|p| matches!(p, Packet::Subscribe(..) | Packet::Unsubscribe(..))).count();
        if early > 0 {
            let rest = state.router_out.split_off(early);
            state.send_router().await?;
            state.router_out = rest;
        }
        if state.spool_failed || state.edge.spool.flush(&mut state.batch).is_err() {
            // The spool logs and counts the failure; nothing of this batch is acknowledged.
            return Err(End::SpoolRefused);
        }
        // After the spool has the batch's `message.acked` events.
        state.write_session();
        state.send_router().await?;
        state.session_written().await;
        if !state.out.is_empty() {
            let written = async {
                self.stream.write_all(&state.out).await?;
                self.stream.flush().await
            };
            written.await.map_err(|_| End::Closed)?;
            state.out.clear();
            if state.out.capacity() > READ_MAX {
                state.out = BytesMut::new();
            }
        }
        if self.read.is_empty() && self.read.capacity() > 2 * self.read_size {
            self.read = BytesMut::new();
        }
        if std::mem::take(&mut state.wake_router) {
            state.link_rx.wake().await.map_err(|_| End::Router(DisconnectReasonCode::UnspecifiedError))?;
        }
        Ok(())
    }

    /// The one end of a connection: last words to the client, the router told once, the
    /// session parked or forgotten, the hook raised, the will set off.
    async fn finish(mut self, end: End) {
        let state = &mut self.state;
        if end == End::SpoolRefused {
            state.out.clear();
        }
        if let (Some(reason_code), Version::V5) = (end.goodbye(), state.version) {
            state.write(Packet::Disconnect(Disconnect { reason_code }, None));
        }
        if state.spool_failed || state.edge.spool.flush(&mut state.batch).is_err() {
            state.out.clear();
        }
        if !state.out.is_empty() {
            let goodbye = async {
                self.stream.write_all(&state.out).await?;
                self.stream.shutdown().await
            };
            let _ = tokio::time::timeout(GOODBYE_WAIT, goodbye).await;
        }
        match end {
            End::Router(_) => state.router_out.clear(),
            _ => {
                let reason_code = DisconnectReasonCode::NormalDisconnection;
                state.router_out.push(Packet::Disconnect(Disconnect { reason_code }, None));
                let _ = state.send_router().await;
            }
        }
        let edge = state.edge.clone();
        // The session's last numbered events before it is parked with its next number.
        let mut event = state.client.event(Hook::ClientDisconnected);
        event.reason = Some(end.hook_reason());
        edge.spool.push(state.client.shard, &event);
        // In a cluster a delayed will of a session that outlives the connection is kept
        // in the session, pending: whichever node looks after the session fires it.
        let mut pending_will = None;
        if let (true, Some((will, props, delay))) = (end.fires_will(), state.will.take()) {
            match state.cluster.is_some() && delay > 0 && state.session.expiry > 0 {
                true => pending_will = Some(cluster_session::stored_will(&will, delay)),
                false => edge.publish_will(&state.client, will, props, delay).await,
            }
        }
        let record = state.session_record(false).map(|record| SessionRecord { will: pending_will, ..record });
        let subscriptions = std::mem::take(&mut state.subscriptions);
        if let (Some(session), Some(record)) = (state.cluster.take(), record) {
            let taken_over = end == End::Closing(CloseReason::TakenOver);
            // A session taken over with Clean Start does not get them: it starts empty.
            let resumed = !taken_over || session.cluster.session(&state.client.id).is_some_and(|s| !s.fresh);
            if record.expiry > 0 && resumed {
                state.repost_unacked(&session.cluster);
            }
            edge.forget_filters(subscriptions.iter());
            edge.leave_cluster_session(&state.client.id, &session.cluster, &session.wake, record, taken_over);
            if !state.session.router_clean && !matches!(end, End::Router(_)) {
                // Linked as a session of its own before it joined the cluster.
                edge.forget_router_session(&state.client.id).await;
            }
        } else {
            match state.session.expiry {
                0 => {
                    edge.forget_filters(subscriptions.iter());
                    if !state.session.router_clean && !matches!(end, End::Router(_)) {
                        edge.forget_router_session(&state.client.id).await;
                    }
                }
                expiry => {
                    let next_seq = state.client.next_seq.load(Ordering::Relaxed);
                    edge.park_session(state.client.id.clone(), Parked { subscriptions, next_seq }, expiry)
                }
            }
        }
        let _ = state.claim.ended.send(true);
        edge.registry.release(&state.client.id, state.claim.serial);
        edge.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl State {
    fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// Encodes a packet for the client. Only a publish can fail to encode, and those are
    /// written by `deliver`, which checks.
    fn write(&mut self, packet: Packet) {
        let _ = self.version.write(packet, &mut self.out);
    }

    /// The router swaps its own scratch buffer (sized for 200 packets) into each link it
    /// reads, so every link that ever sent a packet would keep one: a batch with nothing
    /// for the router gives it back (a link busy with the router keeps it). Only an empty
    /// buffer is shrunk, and the router touches a link's buffer only when notified, which
    /// an empty one is not.
    fn give_back_router_buffer(&mut self) {
        let mut buffer = self.link_tx.buffer();
        if buffer.is_empty() && buffer.capacity() > 0 {
            buffer.shrink_to_fit();
        }
    }

    /// Hands the batch's packets to the router. The router takes a link's whole buffer
    /// per notification, so a notification is pending exactly while the buffer holds
    /// packets: notify only when it was empty. A second notification would reach the
    /// router after the buffer it announced was taken, and after a DISCONNECT would name
    /// a connection that is gone (or, its id reused, another one).
    async fn send_router(&mut self) -> Result<(), End> {
        let Some(last) = self.router_out.pop() else {
            self.give_back_router_buffer();
            return Ok(());
        };
        {
            let mut buffer = self.link_tx.buffer();
            let pending = !buffer.is_empty();
            buffer.extend(self.router_out.drain(..));
            if pending {
                buffer.push_back(last);
                return Ok(());
            }
        }
        // Nothing pending: the router leaves the buffer alone until this notification.
        match self.link_tx.send(last).await {
            Ok(_) => Ok(()),
            Err(_) => Err(End::Router(DisconnectReasonCode::UnspecifiedError)),
        }
    }

    fn protocol_error(&self, what: &str, error: Option<&protocol::Error>, reason: DisconnectReasonCode) -> End {
        log_protocol_error(&self.edge.metrics, &self.client.peer, &self.client.id, what, error);
        End::Protocol(reason)
    }

    /// Decodes and handles every whole packet read so far.
    fn incoming(&mut self, read: &mut BytesMut) -> Result<(), End> {
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

    /// Stages an event of this connection; see `spool_failed` for a failed write.
    fn stage(&mut self, event: &HookEvent) -> Push {
        match self.edge.spool.stage(&mut self.batch, self.client.shard, event) {
            Ok(push) => push,
            Err(_) => {
                self.spool_failed = true;
                Push::Rejected
            }
        }
    }

    fn packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(publish, props) => return self.publish(publish, props),
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

    fn publish(&mut self, mut publish: Publish, mut props: Option<PublishProperties>) -> Result<(), End> {
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
                    if let Some(skipped) = SPOOL_LOG.allow() {
                        tracing::warn!(client = %self.client.id, peer = %self.client.peer, skipped,
                            "spool full or failing: closing this MQTT 3.1.1 client without acknowledging its publish (it will resend)");
                    }
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

    /// Hands an accepted publish to the router, unless nothing could receive it: no
    /// retain flag and no subscription on this node that matches. In a cluster, sessions
    /// the router here does not serve get it through their mailbox.
    fn route(&mut self, publish: Publish, mut props: Option<PublishProperties>, qos: u8, published_ms: u64) {
        let retain = publish.retain;
        let origin = Origin { qos, retain, published_ms, from: self.client.id.clone(), ack: None };
        self.edge.post_elsewhere(&publish.topic, &publish.payload, &props, &origin);
        if retain {
            self.edge.retain(&publish.topic, &publish.payload, &props, &origin);
        }
        if !self.edge.any_subscriber(&publish.topic) {
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
                self.edge.remember_filter(&matcher);
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
                self.subscriptions.len() - 1
            }
        };
        let subscription = &mut self.subscriptions[index];
        subscription.update(&requested, existing.is_some(), client_sub_id);
        // One SUBSCRIBE per filter: the router gives every filter of a packet the
        // packet's subscription identifier.
        let router_props = SubscribeProperties { id: Some(subscription.router_id), user_properties: Vec::new() };
        let router_subscribe = Subscribe { pkid, filters: vec![subscription.router_filter()] };
        let granted = subscription.granted;
        self.router_out.push(Packet::Subscribe(router_subscribe, Some(router_props)));
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
            self.edge.forget_filters([&subscription]);
            self.router_out.push(Packet::Unsubscribe(Unsubscribe { pkid: unsubscribe.pkid, filters: vec![filter.clone()] }, None));
            let mut event = self.client.event(Hook::SessionUnsubscribed);
            event.topic = Bytes::from(filter);
            self.stage(&event);
            reasons.push(UnsubAckReason::Success);
        }
        self.session_changed();
        self.write(Packet::UnsubAck(UnsubAck { pkid: unsubscribe.pkid, reasons }, None));
    }
}
