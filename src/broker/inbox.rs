//! A session's inbox: the messages the edge routes to it itself (those of its
//! subscriptions to one exact topic, such as a lock's command topic), waiting for its
//! connection to take them within the client's Receive Maximum. A persistent session
//! keeps its inbox while its client is away, and what the client did not acknowledge
//! goes back to the front of it.
//!
//! This is what lets an idle device cost little: it needs no router link to be
//! reachable, only an entry in the edge's index of exact topics and this queue, which
//! holds nothing while nothing is sent to it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::mail_message::Mail;

pub struct Inbox {
    /// The session's client id.
    pub client: Arc<str>,
    queue: Mutex<VecDeque<Mail>>,
    /// Notified when a message arrives.
    pub wake: Notify,
}

/// Why a message did not go into an inbox.
#[derive(Debug, PartialEq, Eq)]
pub struct InboxFull;

impl Inbox {
    pub fn new(client: Arc<str>) -> Inbox {
        Inbox { client, queue: Mutex::new(VecDeque::new()), wake: Notify::new() }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Mail>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `mail` behind what waits, unless `capacity` messages wait already.
    pub fn push(&self, mail: Mail, capacity: usize) -> Result<(), InboxFull> {
        {
            let mut queue = self.queue();
            if queue.len() >= capacity {
                return Err(InboxFull);
            }
            queue.push_back(mail);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Takes at most `count` messages, oldest first.
    pub fn take(&self, count: usize) -> Vec<Mail> {
        let mut queue = self.queue();
        let count = count.min(queue.len());
        let taken = queue.drain(..count).collect();
        if queue.is_empty() && queue.capacity() > 0 {
            // An idle session keeps no buffer.
            *queue = VecDeque::new();
        }
        taken
    }

    /// Puts messages taken and not acknowledged back in front of what waits, in their
    /// order, whatever the capacity: they were accepted once.
    pub fn put_back(&self, mails: Vec<Mail>) {
        if mails.is_empty() {
            return;
        }
        {
            let mut queue = self.queue();
            for mail in mails.into_iter().rev() {
                queue.push_front(mail);
            }
        }
        self.wake.notify_one();
    }

    /// Takes everything that waits.
    pub fn drain(&self) -> Vec<Mail> {
        self.take(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::broker::origin::Origin;

    fn mail(n: u8) -> Mail {
        let origin = Origin { qos: 1, retain: false, published_ms: 0, from: "lock-1".into(), ack: None };
        Mail { topic: Bytes::from_static(b"devices/lock-1/command"), payload: Bytes::from(vec![n]), props: None, origin }
    }

    fn payloads(mails: &[Mail]) -> Vec<u8> {
        mails.iter().map(|m| m.payload[0]).collect()
    }

    #[test]
    fn messages_come_out_in_order_and_those_put_back_come_first() {
        let inbox = Inbox::new("lock-1".into());
        for n in 1..=4 {
            inbox.push(mail(n), 10).unwrap();
        }
        let taken = inbox.take(2);
        assert_eq!(payloads(&taken), [1, 2]);
        inbox.put_back(taken);
        assert_eq!(payloads(&inbox.drain()), [1, 2, 3, 4]);
    }

    #[test]
    fn a_full_inbox_refuses_new_messages_but_takes_back_its_own() {
        let inbox = Inbox::new("lock-1".into());
        inbox.push(mail(1), 2).unwrap();
        inbox.push(mail(2), 2).unwrap();
        assert_eq!(inbox.push(mail(3), 2), Err(InboxFull));
        let taken = inbox.take(2);
        inbox.push(mail(3), 2).unwrap();
        inbox.push(mail(4), 2).unwrap();
        inbox.put_back(taken);
        assert_eq!(payloads(&inbox.drain()), [1, 2, 3, 4]);
    }
}
