//! Hook events: what the broker tap raises, and the bounded queue that carries them to
//! the rule workers.
//!
//! The queue is sharded by client id: every event of one client goes to the same worker,
//! which is what keeps each device's records in order all the way into Kafka. A push
//! into a full shard either waits for room, holding up only that client's connection
//! (`backpressure`, the default: its publishes are not acknowledged meanwhile), or drops
//! the event and counts it in `hook_events_dropped` (`drop`); either way it logs, at most
//! once a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::QueueFullPolicy;
use crate::metrics::Metrics;

/// The seven hook points. Codes are the guest ABI's (`wasm-sdk/ABI.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    ClientConnected = 0,
    ClientDisconnected = 1,
    SessionSubscribed = 2,
    SessionUnsubscribed = 3,
    MessagePublish = 4,
    MessageDelivered = 5,
    MessageAcked = 6,
    AccessDenied = 7,
}

impl Hook {
    pub const ALL: [Hook; 8] = [
        Hook::ClientConnected,
        Hook::ClientDisconnected,
        Hook::SessionSubscribed,
        Hook::SessionUnsubscribed,
        Hook::MessagePublish,
        Hook::MessageDelivered,
        Hook::MessageAcked,
        Hook::AccessDenied,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::ClientConnected => "client.connected",
            Hook::ClientDisconnected => "client.disconnected",
            Hook::SessionSubscribed => "session.subscribed",
            Hook::SessionUnsubscribed => "session.unsubscribed",
            Hook::MessagePublish => "message.publish",
            Hook::MessageDelivered => "message.delivered",
            Hook::MessageAcked => "message.acked",
            Hook::AccessDenied => "access.denied",
        }
    }

    /// Parses a hook name; `message.deliver` is accepted as an alias.
    pub fn from_name(name: &str) -> Option<Hook> {
        if name == "message.deliver" {
            return Some(Hook::MessageDelivered);
        }
        Hook::ALL.into_iter().find(|hook| hook.name() == name)
    }

    /// Whether the event carries a message (topic, payload, qos).
    pub fn is_message(self) -> bool {
        matches!(
            self,
            Hook::MessagePublish | Hook::MessageDelivered | Hook::MessageAcked
        )
    }
}

/// One thing that happened in the broker. Cheap to clone: strings are shared and the
/// topic and payload point into the broker's own buffers.
#[derive(Debug, Clone)]
pub struct HookEvent {
    pub hook: Hook,
    /// Trigger time, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The client the event is about; for delivered/acked, the receiving client.
    pub client_id: Arc<str>,
    pub username: Arc<str>,
    /// Message topic, or the filter for session events; empty for client events.
    pub topic: Bytes,
    pub payload: Bytes,
    /// Message QoS, or the granted QoS for `session.subscribed`.
    pub qos: u8,
    /// Publisher of a delivered or acked message, when known.
    pub from: Option<Arc<str>>,
    /// Why a client disconnected (`client.disconnected`), or what it was denied
    /// (`access.denied`: `publish`, `subscribe` or `will`).
    pub reason: Option<&'static str>,
}

impl HookEvent {
    /// An event with no message fields, stamped now.
    pub fn new(hook: Hook, client_id: Arc<str>, username: Arc<str>) -> HookEvent {
        HookEvent {
            hook,
            ts_ms: now_ms(),
            client_id,
            username,
            topic: Bytes::new(),
            payload: Bytes::new(),
            qos: 0,
            from: None,
            reason: None,
        }
    }

    /// The topic as text; MQTT topics are UTF-8, anything else is shown lossily.
    pub fn topic_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.topic)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Producer side of the sharded event queue, shared by all connections.
pub struct HookQueue {
    shards: Vec<flume::Sender<HookEvent>>,
    when_full: QueueFullPolicy,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Seconds since `started` at which the last overflow warning was logged.
    last_overflow_log: AtomicU64,
}

/// Consumer side: one receiver per rule worker.
pub type HookReceiver = flume::Receiver<HookEvent>;

impl HookQueue {
    /// A queue of `capacity` events in total, split evenly over `shards` workers.
    pub fn new(shards: usize, capacity: usize, when_full: QueueFullPolicy, metrics: Arc<Metrics>) -> (HookQueue, Vec<HookReceiver>) {
        let per_shard = capacity.div_ceil(shards).max(1);
        let (senders, receivers) = (0..shards).map(|_| flume::bounded(per_shard)).unzip();
        let queue = HookQueue {
            shards: senders,
            when_full,
            metrics,
            started: Instant::now(),
            last_overflow_log: AtomicU64::new(u64::MAX),
        };
        (queue, receivers)
    }

    /// The shard that carries every event of `client_id`.
    pub fn shard_for(&self, client_id: &str) -> usize {
        // FNV-1a: stable, cheap on short ids, and computed once per connection.
        let hash = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % self.shards.len() as u64) as usize
    }

    /// Whether every shard is drained.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// Hands an event to its worker; when the shard is full, waits or drops as
    /// configured. Called from the connection's codec.
    pub fn push(&self, shard: usize, event: HookEvent) {
        Metrics::add(&self.metrics.hook_events[event.hook.code() as usize], 1);
        let event = match self.shards[shard].try_send(event) {
            Ok(()) => return,
            Err(flume::TrySendError::Full(event)) => event,
            // Workers are gone only during shutdown, when nothing new is accepted.
            Err(flume::TrySendError::Disconnected(event)) => return self.drop_event(&event),
        };
        self.log_full(&event);
        match self.when_full {
            QueueFullPolicy::Drop => self.drop_event(&event),
            QueueFullPolicy::Backpressure => {
                Metrics::add(&self.metrics.hook_queue_waits, 1);
                let sender = &self.shards[shard];
                // The codec cannot await; hand this worker thread's other tasks to the
                // runtime while the connection waits (on a current-thread runtime, as in
                // unit tests, the wait simply blocks).
                let sent = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| sender.send(event)),
                    _ => sender.send(event),
                };
                if let Err(flume::SendError(event)) = sent {
                    self.drop_event(&event);
                }
            }
        }
    }

    fn drop_event(&self, event: &HookEvent) {
        Metrics::add(&self.metrics.hook_events_dropped, 1);
        self.log_full(event);
    }

    fn log_full(&self, event: &HookEvent) {
        let now = self.started.elapsed().as_secs();
        if self.last_overflow_log.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                hook = event.hook.name(),
                client_id = %event.client_id,
                policy = ?self.when_full,
                dropped_total = Metrics::get(&self.metrics.hook_events_dropped),
                "hook queue full: rule workers or the sink (Kafka) cannot keep up; \
                 backpressure holds up publishers, drop loses events (broker.when_hook_queue_full)"
            );
        }
    }
}
