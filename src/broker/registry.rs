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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

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

impl CloseReason {
    fn from_u8(value: u8) -> CloseReason {
        match value {
            0 => CloseReason::TakenOver,
            1 => CloseReason::Administrative,
            _ => CloseReason::ShuttingDown,
        }
    }
}

/// How long a new connection waits for the one it takes over to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// What the registry and a connection share about the connection's hold on its client
/// id: a request to close, and that the connection has ended. A few atomics and two
/// `Notify`s: every idle connection has one.
#[derive(Default)]
pub struct Hold {
    /// The first close asked for (`CloseReason as u8 + 1`), 0 while none.
    close: AtomicU8,
    closing: Notify,
    ended: AtomicBool,
    ended_notify: Notify,
}

impl Hold {
    /// Asks the connection to close; false when a close is already asked for or the
    /// connection has ended.
    fn ask_to_close(&self, reason: CloseReason) -> bool {
        if self.ended.load(Ordering::Acquire) {
            return false;
        }
        let asked = self.close.compare_exchange(0, reason as u8 + 1, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if asked {
            self.closing.notify_one();
        }
        asked
    }

    /// Waits until the connection is asked to close, and says why.
    pub async fn close_asked(&self) -> CloseReason {
        loop {
            let notified = self.closing.notified();
            match self.close.load(Ordering::Acquire) {
                0 => notified.await,
                asked => return CloseReason::from_u8(asked - 1),
            }
        }
    }

    /// The connection has ended: whoever waits to take its client id over goes on.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.ended_notify.notify_waiters();
    }

    async fn ended(&self) {
        loop {
            let notified = self.ended_notify.notified();
            tokio::pin!(notified);
            // Registered before the check: an end between the two is not missed.
            notified.as_mut().enable();
            if self.ended.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

struct Holder {
    serial: u64,
    /// The cluster's name for this connection's claim, once made.
    generation: Option<Arc<str>>,
    hold: Arc<Hold>,
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
    /// Close requests from the registry (takeover, or on demand), and the connection's
    /// end, which it signals once the router has been told it is gone.
    pub hold: Arc<Hold>,
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
        let hold = Arc::new(Hold::default());
        let holder = Holder { serial, generation: None, hold: hold.clone() };
        let previous = {
            let mut holders = self.holders();
            if holders.len() >= limit && !holders.contains_key(client_id) {
                return None;
            }
            holders.insert(client_id.clone(), holder)
        };
        if let Some(previous) = previous {
            previous.hold.ask_to_close(CloseReason::TakenOver);
            let _ = tokio::time::timeout(TAKEOVER_WAIT, previous.hold.ended()).await;
        }
        Some(Claim { serial, hold })
    }

    /// Claims `client_id` only if no connection holds it (a session expiry must never
    /// take a live connection over).
    pub fn claim_if_free(&self, client_id: &Arc<str>) -> Option<Claim> {
        let mut holders = self.holders();
        if holders.contains_key(client_id) {
            return None;
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let hold = Arc::new(Hold::default());
        holders.insert(client_id.clone(), Holder { serial, generation: None, hold: hold.clone() });
        Some(Claim { serial, hold })
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
        self.holders().get(client_id).is_some_and(|holder| holder.hold.ask_to_close(reason))
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
            .is_some_and(|holder| holder.hold.ask_to_close(reason))
    }

    /// Asks every connection to close because the gateway stops.
    pub fn close_all(&self) {
        for holder in self.holders().values() {
            holder.hold.ask_to_close(CloseReason::ShuttingDown);
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
        // The connection holding lock-a ends at once here.
        first.hold.end();
        assert!(registry.claim(&a, 1).await.is_some(), "lock-a again takes its own place over");
    }
}
