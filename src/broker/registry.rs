//! Which connection holds each client id, so the edge can take a session over, close a
//! client on demand, and tell a will whose client came back.
//!
//! A client id is claimed once its CONNECT is accepted, before the router hears of the
//! new connection: the previous holder is told to close and is waited for, so the router
//! sees the old connection's one disconnect before the new connection (it never has to
//! resolve a duplicate id itself). Persistent sessions are kept here while their client
//! is away (subscriptions and inbox), beside the router's own copy of the session when
//! it has one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::inbox::Inbox;
use super::subscription::Subscription;

/// Why the edge closes a connection from outside its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another connection claimed the client id (MQTT 5 DISCONNECT 0x8E).
    TakenOver,
    /// Asked for by the gateway (MQTT 5 DISCONNECT 0x98 Administrative action).
    Administrative,
    /// The gateway is stopping (MQTT 5 DISCONNECT 0x8B Server shutting down).
    ShuttingDown,
}

/// How long a new connection waits for the one it takes over to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

struct Holder {
    serial: u64,
    /// The cluster's name for this connection's claim, once made.
    generation: Option<Arc<str>>,
    close: mpsc::Sender<CloseReason>,
    ended: watch::Receiver<bool>,
}

#[derive(Default)]
pub struct Registry {
    holders: Mutex<HashMap<Arc<str>, Holder>>,
    /// Persistent sessions whose client is away, by client id.
    /// Each with its parking's serial: a session expiry timer acts only on the parking
    /// that started it.
    parked: Mutex<HashMap<Arc<str>, (Parked, u64)>>,
    next_serial: AtomicU64,
}

/// A persistent session whose client is away.
pub struct Parked {
    pub subscriptions: Vec<Subscription>,
    /// Its exact subscriptions' messages, kept for the client's return.
    pub inbox: Arc<Inbox>,
    /// The router keeps a session of it too (it had a subscription the router serves).
    pub router_session: bool,
    /// The number its next event takes (`HookEvent::seq`).
    pub next_seq: u64,
}

/// A connection's hold on its client id.
pub struct Claim {
    pub serial: u64,
    /// Close requests from the registry: takeover, or on demand.
    pub close: mpsc::Receiver<CloseReason>,
    /// Set once the router has been told this connection is gone.
    pub ended: watch::Sender<bool>,
}

impl Registry {
    fn holders(&self) -> MutexGuard<'_, HashMap<Arc<str>, Holder>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<Arc<str>, (Parked, u64)>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `client_id` unless `limit` connections hold other client ids (`None`
    /// then), counted and claimed under one lock so that CONNECTs racing on two threads
    /// cannot both take the last place. A connection still holding `client_id` is asked
    /// to close (taken over) and waited for, up to `TAKEOVER_WAIT`.
    pub async fn claim(&self, client_id: &Arc<str>, limit: usize) -> Option<Claim> {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let (close_tx, close_rx) = mpsc::channel(1);
        let (ended_tx, ended_rx) = watch::channel(false);
        let holder = Holder { serial, generation: None, close: close_tx, ended: ended_rx };
        let previous = {
            let mut holders = self.holders();
            if holders.len() >= limit && !holders.contains_key(client_id) {
                return None;
            }
            holders.insert(client_id.clone(), holder)
        };
        if let Some(mut previous) = previous {
            let _ = previous.close.try_send(CloseReason::TakenOver);
            // An error means the old connection's task is gone, which is as good.
            let _ = tokio::time::timeout(TAKEOVER_WAIT, previous.ended.wait_for(|ended| *ended)).await;
        }
        Some(Claim { serial, close: close_rx, ended: ended_tx })
    }

    /// Claims `client_id` only if no connection holds it (a session expiry must never
    /// take a live connection over).
    pub fn claim_if_free(&self, client_id: &Arc<str>) -> Option<Claim> {
        let mut holders = self.holders();
        if holders.contains_key(client_id) {
            return None;
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let (close_tx, close_rx) = mpsc::channel(1);
        let (ended_tx, ended_rx) = watch::channel(false);
        holders.insert(client_id.clone(), Holder { serial, generation: None, close: close_tx, ended: ended_rx });
        Some(Claim { serial, close: close_rx, ended: ended_tx })
    }

    /// Gives `client_id` up, if `serial` still holds it. Returns false when another
    /// connection took it over.
    pub fn release(&self, client_id: &str, serial: u64) -> bool {
        let mut holders = self.holders();
        match holders.get(client_id) {
            Some(holder) if holder.serial == serial => {
                holders.remove(client_id);
                true
            }
            _ => false,
        }
    }

    /// Whether a connection holds `client_id` now.
    pub fn is_connected(&self, client_id: &str) -> bool {
        self.holders().contains_key(client_id)
    }

    /// Asks the connection holding `client_id` to close; false when none does.
    pub fn close(&self, client_id: &str, reason: CloseReason) -> bool {
        self.holders().get(client_id).is_some_and(|holder| holder.close.try_send(reason).is_ok())
    }

    /// Names the cluster claim of connection `serial` of `client_id`.
    pub fn set_generation(&self, client_id: &str, serial: u64, generation: &str) {
        if let Some(holder) = self.holders().get_mut(client_id).filter(|h| h.serial == serial) {
            holder.generation = Some(generation.into());
        }
    }

    /// Asks the connection holding `client_id` to close if its cluster claim is
    /// `generation`; false when no connection of that claim is here.
    pub fn close_generation(&self, client_id: &str, generation: &str, reason: CloseReason) -> bool {
        self.holders()
            .get(client_id)
            .filter(|h| h.generation.as_deref() == Some(generation))
            .is_some_and(|holder| holder.close.try_send(reason).is_ok())
    }

    /// Asks every connection to close because the gateway stops.
    pub fn close_all(&self) {
        for holder in self.holders().values() {
            let _ = holder.close.try_send(CloseReason::ShuttingDown);
        }
    }

    /// Keeps a persistent session while its client is away; returns the parking's
    /// serial, for `unpark_expired`.
    pub fn park(&self, client_id: Arc<str>, session: Parked) -> u64 {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        self.parked().insert(client_id, (session, serial));
        serial
    }

    /// Takes the session parked for `client_id`, if any.
    pub fn unpark(&self, client_id: &str) -> Option<Parked> {
        self.parked().remove(client_id).map(|(session, _)| session)
    }

    /// The next event number of the session parked for `client_id`, if any.
    pub fn parked_next_seq(&self, client_id: &str) -> Option<u64> {
        self.parked().get(client_id).map(|(session, _)| session.next_seq)
    }

    /// Takes parking `serial` of `client_id`, if that session is still parked (its
    /// client did not come back).
    pub fn unpark_expired(&self, client_id: &str, serial: u64) -> Option<Parked> {
        let mut parked = self.parked();
        match parked.get(client_id) {
            Some((_, parked_serial)) if *parked_serial == serial => parked.remove(client_id).map(|(session, _)| session),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_past_the_limit_is_refused_but_a_takeover_at_the_limit_is_not() {
        let registry = Registry::default();
        let (a, b): (Arc<str>, Arc<str>) = ("lock-a".into(), "lock-b".into());
        let first = registry.claim(&a, 1).await.expect("the first place");
        assert!(registry.claim(&b, 1).await.is_none(), "no second place");
        // The connection holding lock-a is asked to close; it ends at once here.
        let _ = first.ended.send(true);
        assert!(registry.claim(&a, 1).await.is_some(), "lock-a again takes its own place over");
    }
}
