//! Adoption: the sessions of a node that is gone (or of a claim never read back) are
//! looked after by a live node: their wills fire and they expire in time.

use std::collections::HashMap;
use std::sync::Arc;

use super::beat::{gone_by, Beat};
use super::handle::Cluster;
use super::session::SessionRecord;

impl Cluster {
    /// Whether the node of claim `generation` (read at `claim_read`, on this node's
    /// clock of heartbeats) may still be alive: this run of this node; a node whose
    /// heartbeat of that run this node read within `NODE_TIMEOUT`; or one whose
    /// heartbeats of that run this node has not read, until the claim has been known for
    /// `NODE_TIMEOUT` (the claim and the heartbeats travel in different topics, read in
    /// no particular order).
    fn is_alive(&self, nodes: &HashMap<String, Beat>, generation: &str, claim_read: Option<u64>, clock_ms: u64) -> bool {
        if self.is_own(generation) {
            return true;
        }
        let mut parts = generation.rsplitn(3, '/');
        let (_, boot, node) = (parts.next(), parts.next(), parts.next());
        let (Some(node), Some(boot)) = (node, boot.and_then(|b| b.parse::<u64>().ok())) else { return false };
        if node == &*self.node {
            // An earlier run of this node.
            return false;
        }
        match nodes.get(node) {
            Some(b) if b.heartbeat.boot == boot => b.alive(clock_ms),
            // A later run of that node beats: this claim is of an earlier run.
            Some(b) if b.heartbeat.boot > boot => false,
            _ => !gone_by(claim_read.unwrap_or(clock_ms), clock_ms),
        }
    }

    /// Sessions whose claim's node is gone (died, stopped, or an earlier run of this
    /// node), for a live node to adopt: those of this node's earlier runs are this
    /// node's; the others are the live node with the first name's. None while Kafka is
    /// away: what this node has read then says nothing of the others.
    pub fn orphans(&self) -> Vec<(Arc<str>, SessionRecord)> {
        if self.kafka_away() {
            return Vec::new();
        }
        let clock_ms = self.shared.contact.clock_ms();
        // The table, then the nodes: the one order the two are ever held together in.
        // Only the orphans are copied: this runs every second over every session.
        let table = self.shared.table();
        let nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let alive = nodes.values().filter(|b| b.alive(clock_ms)).map(|b| b.heartbeat.node.as_str());
        let adopts_others = alive.chain([&*self.node]).min() == Some(&*self.node);
        table
            .iter()
            .filter(|(_, s)| adopts_others || s.node == *self.node)
            .filter(|(c, s)| !self.is_alive(&nodes, &s.generation, table.claim_read_at(c), clock_ms))
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect()
    }
}
