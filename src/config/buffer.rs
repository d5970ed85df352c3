//! `[buffer]`: the durable spool between the broker and the rule workers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The spool: the on-disk buffer every hook event is written to before the broker
/// acknowledges it, and that rule workers deliver from (see `docs/delivery.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Directory of the spool's segment files.
    /// Default: absent: `<data>/spool`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Disk budget of the spool (8 GiB): the most bytes of events written and not yet
    /// delivered; on disk add at most one segment per rule worker of delivered events
    /// not yet deleted.
    pub max_bytes: u64,
    /// Size at which a segment file is finished and the next one started; at most half
    /// of `max_bytes`.
    pub segment_bytes: u64,
    /// When the spool is forced to disk: `always` (before a QoS 1/2 publish is
    /// acknowledged), `interval` (every `fsync_interval_ms`) or `never` (when the OS
    /// decides); see "Delivery guarantee".
    pub fsync: Fsync,
    /// Period of `fsync = "interval"`, in milliseconds.
    pub fsync_interval_ms: u64,
    /// When the disk budget is used up: `backpressure` (stop reading from the client),
    /// `reject` (refuse the publish) or `drop` (acknowledge and drop it, counted in
    /// `spool_dropped`); see "Delivery guarantee".
    pub when_full: WhenFull,
}

/// See `BufferConfig::fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Interval,
    Never,
}

/// See `BufferConfig::when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    Backpressure,
    Reject,
    Drop,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            dir: None,
            max_bytes: 8 * 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            fsync: Fsync::Interval,
            fsync_interval_ms: 100,
            when_full: WhenFull::Backpressure,
        }
    }
}
