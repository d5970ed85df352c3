//! The boundary between the rule workers and the sinks: a `Ticket` per event, a
//! `Delivery` per record, and `Boundary`, the one place that counts and logs what
//! became of each record.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use super::{ErrorKind, SinkError};
use crate::internal_events::{InternalEvent, RecordFailed, RecordResent};
use crate::metrics::{Metrics, TopicSeries};

/// The records of one event still unresolved. The worker holds one count while it
/// routes the event; each `Delivery` holds one more until it is resolved.
#[derive(Debug)]
pub struct Ticket {
    unresolved: AtomicU32,
    /// A record of this event was not delivered and may be later: send it again.
    resend: AtomicBool,
}

impl Ticket {
    pub fn new() -> Arc<Ticket> {
        Arc::new(Ticket { unresolved: AtomicU32::new(1), resend: AtomicBool::new(false) })
    }

    /// The worker is done routing the event.
    pub fn routed(&self) {
        self.unresolved.fetch_sub(1, Ordering::Release);
    }

    /// Every record is resolved.
    pub fn finished(&self) -> bool {
        self.unresolved.load(Ordering::Acquire) == 0
    }

    /// Some record was not delivered and must be sent again; read once `finished`.
    pub fn needs_resend(&self) -> bool {
        self.resend.load(Ordering::Acquire)
    }
}

/// Counts and logs the fate of every record; shared by the workers and the sinks.
pub struct Boundary {
    metrics: Arc<Metrics>,
}

impl Boundary {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Boundary> {
        Arc::new(Boundary { metrics })
    }

    /// A record of the event behind `ticket`, raised at `event_ms` (unix ms), is handed
    /// to a sink for `topic`.
    pub fn begin(self: &Arc<Self>, ticket: &Arc<Ticket>, topic: &str, event_ms: u64) -> Delivery {
        ticket.unresolved.fetch_add(1, Ordering::Relaxed);
        Metrics::add(&self.metrics.records_sent, 1);
        Delivery { ticket: ticket.clone(), boundary: self.clone(), series: self.metrics.records.series(topic), event_ms, resolved: false }
    }
}

/// One record's way to its destination. The sink resolves it exactly once; dropping it
/// unresolved means "not delivered, send again".
#[must_use = "a Delivery dropped unresolved sends its event again"]
pub struct Delivery {
    ticket: Arc<Ticket>,
    boundary: Arc<Boundary>,
    series: TopicSeries,
    event_ms: u64,
    resolved: bool,
}

impl Delivery {
    /// The destination has the record.
    pub fn delivered(mut self) {
        self.boundary.metrics.record_delivered(self.series, self.event_ms);
        self.resolve(false);
    }

    /// The destination did not take the record: a `Final` error is counted and logged
    /// and the event committed; a `Retriable` one sends the event again.
    pub fn failed(mut self, error: &SinkError) {
        let boundary = &self.boundary;
        match error.kind {
            ErrorKind::Final => {
                RecordFailed { metrics: &boundary.metrics, series: self.series, error }.emit();
                self.resolve(false);
            }
            ErrorKind::Retriable => {
                RecordResent { error }.emit();
                self.resolve(true);
            }
        }
    }

    fn resolve(&mut self, resend: bool) {
        if resend {
            Metrics::add(&self.boundary.metrics.records_resent, 1);
            self.ticket.resend.store(true, Ordering::Release);
        }
        self.resolved = true;
        self.ticket.unresolved.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.resolved {
            self.resolve(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Outcome;

    fn boundary() -> (Arc<Metrics>, Arc<Boundary>) {
        let metrics = Arc::new(Metrics::default());
        (metrics.clone(), Boundary::new(metrics))
    }

    #[test]
    fn an_event_is_finished_once_it_is_routed_and_every_record_is_resolved() {
        let (metrics, boundary) = boundary();
        let ticket = Ticket::new();
        let first = boundary.begin(&ticket, "t", 0);
        let second = boundary.begin(&ticket, "t", 0);
        ticket.routed();
        first.delivered();
        assert!(!ticket.finished());
        second.failed(&SinkError::final_("too large"));
        assert!(ticket.finished() && !ticket.needs_resend());
        assert_eq!(metrics.records.total(Outcome::Delivered), 1);
        assert_eq!(metrics.records.total(Outcome::Failed), 1);
        assert_eq!(Metrics::get(&metrics.records_sent), 2);
    }

    #[test]
    fn a_retriable_failure_or_a_forgotten_delivery_sends_the_event_again_uncounted() {
        let (metrics, boundary) = boundary();
        for resolve in [|d: Delivery| d.failed(&SinkError::retriable("Kafka away")), drop as fn(Delivery)] {
            let ticket = Ticket::new();
            resolve(boundary.begin(&ticket, "t", 0));
            ticket.routed();
            assert!(ticket.finished() && ticket.needs_resend());
        }
        assert_eq!(metrics.records.total(Outcome::Delivered) + metrics.records.total(Outcome::Failed), 0);
        assert_eq!(Metrics::get(&metrics.records_resent), 2);
    }
}
