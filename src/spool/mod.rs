//! The spool: the durable buffer between the broker and the rule workers.
//!
//! Every hook event is appended to the spool by the connection that raised it, before
//! the broker goes on to acknowledge the packet; rule workers read the spool in order
//! and commit what the sink has delivered. So an acknowledged publish is on disk (in the
//! page cache at least, which a killed process cannot lose; on the platter as the fsync
//! policy says), a Kafka outage only makes the spool longer, and a restart resumes from
//! the last commit.
//!
//! Sharded by client id like the workers: one shard, one worker, one ordered log, which
//! is what keeps each device's records in order across outages and restarts. Memory use
//! does not depend on the backlog: workers read a bounded chunk at a time.

mod error;
mod frame;
mod shard;
mod store;

pub use error::SpoolError;
pub use shard::{Position, ReadBatch, Shard, ShardReader};
pub use store::{Push, Spool, SpoolBatch};
