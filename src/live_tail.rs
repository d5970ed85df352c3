//! The live tail: a copy of each routed record for whoever watches `/api/tail` (the
//! dashboard, or `curl -N`).
//!
//! Nobody watching costs one relaxed atomic load per record: workers call `watched()`
//! before building anything. While someone watches, each record accepted by the sink is
//! copied (its envelope, and the MQTT payload as text when it is UTF-8, each cut to
//! `PREVIEW_BYTES`) into a tokio broadcast channel of
//! `CAPACITY` items. Sending never waits: a viewer that falls behind loses the oldest
//! items, is told how many, and they are counted in `tail_dropped`. The workers and the
//! sink never wait for a viewer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::hooks::HookEvent;
use crate::sink::Record;

/// Items buffered per viewer before the oldest are dropped. Small on purpose: a person
/// reads a few records a second, and memory must stay bounded under full load.
pub const CAPACITY: usize = 256;

/// Longest envelope preview sent to viewers; a 1 KiB payload's envelope fits.
pub const PREVIEW_BYTES: usize = 2048;

/// A routed record as a viewer sees it.
#[derive(Debug, Serialize)]
pub struct TailItem {
    /// Kafka topic the rule chose.
    pub topic: String,
    /// Record key (the client id unless the rule gave one), as text.
    pub key: String,
    pub client_id: String,
    /// Hook name, e.g. `message.publish`.
    pub hook: &'static str,
    /// The record value (JSON envelope), at most `PREVIEW_BYTES`.
    pub envelope: String,
    /// Whether `envelope` was cut.
    pub truncated: bool,
    /// The event's payload (the MQTT payload) as text, at most `PREVIEW_BYTES`; `None`
    /// when it is not UTF-8.
    pub payload: Option<String>,
    /// The payload's length in bytes.
    pub payload_bytes: usize,
}

/// The first `PREVIEW_BYTES` of `value`, cut on a UTF-8 character boundary; whether it
/// was cut.
fn preview(value: &[u8]) -> (&[u8], bool) {
    let mut cut = value.len().min(PREVIEW_BYTES);
    while cut < value.len() && cut > 0 && (value[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    (&value[..cut], cut < value.len())
}

/// Shared by the workers (senders) and the admin endpoint (viewers).
pub struct Tail {
    sender: broadcast::Sender<Arc<TailItem>>,
    /// Open viewers; kept apart from the channel's own count, which takes a lock.
    watchers: AtomicUsize,
}

impl Default for Tail {
    fn default() -> Self {
        Tail { sender: broadcast::channel(CAPACITY).0, watchers: AtomicUsize::new(0) }
    }
}

impl Tail {
    /// Whether anyone watches; check before calling `show`.
    #[inline]
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Copies one record routed for `event` to the viewers; never blocks.
    pub fn show(&self, event: &HookEvent, record: &Record<'_>) {
        // Envelopes are JSON text; a payload is shown as text only when it is.
        let (envelope, truncated) = preview(record.value);
        let (payload, _) = preview(&event.payload);
        let item = TailItem {
            topic: record.topic.to_string(),
            key: String::from_utf8_lossy(record.key).into_owned(),
            client_id: event.client_id.to_string(),
            hook: event.hook.name(),
            envelope: String::from_utf8_lossy(envelope).into_owned(),
            truncated,
            payload: std::str::from_utf8(payload).ok().map(str::to_owned),
            payload_bytes: event.payload.len(),
        };
        // An error only means the last viewer left since `watched()`: nothing to do.
        let _ = self.sender.send(Arc::new(item));
    }

    /// A new viewer, counted until it is dropped.
    pub fn watch(self: &Arc<Self>) -> TailWatch {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        TailWatch { receiver: self.sender.subscribe(), tail: self.clone() }
    }
}

/// One viewer's receiving end.
pub struct TailWatch {
    pub receiver: broadcast::Receiver<Arc<TailItem>>,
    tail: Arc<Tail>,
}

impl Drop for TailWatch {
    fn drop(&mut self) {
        self.tail.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::Hook;

    fn state_report(payload: &[u8]) -> HookEvent {
        let mut event = HookEvent::new(Hook::MessagePublish, "lock-1".into(), "".into());
        event.payload = bytes::Bytes::copy_from_slice(payload);
        event
    }

    fn record<'a>(value: &'a [u8]) -> Record<'a> {
        Record { topic: "message_state", key: b"lock-1", value, headers: &[], envelope: true }
    }

    #[test]
    fn watched_only_while_a_viewer_is_open() {
        let tail = Arc::new(Tail::default());
        assert!(!tail.watched());
        let watch = tail.watch();
        assert!(tail.watched());
        drop(watch);
        assert!(!tail.watched());
    }

    #[test]
    fn long_envelopes_are_cut_on_a_character_boundary() {
        let tail = Arc::new(Tail::default());
        let mut watch = tail.watch();
        let mut value = vec![b'a'; PREVIEW_BYTES - 1];
        value.extend_from_slice("é and more".as_bytes());
        tail.show(&state_report(b"{}"), &record(&value));
        let item = watch.receiver.try_recv().unwrap();
        assert!(item.truncated);
        assert_eq!(item.envelope.len(), PREVIEW_BYTES - 1);
        assert_eq!((item.topic.as_str(), item.key.as_str(), item.hook), ("message_state", "lock-1", "message.publish"));
    }

    #[test]
    fn a_payload_is_shown_as_text_only_when_it_is_utf8() {
        let tail = Arc::new(Tail::default());
        let mut watch = tail.watch();
        tail.show(&state_report(br#"{"battery":12.5}"#), &record(b"{}"));
        tail.show(&state_report(&[0xff, 0x00, 0x41]), &record(b"{}"));
        let text = watch.receiver.try_recv().unwrap();
        assert_eq!((text.payload.as_deref(), text.payload_bytes), (Some(r#"{"battery":12.5}"#), 16));
        let binary = watch.receiver.try_recv().unwrap();
        assert_eq!((binary.payload.as_deref(), binary.payload_bytes), (None, 3));
    }

    #[test]
    fn a_slow_viewer_is_told_how_many_it_missed() {
        let tail = Arc::new(Tail::default());
        let mut watch = tail.watch();
        for _ in 0..CAPACITY + 5 {
            tail.show(&state_report(b"{}"), &record(b"{}"));
        }
        assert_eq!(watch.receiver.try_recv().unwrap_err(), broadcast::error::TryRecvError::Lagged(5));
        assert!(!watch.receiver.try_recv().unwrap().truncated);
    }
}
