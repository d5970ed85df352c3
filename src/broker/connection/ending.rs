//! The one end of a connection: the last words to the client, the router told once, the
//! session parked (with what the client did not receive back in its inbox), forgotten or
//! left in the cluster, the hook raised and the will set off.

use std::sync::atomic::Ordering;

use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::client::Version;
use super::cluster_session;
use super::end::End;
use super::limits::GOODBYE_WAIT;
use super::state::State;
use crate::broker::registry::{CloseReason, Parked};
use crate::cluster::SessionRecord;
use crate::hooks::Hook;

/// The one end of a connection: last words to the client, the router told once, the
/// session parked or forgotten, the hook raised, the will set off.
pub(super) async fn finish<S: AsyncWrite + Unpin>(stream: &mut S, state: &mut State, end: End) {
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
            stream.write_all(&state.out).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(GOODBYE_WAIT, goodbye).await;
    }
    match end {
        End::Router(_) => state.router_out.clear(),
        _ => {
            // What the last batch had for the router (a subscription there opens the
            // client's link), then the end of the client's link, if it has one.
            let _ = state.send_router().await;
            if state.link.is_some() {
                let reason_code = DisconnectReasonCode::NormalDisconnection;
                state.router_out.push(Packet::Disconnect(Disconnect { reason_code }, None));
                let _ = state.send_router().await;
            }
        }
    }
    // The router keeps a session of this client's own (not one that ends with its link).
    let router_session = state.link.is_some() && !state.session.router_clean;
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
            state.repost_unfinished(&session.cluster);
        }
        edge.remove_routes(&subscriptions, &state.inbox);
        edge.leave_cluster_session(&state.client.id, &session.cluster, &session.wake, record, taken_over);
        if router_session && !matches!(end, End::Router(_)) {
            // Linked as a session of its own before it joined the cluster.
            edge.forget_router_session(&state.client.id).await;
        }
    } else {
        match state.session.expiry {
            0 => {
                edge.remove_routes(&subscriptions, &state.inbox);
                if router_session && !matches!(end, End::Router(_)) {
                    edge.forget_router_session(&state.client.id).await;
                }
            }
            expiry => {
                // MQTT sends them again when the session resumes.
                state.inbox.put_back(state.unfinished(false));
                let next_seq = state.client.next_seq.load(Ordering::Relaxed);
                let parked = Parked { subscriptions, inbox: state.inbox.clone(), router_session, next_seq };
                edge.park_session(state.client.id.clone(), parked, expiry)
            }
        }
    }
    state.claim.hold.end();
    edge.registry.release(&state.client.id, state.claim.serial);
    edge.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}
