//! Who published a message, for the `from` field of delivered and acked envelopes.
//!
//! rumqttd forwards a publish to subscribers without saying who sent it, but it forwards
//! the very same payload buffer it received (reference-counted, never copied). So the
//! payload's address and length identify a message for as long as the broker holds it:
//! the index maps them to the publishing client, recorded when the publish is read. A
//! newer publish can only reuse an address after the older message is freed, and it
//! re-records the address before it can be delivered, so a lookup always finds the right
//! publisher. Empty payloads share one static address; those are keyed by topic.
//!
//! Bounded: each shard keeps two generations and drops the older one when the current
//! fills, so memory stays flat and a very old message (e.g. a retained one, republished
//! long after) may be delivered with `from` empty.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

const SHARDS: usize = 16;

pub struct PublisherIndex {
    shards: Vec<Mutex<Generations>>,
    per_generation: usize,
}

#[derive(Default)]
struct Generations {
    current: HashMap<(usize, usize), Arc<str>>,
    previous: HashMap<(usize, usize), Arc<str>>,
}

impl PublisherIndex {
    /// An index remembering about `capacity` messages.
    pub fn new(capacity: usize) -> PublisherIndex {
        PublisherIndex {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_generation: (capacity / SHARDS / 2).max(1),
        }
    }

    pub fn record(&self, topic: &Bytes, payload: &Bytes, from: &Arc<str>) {
        let key = key(topic, payload);
        let mut shard = self.shard(key);
        if shard.current.len() >= self.per_generation {
            shard.previous = std::mem::take(&mut shard.current);
        }
        shard.current.insert(key, from.clone());
    }

    pub fn lookup(&self, topic: &Bytes, payload: &Bytes) -> Option<Arc<str>> {
        let key = key(topic, payload);
        let shard = self.shard(key);
        shard
            .current
            .get(&key)
            .or_else(|| shard.previous.get(&key))
            .cloned()
    }

    fn shard(&self, key: (usize, usize)) -> std::sync::MutexGuard<'_, Generations> {
        let index = (key.0 >> 4) % SHARDS;
        // A poisoned shard only means another thread panicked mid-insert; the map is
        // still a valid cache.
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(topic: &Bytes, payload: &Bytes) -> (usize, usize) {
    if payload.is_empty() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        topic.hash(&mut hasher);
        (hasher.finish() as usize, usize::MAX)
    } else {
        (payload.as_ptr() as usize, payload.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_publisher_of_the_same_buffer_only() {
        let index = PublisherIndex::new(64);
        let topic = Bytes::from_static(b"devices/1/command");
        let payload = Bytes::from(vec![1, 2, 3]);
        let copy = Bytes::from(vec![1, 2, 3]);
        index.record(&topic, &payload, &Arc::from("app"));
        assert_eq!(index.lookup(&topic, &payload.clone()).as_deref(), Some("app"));
        assert_eq!(index.lookup(&topic, &copy), None);
    }

    #[test]
    fn stays_bounded_and_keeps_the_newest() {
        let index = PublisherIndex::new(64);
        let topic = Bytes::from_static(b"t");
        let payloads: Vec<Bytes> = (0..1000u32).map(|i| Bytes::from(i.to_be_bytes().to_vec())).collect();
        for p in &payloads {
            index.record(&topic, p, &Arc::from("x"));
        }
        let total: usize = index
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.current.len() + s.previous.len()
            })
            .sum();
        assert!(total <= 64 + SHARDS * 2, "{total}");
        assert!(index.lookup(&topic, payloads.last().unwrap()).is_some());
    }
}
