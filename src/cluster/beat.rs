//! A node's heartbeat as written to the nodes topic, and as another node reads it: when
//! a node counts as gone.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often a node says it is alive.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard of for this long, on this node's clock of heartbeats (`contact`),
/// is gone: a live node adopts its sessions (their wills fire, they expire in time).
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's heartbeat, as written to the nodes topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub boot: u64,
    pub at_ms: u64,
    /// MQTT clients connected to it.
    pub connections: i64,
    /// It stopped (its last heartbeat).
    #[serde(default)]
    pub left: bool,
    /// The downlink partitions it consumes: another node takes one only once no live
    /// node says it holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downlink: Vec<(String, i32)>,
    /// It has not caught up with the cluster's topics since it started: it takes no
    /// share of the downlink yet, so the others keep consuming its partitions meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catching_up: bool,
}

/// A heartbeat as this node read it, and when: on the wall clock, and on this node's
/// clock of heartbeats (`contact`).
pub(super) struct Beat {
    pub(super) heartbeat: Heartbeat,
    pub(super) read_at: Instant,
    pub(super) read_at_clock: u64,
}

impl Beat {
    /// Whether its node is alive as far as this node can tell (`clock_ms`: now, on its
    /// clock of heartbeats).
    pub(super) fn alive(&self, clock_ms: u64) -> bool {
        !self.heartbeat.left && !gone_by(self.read_at_clock, clock_ms)
    }
}

/// Whether something last heard of at `heard_ms` is gone at `clock_ms` (both on a
/// node's clock of heartbeats).
pub(super) fn gone_by(heard_ms: u64, clock_ms: u64) -> bool {
    clock_ms.saturating_sub(heard_ms) >= NODE_TIMEOUT.as_millis() as u64
}
