//! Delivery progress of one shard: which events the sink has fully delivered, in spool
//! order, so the worker can commit the longest delivered prefix, and where to send
//! again from when a record was not delivered.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::sink::Ticket;
use crate::spool::Position;

/// Events read but not yet wholly resolved, oldest first.
pub struct Progress {
    pending: VecDeque<(Arc<Ticket>, Position)>,
    delivered: Position,
}

/// What the worker learns from its progress.
#[derive(Debug, PartialEq, Eq)]
pub enum Look {
    /// Everything up to here is delivered.
    DeliveredUpTo(Position),
    /// The event after this position was not wholly delivered: read again from here
    /// (everything before it is delivered).
    ResendFrom(Position),
}

impl Progress {
    /// Progress of a reader starting at `from`.
    pub fn new(from: Position) -> Progress {
        Progress { pending: VecDeque::new(), delivered: from }
    }

    /// Tracks a routed event that ends at `after`.
    pub fn track(&mut self, ticket: Arc<Ticket>, after: Position) {
        // Most events are resolved by the time they are tracked (the file sink, events
        // no rule routes): skip the queue while nothing older is pending.
        if self.pending.is_empty() && ticket.finished() && !ticket.needs_resend() {
            self.delivered = after;
            return;
        }
        self.pending.push_back((ticket, after));
    }

    /// Moves past the resolved events at the front. `read_up_to` is where the reader
    /// stands: with nothing pending, everything up to it is delivered.
    pub fn look(&mut self, read_up_to: Position) -> Look {
        while let Some((ticket, after)) = self.pending.front() {
            if !ticket.finished() {
                break;
            }
            if ticket.needs_resend() {
                return Look::ResendFrom(self.delivered);
            }
            self.delivered = *after;
            self.pending.pop_front();
        }
        if self.pending.is_empty() {
            self.delivered = self.delivered.max(read_up_to);
        }
        Look::DeliveredUpTo(self.delivered)
    }

    /// Whether every tracked event is resolved.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::sink::Boundary;

    fn at(offset: u64) -> Position {
        Position { segment: 0, offset }
    }

    #[test]
    fn commits_the_delivered_prefix_and_resends_from_the_first_undelivered_event() {
        let boundary = Boundary::new(Arc::new(Metrics::default()));
        let mut progress = Progress::new(at(0));
        let tickets: Vec<_> = (0..3).map(|_| crate::sink::Ticket::new()).collect();
        let deliveries: Vec<_> = tickets.iter().map(|t| boundary.begin(t, "t", 0)).collect();
        for (i, ticket) in tickets.iter().enumerate() {
            ticket.routed();
            progress.track(ticket.clone(), at(10 * (i as u64 + 1)));
        }
        let mut deliveries = deliveries.into_iter();
        let (first, second, third) = (deliveries.next().unwrap(), deliveries.next().unwrap(), deliveries.next().unwrap());
        third.delivered();
        assert_eq!(progress.look(at(30)), Look::DeliveredUpTo(at(0)), "a later delivery commits nothing before the first");
        first.delivered();
        assert_eq!(progress.look(at(30)), Look::DeliveredUpTo(at(10)));
        drop(second);
        assert_eq!(progress.look(at(30)), Look::ResendFrom(at(10)));
    }
}
