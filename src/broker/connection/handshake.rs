//! The CONNECT of a connection: read, checked against the login, the client-id rules
//! and the gateway's limits, answered with the right CONNACK code, and, once accepted,
//! registered with the registry and the router.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use rumqttd::protocol::{self, ConnAck, ConnAckProperties, Connect, ConnectReturnCode, LastWill, LastWillProperties, Login, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{Client, Session, Version};
use super::cluster_session::{self, claim_in_cluster, ClusterSession};
use super::limits::{FIRST_OWN_PKID, GOODBYE_WAIT, MAX_CLIENT_ID, READ_MIN, TOPIC_ALIAS_MAX};
use super::state::{log_protocol_error, RouterLink, State};
use crate::access::{Action, LoginCost, LoginRefused};
use crate::broker::inbox::Inbox;
use crate::broker::registry::Claim;
use crate::broker::{wire, Edge};
use crate::cluster::SessionRecord;
use crate::hooks::{now_ms, Hook, Reason};
use crate::internal_events::{ConnectionRefused, InternalEvent, ServedAlone};
use crate::metrics::Metrics;
use crate::spool::SpoolBatch;

/// Why a CONNECT is refused; each has its CONNACK code in both MQTT versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCredentials,
    NotAuthorized,
    ClientIdRejected,
    ServerBusy,
    /// The login checks' queue is full.
    LoginBusy,
    /// The spool cannot take the client's events (disk full or failing).
    Unavailable,
    ProtocolVersion,
}

impl Refusal {
    fn code(self, version: Version) -> ConnectReturnCode {
        match (self, version) {
            (Refusal::BadCredentials, _) => ConnectReturnCode::BadUserNamePassword,
            (Refusal::NotAuthorized, _) => ConnectReturnCode::NotAuthorized,
            (Refusal::ClientIdRejected, _) => ConnectReturnCode::ClientIdentifierNotValid,
            (Refusal::ServerBusy | Refusal::LoginBusy, Version::V4) => ConnectReturnCode::ServiceUnavailable,
            (Refusal::ServerBusy | Refusal::LoginBusy, Version::V5) => ConnectReturnCode::ServerBusy,
            (Refusal::Unavailable, Version::V4) => ConnectReturnCode::ServiceUnavailable,
            (Refusal::Unavailable, Version::V5) => ConnectReturnCode::ServerUnavailable,
            (Refusal::ProtocolVersion, Version::V4) => ConnectReturnCode::RefusedProtocolVersion,
            (Refusal::ProtocolVersion, Version::V5) => ConnectReturnCode::UnsupportedProtocolVersion,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Refusal::BadCredentials => "bad user name or password",
            Refusal::NotAuthorized => "not authorized",
            Refusal::ClientIdRejected => "client id rejected",
            Refusal::ServerBusy => "server busy (broker.max_connections, or the open-file limit)",
            Refusal::LoginBusy => "server busy (the login checks' queue is full, auth.check_queue)",
            Refusal::Unavailable => "server unavailable (the spool cannot be written)",
            Refusal::ProtocolVersion => "unsupported protocol version",
        }
    }

    fn counter(self, metrics: &Metrics) -> &AtomicU64 {
        match self {
            Refusal::BadCredentials => &metrics.mqtt_refused_bad_credentials,
            Refusal::NotAuthorized => &metrics.mqtt_refused_not_authorized,
            Refusal::ClientIdRejected => &metrics.mqtt_refused_client_id,
            Refusal::ServerBusy => &metrics.mqtt_refused_server_busy,
            Refusal::LoginBusy => &metrics.mqtt_refused_login_busy,
            Refusal::Unavailable => &metrics.mqtt_refused_unavailable,
            Refusal::ProtocolVersion => &metrics.mqtt_refused_protocol_version,
        }
    }
}

/// The CONNECT: read, checked, refused with the right CONNACK code or accepted.
pub(super) struct Handshake<'a, S> {
    pub edge: &'a Arc<Edge>,
    pub stream: &'a mut S,
    pub peer: SocketAddr,
    pub identity: Option<Arc<str>>,
    pub read: &'a mut BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handshake<'_, S> {
    /// `None` when the connection ends here (refused, malformed, or gone). The state
    /// comes boxed: the connection's task keeps only a pointer to it.
    pub async fn run(mut self) -> Option<Box<State>> {
        let max = self.edge.limits.max_packet_size;
        let version = loop {
            let frame = &self.read[..];
            if wire::fixed_header(frame).is_some_and(|(_, len, _)| len > max) {
                self.protocol_error("the first packet is over broker.max_packet_size", None);
                return None;
            }
            match wire::connect_level(frame) {
                Some(4) => break Version::V4,
                Some(5) => break Version::V5,
                Some(level) => {
                    // MQTT 3.1 and older say 3 and read the 3.1.1 CONNACK; anything newer
                    // than 5 reads MQTT 5's.
                    let version = if level < 5 { Version::V4 } else { Version::V5 };
                    self.refuse(version, Refusal::ProtocolVersion, &format!("(protocol level {level})")).await;
                    return None;
                }
                None if wire::unreadable_as_connect(frame) => {
                    self.protocol_error("the first packet is not a CONNECT", None);
                    return None;
                }
                None => self.read_more().await?,
            }
        };
        let packet = loop {
            match version.read(self.read, max) {
                Ok(packet) => break packet,
                Err(protocol::Error::InsufficientBytes(_)) => self.read_more().await?,
                Err(error) => {
                    self.protocol_error("malformed CONNECT", Some(&error));
                    return None;
                }
            }
        };
        let Packet::Connect(connect, props, will, will_props, login) = packet else { return None };
        self.accept(version, connect, props, will, will_props, login).await
    }

    async fn read_more(&mut self) -> Option<()> {
        self.read.reserve(READ_MIN);
        match self.stream.read_buf(self.read).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(()),
        }
    }

    async fn accept(
        self,
        version: Version,
        mut connect: Connect,
        props: Option<protocol::ConnectProperties>,
        mut will: Option<LastWill>,
        will_props: Option<LastWillProperties>,
        login: Option<Login>,
    ) -> Option<Box<State>> {
        let edge = self.edge.clone();
        let assigned = connect.client_id.is_empty();
        if assigned && !connect.clean_session {
            // A persistent session needs an id the client chose, to come back to it.
            return self.refuse(version, Refusal::ClientIdRejected, "(empty client id with clean session 0)").await;
        }
        if assigned {
            connect.client_id = format!("hookline-{:016x}", rand_core::RngCore::next_u64(&mut rand_core::OsRng));
        }
        if connect.client_id.len() > MAX_CLIENT_ID {
            return self.refuse(version, Refusal::ClientIdRejected, "(longer than 256 bytes)").await;
        }
        let client_id: Arc<str> = connect.client_id.as_str().into();
        let (mut username, password) = login.map(|l| (l.username, l.password)).unwrap_or_default();
        let verdict = match self.identity.clone() {
            // The certificate is the login: a username, if sent, must be its identity.
            Some(identity) => {
                let other_name = !username.is_empty() && username != *identity;
                let other_id = edge.limits.identity_is_client_id && *client_id != *identity;
                username = identity.to_string();
                match other_name || other_id {
                    true => Err(LoginRefused::NotAuthorized),
                    false => Ok(()),
                }
            }
            None => {
                let (verdict, cost) = edge.access.login(&username, &password, &client_id).await;
                match cost {
                    LoginCost::Checked => Metrics::add(&edge.metrics.logins_checked, 1),
                    LoginCost::Cached => Metrics::add(&edge.metrics.logins_cached, 1),
                    LoginCost::Free => {}
                }
                verdict.map(|name| username = name)
            }
        };
        match verdict {
            Ok(()) => {}
            Err(LoginRefused::BadCredentials) => return self.refuse(version, Refusal::BadCredentials, &client_id).await,
            Err(LoginRefused::NotAuthorized) => return self.refuse(version, Refusal::NotAuthorized, &client_id).await,
            Err(LoginRefused::Busy) => return self.refuse(version, Refusal::LoginBusy, &client_id).await,
        }
        let Some(claim) = edge.registry.claim(&client_id, edge.limits.max_connections).await else {
            return self.refuse(version, Refusal::ServerBusy, &client_id).await;
        };
        let clean = connect.clean_session;
        let mut session = Session::of(version, clean, props.as_ref().and_then(|p| p.session_expiry_interval));
        // A node that has not caught up with the cluster within the claim's bound (just
        // started, or Kafka away since) does not know the sessions: it serves the client
        // alone, for as long as this connection lasts.
        let mut claim_when_caught_up = None;
        let cluster = match edge.cluster.as_ref() {
            Some(cluster) if cluster.is_ready() || (!cluster.kafka_away() && cluster.ready_within(cluster.claim_wait()).await) => {
                Some(cluster)
            }
            Some(_) => {
                ServedAlone { metrics: &edge.metrics, client: &client_id }.emit();
                claim_when_caught_up = Some(clean);
                None
            }
            None => None,
        };
        let stored = match cluster {
            None => None,
            Some(cluster) => match claim_in_cluster(cluster, &edge, &client_id, claim.serial, clean, session.expiry).await {
                Ok(stored) => Some(stored),
                Err(error) => {
                    Metrics::add(&edge.metrics.cluster_errors, 1);
                    tracing::warn!(client = %client_id, %error, "cannot claim the session in the cluster: this node serves the client alone");
                    None
                }
            },
        };
        // The cluster keeps a claimed session; the router only routes.
        session.router_clean |= stored.is_some();
        // A session that may resume goes on numbering its events (a later resume that
        // does not happen only leaves a gap).
        let next_seq = match (&stored, clean) {
            (Some(stored), _) => stored.record.next_seq.max(1),
            (None, false) => edge.registry.parked_next_seq(&client_id).unwrap_or(1),
            (None, true) => 1,
        };
        let client = Client {
            shard: edge.spool.shard_for(&client_id),
            id: client_id,
            username: username.into(),
            peer: self.peer.to_string().into(),
            next_seq: AtomicU64::new(next_seq),
        };
        let give_up = |edge: &Arc<Edge>, client: &Client, claim: Claim| {
            if let Some(stored) = &stored {
                // Claimed and never served: the session stays, away from now on.
                let record = SessionRecord { connected: false, since_ms: now_ms(), ..stored.record.clone().as_update() };
                stored.cluster.update(&client.id, &record);
            }
            edge.registry.release(&client.id, claim.serial);
            claim.hold.end();
        };

        let mut batch = SpoolBatch::default();
        if let Some(topic) = will.as_ref().map(|w| w.topic.clone()) {
            if let Some(why) = wire::invalid_topic_name(&topic).or(topic.is_empty().then_some("empty will topic")) {
                self.protocol_error(why, None);
                give_up(&edge, &client, claim);
                return None;
            }
            if !edge.allows(&client, Action::Publish, &topic) {
                let denied = edge.denied(&client, Reason::Will, topic);
                if edge.spool.stage(&mut batch, client.shard, &denied).is_err() {
                    give_up(&edge, &client, claim);
                    return self.refuse(version, Refusal::Unavailable, &client.id).await;
                }
                will = None;
            }
        }

        // On disk before the CONNACK: a spool that cannot take it (disk full or failing)
        // turns the client away until it can.
        let connected = client.event(Hook::ClientConnected);
        let written = edge.spool.stage(&mut batch, client.shard, &connected).and_then(|_| edge.spool.flush(&mut batch));
        if written.is_err() {
            give_up(&edge, &client, claim);
            return self.refuse(version, Refusal::Unavailable, &client.id).await;
        }

        // A session kept here (not in the cluster) resumes, or ends first at Clean Start.
        let parked = match stored {
            Some(_) => None,
            None => edge.registry.unpark(&client.id),
        };
        let parked = match parked {
            Some(parked) if clean => {
                edge.remove_routes(&parked.subscriptions, &parked.inbox);
                if parked.router_session {
                    edge.forget_router_session(&client.id).await;
                }
                None
            }
            parked => parked,
        };
        // The client needs a link of its own only to resume a session the router keeps.
        let link = match parked.as_ref().is_some_and(|p| p.router_session) {
            true => match RouterLink::open(&edge, &client.id, false).await {
                Ok(link) => Some(link),
                Err(_) => {
                    give_up(&edge, &client, claim);
                    return self.refuse(version, Refusal::ServerBusy, &client.id).await;
                }
            },
            false => None,
        };
        let (session_present, subscriptions, inbox, cluster) = match (stored, parked) {
            (Some(stored), _) => {
                let subscriptions = cluster_session::restore_all(&stored.record, 1);
                let cursor = stored.record.cursor.unwrap_or(0);
                let session = ClusterSession::new(stored.cluster, stored.record.generation, cursor);
                (stored.present, subscriptions, Arc::new(Inbox::new(client.id.clone())), Some(session))
            }
            (None, Some(parked)) => (true, parked.subscriptions, parked.inbox, None),
            (None, None) => (false, Vec::new(), Arc::new(Inbox::new(client.id.clone())), None),
        };

        let ack_props = (version == Version::V5).then(|| ConnAckProperties {
            retain_available: Some(1),
            max_packet_size: Some(edge.limits.max_packet_size as u32),
            assigned_client_identifier: assigned.then(|| client.id.to_string()),
            topic_alias_max: Some(TOPIC_ALIAS_MAX),
            wildcard_subscription_available: Some(1),
            subscription_identifiers_available: Some(1),
            shared_subscription_available: Some(1),
            ..ConnAckProperties::default()
        });
        edge.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let will_delay = will_props.as_ref().and_then(|p| p.delay_interval).unwrap_or(0);
        let receive_max = props.as_ref().and_then(|p| p.receive_maximum).unwrap_or(u16::MAX).min(edge.limits.max_inflight).max(1);
        let max_packet = props.as_ref().and_then(|p| p.max_packet_size).map_or(usize::MAX, |m| m as usize);
        let next_router_id = subscriptions.iter().map(|s| s.router_id).max().unwrap_or(0) + 1;
        let mut state = State {
            edge,
            version,
            client,
            keep_alive: connect.keep_alive,
            session,
            claim,
            link,
            inbox,
            router_out: Vec::new(),
            wake_router: false,
            batch,
            spool_failed: false,
            out: BytesMut::new(),
            subscriptions,
            next_router_id,
            next_own_pkid: FIRST_OWN_PKID,
            aliases: HashMap::new(),
            receive_max,
            max_packet,
            slots: VecDeque::new(),
            inflight: HashMap::new(),
            sent: 0,
            held: VecDeque::new(),
            qos2_received: HashSet::new(),
            will: will.map(|will| (will, will_props, will_delay)),
            connected_ms: now_ms(),
            cluster: None,
            claim_when_caught_up,
        };
        if let Some(session) = cluster {
            // The router keeps no session in a cluster: a resumed one's subscriptions are
            // made again.
            let restored = std::mem::take(&mut state.subscriptions);
            state.enter_cluster(session, restored);
        }
        state.write(Packet::ConnAck(ConnAck { session_present, code: ConnectReturnCode::Success }, ack_props));
        // What a resumed session's inbox kept goes after the CONNACK.
        state.take_inbox();
        Some(Box::new(state))
    }

    /// Answers the CONNECT with a refusal, logged (rate-limited) and counted.
    async fn refuse(self, version: Version, refusal: Refusal, client: &str) -> Option<Box<State>> {
        ConnectionRefused { counter: refusal.counter(&self.edge.metrics), peer: &self.peer, client, reason: refusal.name() }.emit();
        let mut out = BytesMut::new();
        let ack = ConnAck { session_present: false, code: refusal.code(version) };
        if version.write(Packet::ConnAck(ack, None), &mut out).is_ok() {
            let _ = tokio::time::timeout(GOODBYE_WAIT, async {
                self.stream.write_all(&out).await?;
                self.stream.shutdown().await
            })
            .await;
        }
        None
    }

    fn protocol_error(&self, what: &str, error: Option<&protocol::Error>) {
        log_protocol_error(&self.edge.metrics, &self.peer, "(before CONNECT)", what, error);
    }
}
