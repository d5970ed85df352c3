//! What happens to the spool: full, failing writes and fsyncs, progress not written
//! down, reads that fail.

use super::{InternalEvent, LogLimit};
use crate::config::WhenFull;
use crate::hooks::HookEvent;
use crate::metrics::Metrics;

/// An event did not fit the spool's budget (`buffer.max_bytes`): `buffer.when_full`
/// decides, and the decision is counted (dropped, rejected, or waited for).
pub struct SpoolFull<'a> {
    pub metrics: &'a Metrics,
    pub event: &'a HookEvent,
    pub policy: WhenFull,
    pub backlog_bytes: u64,
    pub max_bytes: u64,
}

impl InternalEvent for SpoolFull<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        let metrics = self.metrics;
        let counter = match self.policy {
            WhenFull::Drop => &metrics.spool_dropped,
            WhenFull::Reject => &metrics.spool_rejected,
            WhenFull::Backpressure => &metrics.spool_full_waits,
        };
        Metrics::add(counter, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(
                skipped,
                hook = self.event.hook.name(),
                client_id = %self.event.client_id,
                policy = ?self.policy,
                backlog_bytes = self.backlog_bytes,
                max_bytes = self.max_bytes,
                dropped_total = Metrics::get(&metrics.spool_dropped),
                rejected_total = Metrics::get(&metrics.spool_rejected),
                "spool full: Kafka has been slower than the devices for a while (buffer.max_bytes); \
                 applying buffer.when_full"
            );
        }
    }
}

/// A batch could not be appended to the spool: nothing of it is acknowledged.
pub struct SpoolWriteFailed<'a> {
    pub metrics: &'a Metrics,
    pub error: &'a std::io::Error,
}

impl InternalEvent for SpoolWriteFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        Metrics::add(&self.metrics.spool_write_errors, 1);
        if let Some(skipped) = LOG.allow() {
            tracing::error!(
                error = %self.error,
                skipped,
                errors_total = Metrics::get(&self.metrics.spool_write_errors),
                "cannot write to the spool (disk full or failing?): closing the connection unacknowledged"
            );
        }
    }
}

/// An fsync of the spool failed. Not counted: the records are written, only their
/// survival of a power loss is in doubt, and the next fsync tries again.
pub struct SpoolFsyncFailed<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for SpoolFsyncFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::error!(
                error = %self.error,
                skipped,
                "cannot fsync the spool: records written since the last fsync may not survive a power loss"
            );
        }
    }
}

/// How far a shard's records are delivered could not be written down. Not counted: the
/// next persist tries again, and the cost is records delivered twice after a restart.
pub struct SpoolProgressNotPersisted<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for SpoolProgressNotPersisted<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::error!(
                error = %self.error,
                skipped,
                "cannot write down delivery progress in the spool; records may be delivered again after a restart"
            );
        }
    }
}

/// A rule worker could not read its shard; it tries again. Not counted: nothing is lost
/// while the read fails, the worker only waits.
pub struct SpoolReadFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for SpoolReadFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::error!(error = %self.error, skipped, "cannot read the spool; retrying");
        }
    }
}
