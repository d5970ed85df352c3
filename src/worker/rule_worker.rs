//! A rule worker: one thread per spool shard that reads events in order, runs the rules,
//! encodes the records, hands them to the sinks and commits what was delivered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::shard_progress::{Look, Progress};
use crate::envelope;
use crate::hooks::HookEvent;
use crate::internal_events::{InternalEvent, SpoolReadFailed};
use crate::live_tail::Tail;
use crate::metrics::Metrics;
use crate::rules::{Dispatcher, Output, RouteValue};
use crate::sink::{Boundary, Record, Sinks, Ticket};
use crate::spool::{ReadBatch, ShardReader};

/// Record headers every record carries (see `docs/kafka.md`).
pub const NODE_HEADER: &str = "hookline-node";
pub const SEQ_HEADER: &str = "hookline-seq";

/// Longest wait for new events or delivery reports before looking again.
const IDLE_POLL: Duration = Duration::from_millis(10);
/// Pause before reading again after a record was not delivered.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Shared view of a worker, for shutdown and tests.
#[derive(Default)]
pub struct WorkerState {
    /// Everything read so far is delivered and committed, and nothing more was
    /// written when last looked.
    pub drained: AtomicBool,
    /// Set once to stop: the worker delivers what the spool holds until it is drained
    /// or this deadline passes, commits what was delivered, and returns.
    pub stop_by: OnceLock<Instant>,
}

pub struct Worker {
    pub reader: ShardReader,
    pub dispatcher: Dispatcher,
    pub sinks: Arc<Sinks>,
    pub boundary: Arc<Boundary>,
    pub node: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<WorkerState>,
    pub tail: Arc<Tail>,
}

impl Worker {
    /// Runs until `state.stop_by` is set and reached, or everything is delivered after it.
    pub fn run(mut self) {
        let mut envelope = Vec::with_capacity(4096);
        let mut batch = ReadBatch::new();
        let mut progress = Progress::new(self.reader.position());
        loop {
            if let Err(error) = self.reader.read(&mut batch, &self.metrics) {
                SpoolReadFailed { error: &error }.emit();
                if self.stopping() {
                    return;
                }
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
            let read_some = !batch.is_empty();
            for (event, after) in batch.drain(..) {
                let ticket = Ticket::new();
                self.process(&event, &ticket, &mut envelope);
                ticket.routed();
                progress.track(ticket, after);
            }
            if read_some {
                self.sinks.end_batch();
            }
            let delivered = match progress.look(self.reader.position()) {
                Look::DeliveredUpTo(delivered) => delivered,
                Look::ResendFrom(from) => {
                    // Logged and counted at the sink boundary; the sink may need time.
                    self.reader.shard().mark_delivered(from);
                    progress = Progress::new(from);
                    self.reader.rewind(from);
                    self.state.drained.store(false, Ordering::SeqCst);
                    if self.stopping() {
                        return;
                    }
                    std::thread::sleep(RETRY_AFTER);
                    continue;
                }
            };
            self.reader.shard().mark_delivered(delivered);
            let caught_up = self.reader.caught_up();
            let drained = progress.is_empty() && caught_up;
            self.state.drained.store(drained, Ordering::SeqCst);
            if self.stopping() && (drained || self.past_deadline()) {
                return;
            }
            if caught_up {
                self.reader.shard().wait_for_append(IDLE_POLL);
            }
        }
    }

    fn stopping(&self) -> bool {
        self.state.stop_by.get().is_some()
    }

    fn past_deadline(&self) -> bool {
        self.state.stop_by.get().is_some_and(|deadline| Instant::now() >= *deadline)
    }

    fn process(&mut self, event: &HookEvent, ticket: &Arc<Ticket>, envelope: &mut Vec<u8>) {
        let mut encoded = false;
        let mut seq = itoa::Buffer::new();
        let (sinks, boundary, tail) = (&self.sinks, &self.boundary, &self.tail);
        let node = &*self.node;
        self.dispatcher.dispatch(event, |output| {
            // Only `kafka.record` decisions publish, and those never reach a worker.
            let Output::Route(route) = output else { return };
            let value: &[u8] = match &route.value {
                RouteValue::Envelope => {
                    if !encoded {
                        envelope::encode(event, node, envelope);
                        encoded = true;
                    }
                    envelope
                }
                RouteValue::Payload => &event.payload,
                RouteValue::Bytes(bytes) => bytes,
            };
            // The rule's headers, then the gateway's: which node raised the event, and
            // its number in the device's session, for ordering across nodes. Most routes
            // have no headers of their own: then the gateway's need no allocation.
            let gateway = [(NODE_HEADER, node.as_bytes()), (SEQ_HEADER, seq.format(event.seq).as_bytes())];
            let gateway = &gateway[..if event.seq > 0 { 2 } else { 1 }];
            let joined: Vec<(&str, &[u8])>;
            let headers = match route.headers.is_empty() {
                true => gateway,
                false => {
                    joined = route
                        .headers
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_slice()))
                        .chain(gateway.iter().copied())
                        .collect();
                    &joined
                }
            };
            let record = Record {
                topic: &route.topic,
                key: route.key.as_deref().unwrap_or(event.client_id.as_bytes()),
                value,
                headers,
                envelope: route.value == RouteValue::Envelope,
            };
            if tail.watched() {
                tail.show(event, &record);
            }
            sinks.get(route.destination).send(record, boundary.begin(ticket, &route.topic, event.ts_ms));
        });
    }
}
