//! A rule worker: one thread per shard of the hook queue. It takes events in order,
//! asks the rules where each goes, encodes the envelope once per event and hands one
//! record per route to the sink.
//!
//! WebAssembly calls are CPU-bound, so workers are plain threads, not async tasks. A
//! worker owns its `Dispatcher` (and with it its rule instances); nothing on this path
//! is shared between workers except the sink and the live tail (touched only while
//! someone watches it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::envelope;
use crate::hooks::{HookEvent, HookReceiver};
use crate::metrics::Metrics;
use crate::rules::Dispatcher;
use crate::sink::{Record, Sink};
use crate::tail::Tail;

/// Most events taken from the queue before the sink is told a batch ended.
const BATCH: usize = 256;

/// Shared view of a worker, for shutdown: whether it is between batches.
#[derive(Default)]
pub struct WorkerState {
    pub busy: AtomicBool,
}

pub struct Worker {
    pub events: HookReceiver,
    pub dispatcher: Dispatcher,
    pub sink: Arc<dyn Sink>,
    pub node: Arc<str>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<WorkerState>,
    pub tail: Arc<Tail>,
}

impl Worker {
    /// Runs until every sender of the queue is gone.
    pub fn run(mut self) {
        let mut envelope = Vec::with_capacity(4096);
        let started = Instant::now();
        let last_sink_error = AtomicU64::new(0);
        while let Ok(first) = self.events.recv() {
            self.state.busy.store(true, Ordering::SeqCst);
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(event) = next {
                self.process(&event, &mut envelope, &started, &last_sink_error);
                taken += 1;
                next = if taken < BATCH { self.events.try_recv().ok() } else { None };
            }
            if let Err(e) = self.sink.end_batch() {
                tracing::error!(error = %e, "sink failed to write a batch");
            }
            self.state.busy.store(false, Ordering::SeqCst);
        }
    }

    fn process(&mut self, event: &HookEvent, envelope: &mut Vec<u8>, started: &Instant, last_sink_error: &AtomicU64) {
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
            };
            match sink.send(record) {
                Ok(()) if tail.watched() => tail.publish(event.hook, &event.client_id, &record),
                Ok(()) => {}
                Err(e) => {
                    let now = started.elapsed().as_secs() + 1;
                    if last_sink_error.swap(now, Ordering::Relaxed) != now {
                        tracing::error!(topic = %route.topic, client_id = %event.client_id, error = %e, "record not accepted by the sink");
                    }
                }
            }
        });
    }
}
