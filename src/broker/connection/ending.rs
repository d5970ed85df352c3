//! The one end of a connection: how it ended, the last words to the client, the router
//! told once, the session parked, forgotten or left in the cluster, the hook raised and
//! the will set off.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::cluster_session;
use super::io::Connection;
use super::state::Version;
use crate::broker::registry::{CloseReason, Parked};
use crate::cluster::SessionRecord;
use crate::hooks::{Hook, Reason};

/// How long the last words to a closing client (a DISCONNECT) may take.
pub(super) const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
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
    pub(super) fn hook_reason(self) -> Reason {
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
    pub(super) fn goodbye(self) -> Option<DisconnectReasonCode> {
        match self {
            End::Disconnected { .. } | End::Closed | End::SpoolRefused => None,
            End::KeepAlive => Some(DisconnectReasonCode::KeepAliveTimeout),
            End::Closing(CloseReason::TakenOver) => Some(DisconnectReasonCode::SessionTakenOver),
            End::Closing(CloseReason::Administrative) => Some(DisconnectReasonCode::AdministrativeAction),
            End::Shutdown | End::Closing(CloseReason::ShuttingDown) => Some(DisconnectReasonCode::ServerShuttingDown),
            End::Protocol(code) | End::Router(code) => Some(code),
        }
    }

    pub(super) fn fires_will(self) -> bool {
        !matches!(self, End::Disconnected { will: false })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// The one end of a connection: last words to the client, the router told once, the
    /// session parked or forgotten, the hook raised, the will set off.
    pub(super) async fn finish(mut self, end: End) {
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
