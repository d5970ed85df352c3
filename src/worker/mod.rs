//! A rule worker: one thread per spool shard. It reads the shard's events in order,
//! asks the rules where each goes, encodes the envelope once per event, hands one record
//! per route to the sink, and commits in the spool what the sink has delivered.
//!
//! WebAssembly calls are CPU-bound, so workers are plain threads, not async tasks. A
//! worker owns its `Dispatcher` (and with it its rule instances); nothing on this path
//! is shared between workers except the sink and the live tail (touched only while
//! someone watches it).

mod rule_worker;
mod shard_progress;

pub use rule_worker::{Worker, WorkerState, NODE_HEADER, SEQ_HEADER};
