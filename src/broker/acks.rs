//! Acknowledgements the downlink waits for. Each MQTT message published for a consumed
//! Kafka record carries an id (in its origin); the first delivery of it to a subscriber
//! (PUBACK, PUBREC, or written at QoS 0) resolves the id, and with it one count of the
//! record. The downlink commits a record's offset once all its counts are resolved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The messages of one consumed record still undelivered.
#[derive(Debug, Default)]
pub struct RecordAcks(AtomicU32);

impl RecordAcks {
    pub fn delivered(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

#[derive(Default)]
pub struct Acks {
    next: AtomicU64,
    /// What each id counts toward, and its message's topic.
    pending: Mutex<HashMap<u64, (Arc<RecordAcks>, Bytes)>>,
}

impl Acks {
    /// A new id, for a message to `topic`, whose resolution counts toward `record`.
    pub fn expect(&self, record: &Arc<RecordAcks>, topic: Bytes) -> u64 {
        record.0.fetch_add(1, Ordering::AcqRel);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (record.clone(), topic));
        id
    }

    /// Resolves every message no subscription can receive any more (its sessions
    /// expired): `reachable` says whether a topic still has one. Returns how many.
    pub fn resolve_unreachable(&self, reachable: impl Fn(&[u8]) -> bool) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let before = pending.len();
        pending.retain(|_, (record, topic)| {
            let keep = reachable(topic);
            if !keep {
                record.0.fetch_sub(1, Ordering::AcqRel);
            }
            keep
        });
        before - pending.len()
    }

    /// The message with this id was delivered (a second delivery of it finds nothing).
    pub fn resolve(&self, id: Option<u64>) {
        let Some(id) = id else { return };
        if let Some((record, _)) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            record.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Messages published and not yet delivered.
    pub fn outstanding(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_delivered_once_each_of_its_messages_is_delivered_once() {
        let acks = Acks::default();
        let record = Arc::new(RecordAcks::default());
        let topic = Bytes::from_static(b"devices/lock-1/command");
        let (first, second) = (acks.expect(&record, topic.clone()), acks.expect(&record, topic));
        acks.resolve(Some(first));
        acks.resolve(Some(first));
        assert!(!record.delivered(), "a repeated delivery of one message does not count for the other");
        acks.resolve(Some(second));
        assert!(record.delivered());
        assert_eq!(acks.outstanding(), 0);
    }

    #[test]
    fn messages_nobody_can_receive_any_more_are_resolved() {
        let acks = Acks::default();
        let (gone, alive) = (Arc::new(RecordAcks::default()), Arc::new(RecordAcks::default()));
        acks.expect(&gone, Bytes::from_static(b"devices/gone/command"));
        acks.expect(&alive, Bytes::from_static(b"devices/alive/command"));
        assert_eq!(acks.resolve_unreachable(|topic| topic == b"devices/alive/command"), 1);
        assert!(gone.delivered() && !alive.delivered());
    }
}
