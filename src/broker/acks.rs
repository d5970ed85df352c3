//! Acknowledgements the downlink waits for. Each MQTT message published for a consumed
//! Kafka record carries an id (in its origin); the first delivery of it to a subscriber
//! (PUBACK, PUBREC, or written at QoS 0) resolves the id, and with it one count of the
//! record. The downlink commits a record's offset once all its counts are resolved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    pending: Mutex<HashMap<u64, Arc<RecordAcks>>>,
}

impl Acks {
    /// A new id whose resolution counts toward `record`.
    pub fn expect(&self, record: &Arc<RecordAcks>) -> u64 {
        record.0.fetch_add(1, Ordering::AcqRel);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, record.clone());
        id
    }

    /// The message with this id was delivered (a second delivery of it finds nothing).
    pub fn resolve(&self, id: Option<u64>) {
        let Some(id) = id else { return };
        if let Some(record) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
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
        let (first, second) = (acks.expect(&record), acks.expect(&record));
        acks.resolve(Some(first));
        acks.resolve(Some(first));
        assert!(!record.delivered(), "a repeated delivery of one message does not count for the other");
        acks.resolve(Some(second));
        assert!(record.delivered());
        assert_eq!(acks.outstanding(), 0);
    }
}
