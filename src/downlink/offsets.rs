//! Which consumed records are done, per partition, so the downlink commits only offsets
//! whose records, and every record before them, are done.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::share::Partition;
use crate::broker::RecordAcks;

/// Records of one partition consumed and not yet committed, in offset order.
type Pending = VecDeque<(i64, Arc<RecordAcks>)>;

/// Records consumed and not yet committed, by partition.
#[derive(Default)]
pub struct Progress {
    partitions: HashMap<Partition, Pending>,
}

impl Progress {
    /// Tracks a record that is done once `acks` are all delivered.
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64, acks: Arc<RecordAcks>) {
        let queue = self.partitions.entry((topic.to_string(), partition)).or_default();
        // A partition read again from an earlier offset (after a rebalance): what was
        // tracked past it is read again too.
        if queue.back().is_some_and(|(last, _)| *last >= offset) {
            queue.clear();
        }
        queue.push_back((offset, acks));
    }

    /// Whether records of `partitions` are consumed and not yet done.
    pub fn pending_in(&self, partitions: &BTreeSet<Partition>) -> bool {
        self.partitions.iter().any(|(partition, queue)| !queue.is_empty() && partitions.contains(partition))
    }

    /// Stops tracking `partitions`: another node reads them from their last commit on.
    pub fn forget(&mut self, partitions: &BTreeSet<Partition>) {
        self.partitions.retain(|partition, _| !partitions.contains(partition));
    }

    /// The offsets to commit (the next offset to read, Kafka's convention), per
    /// partition whose done prefix grew; removes that prefix. Returns how many records
    /// were done.
    pub fn take_done(&mut self) -> (Vec<(String, i32, i64)>, usize) {
        let mut commits = Vec::new();
        let mut done = 0;
        for ((topic, partition), queue) in &mut self.partitions {
            let mut next = None;
            while queue.front().is_some_and(|(_, acks)| acks.delivered()) {
                let (offset, _) = queue.pop_front().expect("front exists");
                next = Some(offset + 1);
                done += 1;
            }
            if let Some(next) = next {
                commits.push((topic.clone(), *partition, next));
            }
        }
        self.partitions.retain(|_, queue| !queue.is_empty());
        (commits, done)
    }
}
