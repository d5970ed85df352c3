//! Everything about a connected client but its socket (`State`), and what all its parts
//! share: packets for the client and for the router, events staged for the spool, and
//! how a protocol error is logged and counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{self, DisconnectReasonCode, LastWill, LastWillProperties, Packet};

use super::client::{Client, Session, Version};
use super::cluster_session::ClusterSession;
use super::end::End;
use super::flight::{Delivery, Slot, Unacked};
use crate::broker::edge::send_to_router;
use crate::broker::inbox::Inbox;
use crate::broker::registry::Claim;
use crate::broker::subscription::Subscription;
use crate::broker::Edge;
use crate::hooks::HookEvent;
use crate::internal_events::{InternalEvent, ProtocolError};
use crate::metrics::Metrics;
use crate::spool::{Push, SpoolBatch};

/// Everything about a connected client but its socket.
pub(super) struct State {
    pub(super) edge: Arc<Edge>,
    pub(super) version: Version,
    pub(super) client: Client,
    pub(super) keep_alive: u16,
    pub(super) session: Session,
    pub(super) claim: Claim,
    /// The client's own link to the router, opened once it subscribes to what the
    /// router serves (wildcards, shared), or resumes a session the router keeps.
    pub(super) link: Option<RouterLink>,
    /// The session's inbox: what its subscriptions to exact topics receive.
    pub(super) inbox: Arc<Inbox>,
    /// Packets for the router, sent together at the end of each batch: publishes
    /// through the edge's publisher links, the rest through the client's own link.
    pub(super) router_out: Vec<Packet>,
    /// The router paused this connection (its buffer was full) and waits to be told it
    /// may go on.
    pub(super) wake_router: bool,
    /// Events of this batch, written to the spool before anything is written back.
    pub(super) batch: SpoolBatch,
    /// A spool write failed during this batch: nothing staged since the last flush is
    /// on disk, so nothing of the batch may be acknowledged.
    pub(super) spool_failed: bool,
    /// Bytes for the client.
    pub(super) out: BytesMut,
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) next_router_id: usize,
    /// The next packet id of a delivery the edge makes itself (see `own_pkid`).
    pub(super) next_own_pkid: u16,
    /// MQTT 5 topic aliases the client set.
    pub(super) aliases: HashMap<u16, Bytes>,
    /// The client's Receive Maximum: QoS 1/2 deliveries unacknowledged at once.
    pub(super) receive_max: u16,
    /// The client's Maximum Packet Size.
    pub(super) max_packet: usize,
    pub(super) slots: VecDeque<Slot>,
    pub(super) inflight: HashMap<u16, Unacked>,
    /// Deliveries written at QoS 1/2 so far: each unacknowledged one's place in order.
    pub(super) sent: u64,
    /// Deliveries waiting for the client's Receive Maximum, in order.
    pub(super) held: VecDeque<Delivery>,
    /// Packet ids of QoS 2 publishes received and not yet released.
    pub(super) qos2_received: HashSet<u16>,
    pub(super) will: Option<(LastWill, Option<LastWillProperties>, u32)>,
    pub(super) connected_ms: u64,
    /// The session in the cluster, when the gateway is one.
    pub(super) cluster: Option<ClusterSession>,
    /// Served alone because this node had not caught up with the cluster when the client
    /// connected: once it has, the connection claims its session (this is the CONNECT's
    /// Clean Start) and goes on in the cluster.
    pub(super) claim_when_caught_up: Option<bool>,
}

/// A client's own link to the router.
pub(super) struct RouterLink {
    pub(super) tx: LinkTx,
    pub(super) rx: LinkRx,
}

impl RouterLink {
    /// Opens `client`'s link: a session of its own in the router unless `clean`.
    pub(super) async fn open(edge: &Arc<Edge>, client: &Arc<str>, clean: bool) -> Result<RouterLink, End> {
        match edge.open_link(client, clean).await {
            Ok((tx, rx)) => Ok(RouterLink { tx, rx }),
            Err(error) => {
                tracing::error!(client = %client, %error, "cannot open a link to the router; closing the connection");
                Err(End::Router(DisconnectReasonCode::ServerBusy))
            }
        }
    }
}

impl State {
    pub(super) fn v5(&self) -> bool {
        self.version == Version::V5
    }

    /// Encodes a packet for the client. Only a publish can fail to encode, and those are
    /// written by `deliver`, which checks.
    pub(super) fn write(&mut self, packet: Packet) {
        let _ = self.version.write(packet, &mut self.out);
    }

    /// The router swaps its own scratch buffer (sized for 200 packets) into each link it
    /// reads, so every link that ever sent a packet would keep one: a batch with nothing
    /// for the router gives it back (a link busy with the router keeps it). Only an empty
    /// buffer is shrunk, and the router touches a link's buffer only when notified, which
    /// an empty one is not.
    pub(super) fn give_back_router_buffer(&mut self) {
        let Some(link) = self.link.as_mut() else { return };
        let mut buffer = link.tx.buffer();
        if buffer.is_empty() && buffer.capacity() > 0 {
            buffer.shrink_to_fit();
        }
    }

    /// Hands the batch's packets to the router, in order: each run of publishes through
    /// the client's publisher link, each run of the rest through its own link, opened
    /// then if it has none (its first subscription the router serves).
    pub(super) async fn send_router(&mut self) -> Result<(), End> {
        if self.router_out.is_empty() {
            self.give_back_router_buffer();
            return Ok(());
        }
        let mut packets = std::mem::take(&mut self.router_out).into_iter().peekable();
        let mut run = Vec::new();
        while let Some(packet) = packets.next() {
            let publish = matches!(packet, Packet::Publish(..));
            run.push(packet);
            if packets.peek().is_some_and(|next| matches!(next, Packet::Publish(..)) == publish) {
                continue;
            }
            let sent = match publish {
                true => send_to_router(&mut self.edge.publisher(&self.client.id).lock().await.0, &mut run).await,
                false => {
                    if self.link.is_none() {
                        self.link = Some(RouterLink::open(&self.edge, &self.client.id, self.session.router_clean).await?);
                    }
                    let link = self.link.as_mut().expect("opened above");
                    send_to_router(&mut link.tx, &mut run).await
                }
            };
            sent.map_err(|_| End::Router(DisconnectReasonCode::UnspecifiedError))?;
        }
        Ok(())
    }

    /// Stages an event of this connection; see `spool_failed` for a failed write.
    pub(super) fn stage(&mut self, event: &HookEvent) -> Push {
        match self.edge.spool.stage(&mut self.batch, self.client.shard, event) {
            Ok(push) => push,
            Err(_) => {
                self.spool_failed = true;
                Push::Rejected
            }
        }
    }

    pub(super) fn protocol_error(&self, what: &str, error: Option<&protocol::Error>, reason: DisconnectReasonCode) -> End {
        log_protocol_error(&self.edge.metrics, &self.client.peer, &self.client.id, what, error);
        End::Protocol(reason)
    }
}

pub(super) fn log_protocol_error(
    metrics: &Metrics,
    peer: &dyn std::fmt::Display,
    client: &str,
    what: &str,
    error: Option<&protocol::Error>,
) {
    ProtocolError { metrics, peer, client, what, error: error.map(|e| e as &dyn std::fmt::Display) }.emit();
}
