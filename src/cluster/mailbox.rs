//! Mailboxes: messages waiting for a session, as every node reads them from the
//! mailbox topic (keyed by client id, so one client's messages keep their order in one
//! partition). A message stays until the session's cursor (the offset of its first
//! unacknowledged message, in the sessions topic) passes it, or the session ends.
//! The connection holding the session takes its messages from here, woken as they come.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

#[derive(Default)]
struct Mailbox {
    /// (offset, encoded message), in offset order.
    mail: VecDeque<(i64, Bytes)>,
    /// The offset after the last message read for this client.
    end: i64,
    /// The connection holding the session here, woken for each new message.
    wake: Option<Arc<Notify>>,
}

#[derive(Default)]
pub struct Mailboxes {
    boxes: Mutex<HashMap<Arc<str>, Mailbox>>,
}

impl Mailboxes {
    fn boxes(&self) -> MutexGuard<'_, HashMap<Arc<str>, Mailbox>> {
        self.boxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message read from the mailbox topic.
    pub fn add(&self, client: &str, offset: i64, message: Bytes) {
        let mut boxes = self.boxes();
        let mailbox = match boxes.get_mut(client) {
            Some(mailbox) => mailbox,
            None => boxes.entry(client.into()).or_default(),
        };
        if offset < mailbox.end {
            return;
        }
        mailbox.mail.push_back((offset, message));
        mailbox.end = offset + 1;
        if let Some(wake) = &mailbox.wake {
            wake.notify_one();
        }
    }

    /// Forgets the messages before `cursor`: acknowledged.
    pub fn acknowledged(&self, client: &str, cursor: i64) {
        if let Some(mailbox) = self.boxes().get_mut(client) {
            while mailbox.mail.front().is_some_and(|(offset, _)| *offset < cursor) {
                mailbox.mail.pop_front();
            }
        }
    }

    /// The session ended: its messages are given up; returns them.
    pub fn close(&self, client: &str) -> Vec<Bytes> {
        let mut boxes = self.boxes();
        let Some(mailbox) = boxes.get_mut(client) else { return Vec::new() };
        let given_up = mailbox.mail.drain(..).map(|(_, m)| m).collect();
        if mailbox.wake.is_none() {
            // The end offset is kept while a connection holds it: a fresh session starts there.
            boxes.remove(client);
        }
        given_up
    }

    /// Keeps only the mailboxes `keep` says a session exists for.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.boxes().retain(|client, mailbox| mailbox.wake.is_some() || keep(client));
    }

    /// The offset the next message for `client` will have, as far as this node has read.
    pub fn end(&self, client: &str) -> i64 {
        self.boxes().get(client).map_or(0, |m| m.end)
    }

    /// A connection holds `client`'s session here: `wake` is notified of new messages.
    pub fn attach(&self, client: &Arc<str>, wake: Arc<Notify>) {
        let mut boxes = self.boxes();
        let mailbox = boxes.entry(client.clone()).or_default();
        if !mailbox.mail.is_empty() {
            wake.notify_one();
        }
        mailbox.wake = Some(wake);
    }

    /// The connection is gone (if `wake` is still the attached one).
    pub fn detach(&self, client: &str, wake: &Arc<Notify>) {
        if let Some(mailbox) = self.boxes().get_mut(client) {
            if mailbox.wake.as_ref().is_some_and(|w| Arc::ptr_eq(w, wake)) {
                mailbox.wake = None;
            }
        }
    }

    /// Up to `max` messages of `client` from offset `from` on.
    pub fn take(&self, client: &str, from: i64, max: usize) -> Vec<(i64, Bytes)> {
        let boxes = self.boxes();
        let Some(mailbox) = boxes.get(client) else { return Vec::new() };
        let start = mailbox.mail.partition_point(|(offset, _)| *offset < from);
        mailbox.mail.range(start..).take(max).cloned().collect()
    }

    /// Messages waiting, all sessions together.
    pub fn pending(&self) -> usize {
        self.boxes().values().map(|m| m.mail.len()).sum()
    }

    /// Messages waiting for `client`.
    pub fn pending_for(&self, client: &str) -> Vec<Bytes> {
        self.boxes().get(client).map(|m| m.mail.iter().map(|(_, b)| b.clone()).collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn messages_are_taken_in_order_from_a_cursor_and_forgotten_once_acknowledged() {
        let mailboxes = Mailboxes::default();
        for offset in [3, 5, 9] {
            mailboxes.add("lock-1", offset, Bytes::from(offset.to_string()));
        }
        mailboxes.add("lock-1", 5, Bytes::from_static(b"read twice"));
        let offsets = |from| mailboxes.take("lock-1", from, 10).into_iter().map(|(o, _)| o).collect::<Vec<_>>();
        assert_eq!(offsets(0), vec![3, 5, 9]);
        assert_eq!(offsets(4), vec![5, 9]);
        mailboxes.acknowledged("lock-1", 6);
        assert_eq!(offsets(0), vec![9]);
        assert_eq!(mailboxes.end("lock-1"), 10);
        assert_eq!(mailboxes.close("lock-1").len(), 1);
        assert_eq!(mailboxes.pending(), 0);
    }

    #[test]
    fn an_attached_connection_is_woken_by_new_and_waiting_messages() {
        let mailboxes = Mailboxes::default();
        let client: Arc<str> = "lock-1".into();
        mailboxes.add("lock-1", 0, Bytes::from_static(b"waiting"));
        let wake = Arc::new(Notify::new());
        mailboxes.attach(&client, wake.clone());
        assert!(wake.notified().now_or_never().is_some(), "a waiting message wakes at once");
        mailboxes.add("lock-1", 1, Bytes::from_static(b"new"));
        assert!(wake.notified().now_or_never().is_some());
        mailboxes.detach("lock-1", &wake);
        mailboxes.add("lock-1", 2, Bytes::from_static(b"later"));
        assert!(wake.notified().now_or_never().is_none());
    }
}
