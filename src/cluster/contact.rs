//! This node's contact with Kafka, as the node itself can tell it: how far it has read
//! its own heartbeats back (its clock), whether Kafka is away, and the session records
//! it wrote and has not read back yet.
//!
//! The clock. Every node's heartbeats go to one partition, so when a node reads its own
//! heartbeat of time T back, it has read every heartbeat written before it. A node is
//! gone when this node's own heartbeats read since its last one span `NODE_TIMEOUT`:
//! measured on this node's clock, in the topic's order. The clock moves by the time
//! between two of its own heartbeats read back, at most `MAX_STEP`: a Kafka outage
//! stops it for every node alike, and after one it does not leap ahead of the other
//! nodes' first heartbeats, so an outage makes nobody look dead.
//!
//! Kafka is away when a claim was not read back within `cluster.claim_wait_ms` and no
//! heartbeat of this node was read since, or when this node has read none of its own
//! heartbeats for `AWAY_AFTER`. Meanwhile a CONNECT does not wait for its claim.
//!
//! What this node wrote and has not read back (`Unread`) is what it knows of those
//! sessions before the topic tells it: a client that comes back while Kafka is away
//! resumes from there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::session::SessionRecord;

/// Kafka is away when this node has read none of its own heartbeats for this long.
const AWAY_AFTER: Duration = Duration::from_secs(5);
/// The most the clock moves for one of this node's heartbeats read back: two heartbeat
/// periods.
const MAX_STEP: u64 = 2 * super::beat::HEARTBEAT.as_millis() as u64;

pub(super) struct Contact {
    /// This node's clock, in milliseconds.
    clock_ms: AtomicU64,
    /// The `at_ms` of the last of this node's heartbeats read back (0: none yet).
    last_heartbeat_ms: AtomicU64,
    /// When that heartbeat was read, and when a claim last timed out.
    times: Mutex<Times>,
    unread: Mutex<HashMap<Arc<str>, Unread>>,
}

struct Times {
    heartbeat_read: Instant,
    claim_timed_out: Option<Instant>,
}

/// The last session record this node wrote for a client, as written (to match it when
/// read back) and as this node takes the session to be once it is applied (`None`: the
/// session ended).
struct Unread {
    bytes: Vec<u8>,
    view: Option<SessionRecord>,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            clock_ms: AtomicU64::new(0),
            last_heartbeat_ms: AtomicU64::new(0),
            times: Mutex::new(Times { heartbeat_read: Instant::now(), claim_timed_out: None }),
            unread: Mutex::default(),
        }
    }
}

impl Contact {
    fn times(&self) -> MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unread(&self) -> MutexGuard<'_, HashMap<Arc<str>, Unread>> {
        self.unread.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's clock (see the module docs).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// One of this node's heartbeats, written at `at_ms`, was read back (by the reader's
    /// one thread, in order).
    pub fn own_heartbeat_read(&self, at_ms: u64) {
        let last = self.last_heartbeat_ms.swap(at_ms, Ordering::Relaxed);
        if last > 0 {
            self.clock_ms.fetch_add(at_ms.saturating_sub(last).min(MAX_STEP), Ordering::Relaxed);
        }
        self.times().heartbeat_read = Instant::now();
    }

    /// A claim was not read back in time.
    pub fn claim_timed_out(&self) {
        self.times().claim_timed_out = Some(Instant::now());
    }

    pub fn kafka_away(&self) -> bool {
        let times = self.times();
        times.claim_timed_out.is_some_and(|t| times.heartbeat_read < t) || times.heartbeat_read.elapsed() > AWAY_AFTER
    }

    /// This node wrote `bytes` for `client`; `view` is the session it makes.
    pub fn wrote(&self, client: &str, bytes: Vec<u8>, view: Option<SessionRecord>) {
        self.unread().insert(client.into(), Unread { bytes, view });
    }

    /// A record of `client` was read: if it is the last one this node wrote for it, the
    /// topic now tells the rest.
    pub fn read(&self, client: &str, bytes: &[u8]) {
        let mut unread = self.unread();
        if unread.get(client).is_some_and(|u| u.bytes == bytes) {
            unread.remove(client);
        }
    }

    /// The session this node wrote last for `client` and has not read back:
    /// `Some(None)` when that ended it.
    pub fn unread_view(&self, client: &str) -> Option<Option<SessionRecord>> {
        self.unread().get(client).map(|u| u.view.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_with_the_heartbeats_read_and_an_outage_moves_it_two_seconds_at_most() {
        let contact = Contact::default();
        contact.own_heartbeat_read(100_000);
        assert_eq!(contact.clock_ms(), 0);
        contact.own_heartbeat_read(101_000);
        contact.own_heartbeat_read(102_000);
        assert_eq!(contact.clock_ms(), 2_000);
        // Sixty seconds without a heartbeat read back: Kafka was away.
        contact.own_heartbeat_read(162_000);
        assert_eq!(contact.clock_ms(), 4_000);
    }

    #[test]
    fn kafka_is_away_once_a_claim_timed_out_until_a_heartbeat_is_read_again() {
        let contact = Contact::default();
        assert!(!contact.kafka_away());
        contact.claim_timed_out();
        assert!(contact.kafka_away());
        std::thread::sleep(Duration::from_millis(2));
        contact.own_heartbeat_read(1);
        assert!(!contact.kafka_away());
    }

    #[test]
    fn what_this_node_wrote_is_its_view_until_the_same_bytes_are_read_back() {
        let contact = Contact::default();
        contact.wrote("lock-1", b"first".to_vec(), None);
        contact.wrote("lock-1", b"second".to_vec(), None);
        contact.read("lock-1", b"first");
        assert_eq!(contact.unread_view("lock-1"), Some(None), "the last write is not read back yet");
        contact.read("lock-1", b"second");
        assert_eq!(contact.unread_view("lock-1"), None);
    }
}
