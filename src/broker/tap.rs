//! The hook tap: an MQTT codec that wraps rumqttd's own v4/v5 codecs and raises hook
//! events from the packets it decodes and encodes.
//!
//! rumqttd's `Server` clones its protocol value once per accepted connection, so each
//! `TapCodec` clone is one connection: it owns that connection's state (client id,
//! username, packet ids in flight, pending SUBSCRIBEs) and its `Drop` marks the end of
//! the connection. It sees the CONNECT before rumqttd has checked it, so a client counts
//! as connected only once a successful CONNACK is written.
//!
//! Every event is appended to the spool before the packet goes on to rumqttd, so an
//! acknowledged publish is always in the spool. The append blocks this connection only
//! where `buffer.when_full = "backpressure"` or `buffer.fsync = "always"` say so.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::{
    self, v4::V4, v5::V5, ConnectReturnCode, DisconnectReasonCode, LastWill, Login, Packet, PubAckReason,
    PubRecReason, Protocol, SubscribeReasonCode, UnsubAckReason,
};

use super::publishers::PublisherIndex;
use super::wire;
use crate::access::{Access, Action, DENIED_TOPIC, VOID_FILTER};
use crate::hooks::{Hook, HookEvent};
use crate::metrics::Metrics;
use crate::spool::{Push, Spool, SpoolBatch};

/// Staged events written at once when a read brings this many bytes of them.
const FLUSH_AT: usize = 64 * 1024;

/// State shared by every connection of a listener.
pub struct TapShared {
    pub spool: Arc<Spool>,
    pub publishers: PublisherIndex,
    pub metrics: Arc<Metrics>,
    pub access: Arc<Access>,
    /// Which connection currently owns each client id; an older connection that finds
    /// a newer owner on its way out was taken over.
    owners: Mutex<HashMap<Arc<str>, u64>>,
    next_serial: AtomicU64,
    /// Shutdown has begun: connections are closed when they send new work, so no new
    /// publish is accepted while the spool drains.
    closing: AtomicBool,
}

impl TapShared {
    pub fn new(spool: Arc<Spool>, publishers: PublisherIndex, metrics: Arc<Metrics>, access: Arc<Access>) -> TapShared {
        TapShared {
            spool,
            publishers,
            metrics,
            access,
            owners: Mutex::default(),
            next_serial: AtomicU64::new(1),
            closing: AtomicBool::new(false),
        }
    }

    /// Closes each connection when it next sends new work (CONNECT, PUBLISH,
    /// SUBSCRIBE, UNSUBSCRIBE), unread: shutdown finishes the work in flight instead of
    /// taking more. Unacknowledged publishes are resent by their clients later.
    pub fn close_connections(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, u64>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's codec. Cloning gives a fresh connection sharing the same queue.
pub struct TapCodec {
    shared: Arc<TapShared>,
    state: Mutex<Connection>,
}

#[derive(Clone, Copy)]
enum Version {
    Unknown,
    V4,
    V5,
}

/// Per-connection state. Locked only by this connection's own task (reads take `&mut`,
/// writes take `&self`), so the lock is never contended.
struct Connection {
    version: Version,
    serial: u64,
    /// Set from CONNECT; the client id may still be replaced by the broker's assigned one.
    client: Option<Client>,
    connected: bool,
    will: Option<(LastWill, u32)>,
    clean_disconnect: bool,
    protocol_error: bool,
    last_read: Instant,
    /// Outgoing QoS 1/2 publishes by packet id, waiting for PUBACK / PUBREC.
    inflight: HashMap<u16, Delivered>,
    /// SUBSCRIBE / UNSUBSCRIBE filters by packet id, waiting for their ack; a
    /// subscribe filter is `None` where the ACL refused it.
    pending_subscribe: HashMap<u16, Vec<Option<String>>>,
    /// Packet ids of QoS 1/2 publishes refused, whose PUBACK / PUBREC says why (MQTT 5).
    refused_pkids: Vec<(u16, PublishRefusal)>,
    /// The spool refused a publish of this MQTT 3.1.1 client, which has no reason codes:
    /// close the connection before the publish is acknowledged.
    close_unacknowledged: bool,
    /// Events of the packets read so far and not yet written to the spool: written when
    /// the read runs out of bytes, before anything is written back to the client (so
    /// before any acknowledgement), when it grows past `FLUSH_AT`, and at the end.
    batch: SpoolBatch,
    pending_unsubscribe: HashMap<u16, Vec<String>>,
    /// MQTT 5 topic aliases, incoming and outgoing.
    aliases_in: HashMap<u16, Bytes>,
    aliases_out: HashMap<u16, Bytes>,
}

/// Why a publish was not accepted, as its PUBACK / PUBREC tells an MQTT 5 client.
#[derive(Clone, Copy)]
enum PublishRefusal {
    NotAuthorized,
    QuotaExceeded,
}

struct Client {
    id: Arc<str>,
    username: Arc<str>,
    keep_alive: u16,
    shard: usize,
}

struct Delivered {
    topic: Bytes,
    payload: Bytes,
    qos: u8,
    from: Option<Arc<str>>,
}

impl TapCodec {
    pub fn new(shared: Arc<TapShared>) -> TapCodec {
        let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
        TapCodec {
            shared,
            state: Mutex::new(Connection {
                version: Version::Unknown,
                serial,
                client: None,
                connected: false,
                will: None,
                clean_disconnect: false,
                protocol_error: false,
                last_read: Instant::now(),
                inflight: HashMap::new(),
                pending_subscribe: HashMap::new(),
                refused_pkids: Vec::new(),
                close_unacknowledged: false,
                batch: SpoolBatch::default(),
                pending_unsubscribe: HashMap::new(),
                aliases_in: HashMap::new(),
                aliases_out: HashMap::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, client: &Client, event: HookEvent) {
        self.shared.spool.push(client.shard, &event);
    }
}

impl Clone for TapCodec {
    fn clone(&self) -> Self {
        TapCodec::new(self.shared.clone())
    }
}

impl Protocol for TapCodec {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, protocol::Error> {
        // Shutting down: acknowledgements of work in flight still come in, new work not.
        if self.shared.closing.load(Ordering::Relaxed) && stream.first().is_some_and(|&b| wire::starts_work(wire::packet_type(b))) {
            return Err(protocol::Error::IncorrectPacketFormat);
        }
        let shared = self.shared.clone();
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Version::Unknown = state.version {
            state.version = match wire::connect_level(stream) {
                Some(5) => Version::V5,
                Some(_) => Version::V4,
                // Too big whatever it is: rumqttd's codec refuses it from the fixed
                // header, without waiting for the rest.
                None if wire::fixed_header(stream).is_some_and(|(_, remaining, _)| remaining > max_size) => Version::V4,
                None if !wire::unreadable_as_connect(stream) => {
                    return Err(protocol::Error::InsufficientBytes(stream.len().max(1) + 1))
                }
                // The first packet must be a CONNECT; no need to wait for the rest of it.
                None => {
                    let error = match (stream.first().map(|&b| wire::packet_type(b)), wire::fixed_header(stream)) {
                        (Some(kind), _) if kind != wire::CONNECT => protocol::Error::InvalidPacketType(kind),
                        (_, Some(_)) => protocol::Error::MalformedPacket,
                        (_, None) => protocol::Error::MalformedRemainingLength,
                    };
                    return Err(refuse(&shared, state, Refusal::Malformed(error)));
                }
            };
        }
        let (publish_qos, publish_pkid) = match stream.first() {
            Some(&b) if wire::packet_type(b) == wire::PUBLISH => wire::publish_qos_pkid(stream).unwrap_or((0, 0)),
            Some(&b) if wire::sent_only_by_servers(wire::packet_type(b)) => {
                let error = protocol::Error::InvalidPacketType(wire::packet_type(b));
                return Err(refuse(&shared, state, Refusal::Malformed(error)));
            }
            _ => (0, 0),
        };
        let result = match state.version {
            Version::V5 => V5.read_mut(stream, max_size),
            _ => V4.read_mut(stream, max_size),
        };
        let mut packet = match result {
            Ok(packet) => packet,
            // rumqttd asks for more only once it handed on everything read so far: the
            // end of a read batch.
            Err(protocol::Error::InsufficientBytes(n)) => {
                flush(&shared, state)?;
                return Err(protocol::Error::InsufficientBytes(n));
            }
            Err(protocol::Error::PayloadSizeLimitExceeded(size)) => {
                return Err(refuse(&shared, state, Refusal::Oversized { size, limit: max_size }))
            }
            Err(e) => return Err(refuse(&shared, state, Refusal::Malformed(e))),
        };
        // rumqttd's decoder takes any bytes as a topic name; its router would then drop
        // the connection only after acknowledging the publish (not UTF-8), or store a
        // wildcard topic that subscribers' filters match as if it were a literal.
        if let Some(why) = invalid_topic(&packet) {
            return Err(refuse(&shared, state, Refusal::BadTopic(why)));
        }
        state.last_read = Instant::now();
        let staged = observe_incoming(&shared, state, &mut packet, publish_qos, publish_pkid);
        // A failed spool write lost what this connection staged: close it unacknowledged.
        if staged.is_err() || state.close_unacknowledged {
            return Err(protocol::Error::IncorrectPacketFormat);
        }
        if state.batch.len() >= FLUSH_AT {
            flush(&shared, state)?;
        }
        Ok(packet)
    }

    fn write(&self, mut packet: Packet, buffer: &mut BytesMut) -> Result<usize, protocol::Error> {
        let mut state = self.state();
        // Whatever this packet acknowledges is in the spool before it goes out.
        flush(&self.shared, &mut state)?;
        let pending = observe_outgoing_before(&self.shared, &mut state, &mut packet);
        let start = buffer.len();
        let written = match state.version {
            Version::V5 => V5.write(packet, buffer)?,
            _ => V4.write(packet, buffer)?,
        };
        if let Some(mut delivered) = pending {
            let Some(client) = &state.client else { return Ok(written) };
            let (qos, pkid) = wire::publish_qos_pkid(&buffer[start..]).unwrap_or((0, 0));
            delivered.qos = qos;
            let mut event = HookEvent::new(Hook::MessageDelivered, client.id.clone(), client.username.clone());
            event.topic = delivered.topic.clone();
            event.payload = delivered.payload.clone();
            event.qos = qos;
            event.from = delivered.from.clone();
            self.emit(client, event);
            if qos > 0 {
                state.inflight.insert(pkid, delivered);
            }
        }
        Ok(written)
    }
}

/// Writes the connection's staged events to the spool. A failed write closes the
/// connection before anything staged is acknowledged.
fn flush(shared: &TapShared, state: &mut Connection) -> Result<(), protocol::Error> {
    shared.spool.flush(&mut state.batch).map_err(|_| protocol::Error::IncorrectPacketFormat)
}

/// Why the tap closes a connection.
enum Refusal {
    /// rumqttd's codec could not decode the packet.
    Malformed(protocol::Error),
    /// The packet's remaining length is over `broker.max_packet_size`.
    Oversized { size: usize, limit: usize },
    /// A PUBLISH or will topic MQTT forbids (see `wire::invalid_topic_name`).
    BadTopic(&'static str),
}

/// Notes a refused packet (rumqttd then closes the connection) and logs one in a
/// thousand of each kind, so a flood of bad clients cannot flood the log.
fn refuse(shared: &TapShared, state: &mut Connection, refusal: Refusal) -> protocol::Error {
    state.protocol_error = true;
    let first_of_1000 = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000);
    let client_id = state.client.as_ref().map_or("(before CONNECT)", |c| &*c.id);
    let metrics = &shared.metrics;
    let logged = first_of_1000(&metrics.mqtt_protocol_errors);
    match refusal {
        Refusal::Oversized { size, limit } => {
            if first_of_1000(&metrics.mqtt_oversized_packets) {
                tracing::warn!(
                    client_id,
                    size,
                    limit,
                    total = Metrics::get(&metrics.mqtt_oversized_packets),
                    "MQTT packet of {size} bytes (after its fixed header) is over broker.max_packet_size = {limit}: \
                     closing that connection; raise broker.max_packet_size if such packets are legitimate \
                     (logged for 1 in 1000)"
                );
            }
            protocol::Error::PayloadSizeLimitExceeded(size)
        }
        Refusal::BadTopic(why) => {
            if logged {
                tracing::warn!(client_id, "{why}: closing that connection (logged for 1 in 1000 protocol errors)");
            }
            protocol::Error::MalformedPacket
        }
        Refusal::Malformed(error) => {
            if logged {
                tracing::warn!(
                    client_id,
                    %error,
                    total = Metrics::get(&metrics.mqtt_protocol_errors),
                    "malformed MQTT packet: closing that connection (logged for 1 in 1000)"
                );
            }
            error
        }
    }
}

/// What is wrong with the topic of a PUBLISH or of a CONNECT's will, if anything.
fn invalid_topic(packet: &Packet) -> Option<&'static str> {
    match packet {
        Packet::Publish(publish, _) => wire::invalid_topic_name(&publish.topic),
        Packet::Connect(_, _, Some(will), _, _) => wire::invalid_topic_name(&will.topic),
        _ => None,
    }
}

/// Tells the client's hook chain, and the audit trail, that the ACL refused something.
fn denied(shared: &TapShared, client: &Client, batch: &mut SpoolBatch, action: &'static str, topic: Bytes) -> io::Result<()> {
    Metrics::add(&shared.metrics.access_denied, 1);
    if shared.metrics.access_denied.load(Ordering::Relaxed) % 1000 == 1 {
        tracing::warn!(client_id = %client.id, action, topic = %String::from_utf8_lossy(&topic), "denied by the ACL (logged for 1 in 1000)");
    }
    let mut event = HookEvent::new(Hook::AccessDenied, client.id.clone(), client.username.clone());
    event.topic = topic;
    event.reason = Some(action);
    shared.spool.stage(batch, client.shard, &event).map(drop)
}

fn allowed(shared: &TapShared, client: &Client, action: Action, topic: &[u8]) -> bool {
    std::str::from_utf8(topic).is_ok_and(|t| shared.access.allows(action, &client.id, &client.username, t))
}

/// Raises events for a packet a client sent, and applies the ACL to it: a refused
/// publish is diverted to a topic nobody can read, a refused filter to one nobody can
/// write, a refused will is dropped. Fails when a spool write fails.
fn observe_incoming(shared: &TapShared, state: &mut Connection, packet: &mut Packet, publish_qos: u8, publish_pkid: u16) -> io::Result<()> {
    match packet {
        Packet::Connect(connect, _, will, will_props, login) => {
            // rumqttd refuses a CONNECT without a login once authentication is on; an
            // empty one lets `Access::authenticate` decide about anonymous clients.
            let login = login.get_or_insert_with(|| Login { username: String::new(), password: String::new() });
            let username: Arc<str> = login.username.as_str().into();
            let id: Arc<str> = connect.client_id.as_str().into();
            // Claim the id now, before the broker sees this CONNECT: the connection it
            // replaces can only end after that, and will find it was taken over.
            if !id.is_empty() {
                shared.owners().insert(id.clone(), state.serial);
            }
            state.client = Some(Client {
                id,
                username,
                keep_alive: connect.keep_alive,
                shard: shared.spool.shard_for(&connect.client_id),
            });
            // MQTT allows keep-alive 0 ("no keep-alive"), which many devices use, but
            // rumqttd refuses such clients; the longest keep-alive is the closest it has.
            if connect.keep_alive == 0 {
                connect.keep_alive = u16::MAX;
            }
            let client = state.client.as_ref().expect("set just above");
            if will.as_ref().is_some_and(|w| !allowed(shared, client, Action::Publish, &w.topic)) {
                let topic = will.take().map(|w| w.topic).unwrap_or_default();
                denied(shared, client, &mut state.batch, "will", topic)?;
            }
            let delay = will_props.as_ref().and_then(|p| p.delay_interval).unwrap_or(0);
            state.will = will.clone().map(|w| (w, delay));
        }
        Packet::Publish(publish, props) => {
            let Some(client) = &state.client else { return Ok(()) };
            let alias = props.as_ref().and_then(|p| p.topic_alias);
            let topic = resolve_alias(&mut state.aliases_in, &publish.topic, alias);
            let refusal = if !allowed(shared, client, Action::Publish, &topic) {
                denied(shared, client, &mut state.batch, "publish", topic)?;
                PublishRefusal::NotAuthorized
            } else {
                shared.publishers.record(&topic, &publish.payload, &client.id);
                let mut event = HookEvent::new(Hook::MessagePublish, client.id.clone(), client.username.clone());
                event.topic = topic;
                event.payload = publish.payload.clone();
                event.qos = publish_qos;
                if shared.spool.stage(&mut state.batch, client.shard, &event)? != Push::Rejected {
                    return Ok(());
                }
                if matches!(state.version, Version::V4) {
                    tracing::warn!(client_id = %client.id, "spool full or failing: closing this MQTT 3.1.1 client without acknowledging its publish (it will resend)");
                    state.close_unacknowledged = true;
                }
                PublishRefusal::QuotaExceeded
            };
            // A refused publish goes to a topic nobody can read: subscribers must not
            // see what the gateway did not accept.
            publish.topic = Bytes::from_static(DENIED_TOPIC.as_bytes());
            if let Some(props) = props {
                props.topic_alias = None;
            }
            if publish_qos > 0 {
                state.refused_pkids.push((publish_pkid, refusal));
            }
        }
        Packet::PubAck(ack, _) => {
            let ok = matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers);
            acked(shared, state, ack.pkid, ok)?;
        }
        Packet::PubRec(rec, _) => {
            let ok = matches!(rec.reason, PubRecReason::Success | PubRecReason::NoMatchingSubscribers);
            acked(shared, state, rec.pkid, ok)?;
        }
        Packet::Subscribe(subscribe, _) => {
            let Some(client) = &state.client else { return Ok(()) };
            let mut filters = Vec::with_capacity(subscribe.filters.len());
            for filter in &mut subscribe.filters {
                if allowed(shared, client, Action::Subscribe, filter.path.as_bytes()) {
                    filters.push(Some(filter.path.clone()));
                } else {
                    let path = std::mem::replace(&mut filter.path, VOID_FILTER.to_string());
                    denied(shared, client, &mut state.batch, "subscribe", Bytes::from(path))?;
                    filters.push(None);
                }
            }
            state.pending_subscribe.insert(subscribe.pkid, filters);
        }
        Packet::Unsubscribe(unsubscribe, _) => {
            state.pending_unsubscribe.insert(unsubscribe.pkid, unsubscribe.filters.clone());
        }
        Packet::Disconnect(disconnect, _) => {
            state.clean_disconnect = disconnect.reason_code != DisconnectReasonCode::DisconnectWithWillMessage;
        }
        _ => {}
    }
    Ok(())
}

/// The full topic of an MQTT 5 publish that may use a topic alias: an empty topic means
/// "the topic last sent with this alias"; a non-empty one (re)binds the alias.
fn resolve_alias(aliases: &mut HashMap<u16, Bytes>, topic: &Bytes, alias: Option<u16>) -> Bytes {
    match alias {
        Some(alias) if topic.is_empty() => aliases.get(&alias).cloned().unwrap_or_default(),
        Some(alias) => {
            aliases.insert(alias, topic.clone());
            topic.clone()
        }
        None => topic.clone(),
    }
}

fn take_refusal(state: &mut Connection, pkid: u16) -> Option<PublishRefusal> {
    let i = state.refused_pkids.iter().position(|(p, _)| *p == pkid)?;
    Some(state.refused_pkids.swap_remove(i).1)
}

/// A subscriber acknowledged one of our outgoing publishes.
fn acked(shared: &TapShared, state: &mut Connection, pkid: u16, ok: bool) -> io::Result<()> {
    let (Some(delivered), Some(client)) = (state.inflight.remove(&pkid), &state.client) else {
        return Ok(());
    };
    if !ok {
        return Ok(());
    }
    let mut event = HookEvent::new(Hook::MessageAcked, client.id.clone(), client.username.clone());
    event.topic = delivered.topic;
    event.payload = delivered.payload;
    event.qos = delivered.qos;
    event.from = delivered.from;
    shared.spool.stage(&mut state.batch, client.shard, &event).map(drop)
}

/// Raises events for a packet about to be written to a client, and tells an MQTT 5
/// client which of its publishes and filters the ACL refused. An outgoing publish is
/// returned instead: its QoS and packet id are only known once it is encoded.
fn observe_outgoing_before(shared: &TapShared, state: &mut Connection, packet: &mut Packet) -> Option<Delivered> {
    let v5 = matches!(state.version, Version::V5);
    match packet {
        Packet::PubAck(ack, _) => {
            if let (Some(refusal), true) = (take_refusal(state, ack.pkid), v5) {
                ack.reason = match refusal {
                    PublishRefusal::NotAuthorized => PubAckReason::NotAuthorized,
                    PublishRefusal::QuotaExceeded => PubAckReason::QuotaExceeded,
                };
            }
            None
        }
        Packet::PubRec(rec, _) => {
            if let (Some(refusal), true) = (take_refusal(state, rec.pkid), v5) {
                rec.reason = match refusal {
                    PublishRefusal::NotAuthorized => PubRecReason::NotAuthorized,
                    PublishRefusal::QuotaExceeded => PubRecReason::QuotaExceeded,
                };
            }
            None
        }
        Packet::ConnAck(ack, props) => {
            if ack.code != ConnectReturnCode::Success || state.connected {
                return None;
            }
            let assigned = props.as_ref().and_then(|p| p.assigned_client_identifier.as_deref());
            let client = state.client.as_mut()?;
            if let Some(id) = assigned {
                client.id = id.into();
                client.shard = shared.spool.shard_for(id);
                shared.owners().insert(client.id.clone(), state.serial);
            }
            state.connected = true;
            shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
            let event = HookEvent::new(Hook::ClientConnected, client.id.clone(), client.username.clone());
            shared.spool.push(client.shard, &event);
            None
        }
        Packet::Publish(publish, props) => {
            let alias = props.as_ref().and_then(|p| p.topic_alias);
            let topic = resolve_alias(&mut state.aliases_out, &publish.topic, alias);
            Some(Delivered {
                from: shared.publishers.lookup(&topic, &publish.payload),
                topic,
                payload: publish.payload.clone(),
                qos: 0,
            })
        }
        Packet::SubAck(ack, _) => {
            let filters = state.pending_subscribe.remove(&ack.pkid)?;
            let client = state.client.as_ref()?;
            for (filter, code) in filters.into_iter().zip(ack.return_codes.iter_mut()) {
                let Some(filter) = filter else {
                    *code = if v5 { SubscribeReasonCode::NotAuthorized } else { SubscribeReasonCode::Failure };
                    continue;
                };
                let granted = match code {
                    SubscribeReasonCode::QoS0 => 0,
                    SubscribeReasonCode::QoS1 => 1,
                    SubscribeReasonCode::QoS2 => 2,
                    SubscribeReasonCode::Success(qos) => *qos as u8,
                    _ => continue,
                };
                let mut event = HookEvent::new(Hook::SessionSubscribed, client.id.clone(), client.username.clone());
                event.topic = Bytes::from(filter);
                event.qos = granted;
                shared.spool.push(client.shard, &event);
            }
            None
        }
        Packet::UnsubAck(ack, _) => {
            let filters = state.pending_unsubscribe.remove(&ack.pkid)?;
            let client = state.client.as_ref()?;
            for (i, filter) in filters.into_iter().enumerate() {
                // MQTT 3.1.1 UNSUBACKs carry no reasons: every filter succeeded.
                if ack.reasons.get(i).is_some_and(|r| *r != UnsubAckReason::Success) {
                    continue;
                }
                let mut event = HookEvent::new(Hook::SessionUnsubscribed, client.id.clone(), client.username.clone());
                event.topic = Bytes::from(filter);
                shared.spool.push(client.shard, &event);
            }
            None
        }
        _ => None,
    }
}

impl Drop for TapCodec {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = flush(&shared, state);
        let Some(client) = state.client.as_ref() else { return };
        let taken_over = {
            let mut owners = shared.owners();
            match owners.get(&client.id) {
                Some(&serial) if serial == state.serial => {
                    owners.remove(&client.id);
                    false
                }
                Some(_) => true,
                None => false,
            }
        };
        if !state.connected {
            return;
        }
        shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        let keepalive_expired = client.keep_alive > 0
            && state.last_read.elapsed() >= Duration::from_secs(client.keep_alive as u64);
        let reason = if taken_over {
            "takeover"
        } else if state.clean_disconnect {
            "normal"
        } else if state.protocol_error {
            "protocol_error"
        } else if keepalive_expired {
            "keepalive_timeout"
        } else {
            "closed"
        };
        let mut event = HookEvent::new(Hook::ClientDisconnected, client.id.clone(), client.username.clone());
        event.reason = Some(reason);
        shared.spool.push(client.shard, &event);

        if state.clean_disconnect {
            return;
        }
        if let Some((will, delay)) = state.will.take() {
            let will_event = will_publish(&shared, client, will);
            if delay == 0 {
                shared.spool.push(client.shard, &will_event);
            } else {
                fire_delayed_will(shared, client.id.clone(), client.shard, will_event, delay);
            }
        }
    }
}

/// The `message.publish` of a will. rumqttd publishes wills from the stored CONNECT,
/// never through the codec, so the tap raises the event itself.
fn will_publish(shared: &TapShared, client: &Client, will: LastWill) -> HookEvent {
    shared.publishers.record(&will.topic, &will.message, &client.id);
    let mut event = HookEvent::new(Hook::MessagePublish, client.id.clone(), client.username.clone());
    event.topic = will.topic;
    event.payload = will.message;
    event.qos = will.qos as u8;
    event
}

/// An MQTT 5 will with a delay fires only if the client has not reconnected by then.
fn fire_delayed_will(shared: Arc<TapShared>, client_id: Arc<str>, shard: usize, mut event: HookEvent, delay: u32) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(Duration::from_secs(delay as u64)).await;
        if shared.owners().contains_key(&client_id) {
            return;
        }
        event.ts_ms = crate::hooks::now_ms();
        shared.spool.push(shard, &event);
    });
}
