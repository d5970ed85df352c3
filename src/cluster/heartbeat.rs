//! Heartbeats written: each node tells the others it is alive, how many clients it serves and
//! which downlink partitions it consumes; what it reads of theirs is the cluster's view
//! of its nodes (the admin's, and the downlink's share).

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use serde::Serialize;

use super::beat::{Heartbeat, HEARTBEAT};
use super::handle::Cluster;
use crate::hooks::now_ms;
use crate::internal_events::{HeartbeatNotQueued, InternalEvent};

/// A node of the cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    pub alive: bool,
    pub connections: i64,
    /// Sessions it holds, and how many of them are connected.
    pub sessions: usize,
    pub connected: usize,
    /// Milliseconds since its last heartbeat was read.
    pub last_heard_ms: u64,
}

/// What the downlink needs to know to share its partitions (see `downlink::share`).
pub struct DownlinkView {
    /// The nodes alive and caught up with the cluster, this one among them.
    pub members: BTreeSet<String>,
    /// The downlink partitions the other live nodes said, in their last heartbeats, they
    /// consume.
    pub held_elsewhere: HashSet<(String, i32)>,
}

/// Writes a heartbeat every `HEARTBEAT`, and at once when something it tells changed
/// (`beat_now`), until the cluster is dropped.
pub(super) fn start_heartbeat(cluster: &Arc<Cluster>) {
    // Weak: the heartbeat must not keep the cluster (and its reader thread) alive.
    let beating = Arc::downgrade(cluster);
    let (beat_now, in_flight) = (cluster.beat_now.clone(), cluster.beat_in_flight.clone());
    let heartbeat = tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = beat_now.notified() => {
                    // Not dropped behind the heartbeat on its way: it says what changed.
                    let until = Instant::now() + HEARTBEAT;
                    while in_flight.load(Ordering::SeqCst) && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
            match beating.upgrade() {
                Some(cluster) => cluster.beat(false),
                None => return,
            }
        }
    });
    *cluster.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(heartbeat);
}

impl Cluster {
    /// Writes this node's heartbeat; `left`: its last one, as it stops. While one is on
    /// its way no other is queued: after an outage the nodes topic holds one stale
    /// heartbeat per node, not a backlog that would move this node's clock past the
    /// others' (`contact`) before their own heartbeats are read. None before the reader
    /// found the topics: a write to a missing topic has Kafka create it with its default
    /// partitions.
    pub(super) fn beat(&self, left: bool) {
        if !self.shared.topics_found.load(Ordering::SeqCst) || (!left && self.beat_in_flight.swap(true, Ordering::SeqCst)) {
            return;
        }
        let heartbeat = Heartbeat {
            node: self.node.to_string(),
            boot: self.boot,
            at_ms: now_ms(),
            connections: self.shared.metrics.connections.load(Ordering::Relaxed),
            left,
            downlink: self.downlink_held.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            catching_up: !self.is_ready(),
        };
        let value = serde_json::to_vec(&heartbeat).expect("a heartbeat serialises");
        match self.producer.send_result(FutureRecord::to(&self.nodes_topic).key(&*self.node).payload(&value)) {
            Ok(delivery) => {
                let in_flight = self.beat_in_flight.clone();
                tokio::spawn(async move {
                    let _ = delivery.await;
                    in_flight.store(false, Ordering::SeqCst);
                });
            }
            Err((error, _)) => {
                self.beat_in_flight.store(false, Ordering::SeqCst);
                HeartbeatNotQueued { error: &error }.emit();
            }
        }
    }

    /// The nodes this node has heard of, with their sessions.
    pub fn nodes(&self) -> Vec<NodeView> {
        let clock_ms = self.shared.contact.clock_ms();
        let mut views: std::collections::BTreeMap<String, NodeView> = std::collections::BTreeMap::new();
        for beat in self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner()).values() {
            views.insert(
                beat.heartbeat.node.clone(),
                NodeView {
                    node: beat.heartbeat.node.clone(),
                    alive: beat.alive(clock_ms),
                    connections: beat.heartbeat.connections,
                    sessions: 0,
                    connected: 0,
                    last_heard_ms: beat.read_at.elapsed().as_millis() as u64,
                },
            );
        }
        for (_, session) in self.shared.table().iter() {
            if let Some(view) = views.get_mut(&session.node) {
                view.sessions += 1;
                view.connected += session.connected as usize;
            }
        }
        views.into_values().collect()
    }

    /// Who consumes the downlink, as this node sees it; `None` until it has caught up
    /// with the cluster.
    pub fn downlink_view(&self) -> Option<DownlinkView> {
        if !self.is_ready() {
            return None;
        }
        let clock_ms = self.shared.contact.clock_ms();
        let nodes = self.shared.nodes.lock().unwrap_or_else(|p| p.into_inner());
        // This node's own heartbeats, of this run or an earlier one, speak for this node.
        let others = nodes.values().filter(|b| b.heartbeat.node != *self.node && b.alive(clock_ms));
        let mut view = DownlinkView { members: BTreeSet::from([self.node.to_string()]), held_elsewhere: HashSet::new() };
        for beat in others {
            if !beat.heartbeat.catching_up {
                view.members.insert(beat.heartbeat.node.clone());
            }
            view.held_elsewhere.extend(beat.heartbeat.downlink.iter().cloned());
        }
        Some(view)
    }

    /// The downlink partitions this node consumes now; the other nodes hear of them in
    /// its next heartbeat, written at once.
    pub fn hold_downlink(&self, held: Vec<(String, i32)>) {
        *self.downlink_held.lock().unwrap_or_else(|p| p.into_inner()) = held;
        self.beat_now.notify_one();
    }
}
