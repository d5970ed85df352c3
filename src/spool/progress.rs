//! Delivery progress of one shard: which events the sink has fully delivered, in spool
//! order, so the worker can commit the longest delivered prefix.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::Position;

/// The records of one event still undelivered. The worker holds one count while it
/// routes the event; the sink takes one per record and gives it back on delivery.
#[derive(Debug)]
pub struct Ticket(AtomicU32);

impl Ticket {
    pub fn new() -> Arc<Ticket> {
        Arc::new(Ticket(AtomicU32::new(1)))
    }

    /// One more record of this event is on its way.
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One record was delivered, or finally failed (counted and logged by the sink).
    pub fn done(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }

    fn finished(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// Events read but not yet wholly delivered, oldest first.
pub struct Progress {
    pending: VecDeque<(Arc<Ticket>, Position)>,
    delivered: Position,
}

impl Progress {
    /// Progress of a reader starting at `from`.
    pub fn new(from: Position) -> Progress {
        Progress { pending: VecDeque::new(), delivered: from }
    }

    /// Notes an event read from the spool, whose routing the worker has finished.
    pub fn track(&mut self, ticket: Arc<Ticket>, after: Position) {
        // Nothing older waits and this one is already delivered (or routed nowhere):
        // it needs no slot; `delivered_up_to` covers it through `read_up_to`.
        if self.pending.is_empty() && ticket.finished() {
            return;
        }
        self.pending.push_back((ticket, after));
    }

    /// The position up to which everything is delivered: after the last delivered
    /// event at the front, or `read_up_to` once nothing is pending.
    pub fn delivered_up_to(&mut self, read_up_to: Position) -> Position {
        while let Some((ticket, after)) = self.pending.front() {
            if !ticket.finished() {
                break;
            }
            self.delivered = *after;
            self.pending.pop_front();
        }
        if self.pending.is_empty() {
            self.delivered = self.delivered.max(read_up_to);
        }
        self.delivered
    }

    /// The position up to which everything was delivered when last asked.
    pub fn delivered(&self) -> Position {
        self.delivered
    }

    /// Whether every tracked event is delivered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
