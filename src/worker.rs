//! A rule worker: one thread per spool shard. It reads the shard's events in order,
//! asks the rules where each goes, encodes the envelope once per event, hands one record
//! per route to the sink, and commits in the spool what the sink has delivered.
//!
//! WebAssembly calls are CPU-bound, so workers are plain threads, not async tasks. A
//! worker owns its `Dispatcher` (and with it its rule instances); nothing on this path
//! is shared between workers except the sink and the live tail (touched only while
//! someone watches it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::envelope;
use crate::hooks::HookEvent;
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::rules::Dispatcher;
use crate::sink::{Record, Sink};
use crate::spool::{Progress, ReadBatch, ShardReader, Ticket};
use crate::tail::Tail;

/// Longest wait for new events or delivery reports before looking again.
const IDLE_POLL: Duration = Duration::from_millis(10);
/// Pause before reading again after the sink failed a batch.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Shared view of a worker, for shutdown and tests.
#[derive(Default)]
pub struct WorkerState {
    /// Everything read so far is delivered and committed, and nothing more was
    /// written when last looked.
    pub drained: AtomicBool,
}

pub struct Worker {
    pub reader: ShardReader,
    pub dispatcher: Dispatcher,
    pub sink: Arc<dyn Sink>,
    pub node: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<WorkerState>,
    pub tail: Arc<Tail>,
}

impl Worker {
    /// Runs for the life of the process.
    pub fn run(mut self) {
        let mut envelope = Vec::with_capacity(4096);
        let mut batch = ReadBatch::new();
        let mut progress = Progress::new(self.reader.position());
        let read_log = LogLimit::new();
        let sink_log = LogLimit::new();
        loop {
            if let Err(error) = self.reader.read(&mut batch, &self.metrics) {
                if let Some(skipped) = read_log.allow() {
                    tracing::error!(%error, skipped, "cannot read the spool; retrying");
                }
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
            let read_some = !batch.is_empty();
            for (event, after) in batch.drain(..) {
                let ticket = Ticket::new();
                self.process(&event, &ticket, &mut envelope, &sink_log);
                ticket.done();
                progress.track(ticket, after);
            }
            if let Err(error) = if read_some { self.sink.end_batch() } else { Ok(()) } {
                tracing::error!(%error, "the sink failed a batch; sending it again from the last delivered event");
                let from = progress.delivered();
                progress = Progress::new(from);
                self.reader.rewind(from);
                std::thread::sleep(RETRY_AFTER);
                continue;
            }
            self.reader.shard().mark_delivered(progress.delivered_up_to(self.reader.position()));
            let caught_up = self.reader.caught_up();
            self.state.drained.store(progress.is_empty() && caught_up, Ordering::SeqCst);
            if caught_up {
                self.reader.shard().wait_for_append(IDLE_POLL);
            }
        }
    }

    fn process(&mut self, event: &HookEvent, ticket: &Arc<Ticket>, envelope: &mut Vec<u8>, sink_log: &LogLimit) {
        let mut encoded = false;
        let sink = &self.sink;
        let tail = &self.tail;
        let node = &*self.node;
        self.dispatcher.dispatch(event, |route| {
            if !encoded {
                envelope::encode(event, node, envelope);
                encoded = true;
            }
            let record = Record {
                topic: &route.topic,
                key: route.key.as_deref().unwrap_or(event.client_id.as_bytes()),
                value: envelope,
                headers: &route.headers,
                event_ms: event.ts_ms,
            };
            match sink.send(record, ticket) {
                Ok(()) if tail.watched() => tail.publish(event.hook, &event.client_id, &record),
                Ok(()) => {}
                Err(e) => {
                    if let Some(skipped) = sink_log.allow() {
                        tracing::error!(topic = %route.topic, client_id = %event.client_id, error = %e, skipped, "record not accepted by the sink");
                    }
                }
            }
        });
    }
}
