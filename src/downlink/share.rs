//! Which node of the cluster consumes which partition of the downlink's topics: a
//! function of the partitions and of the nodes alive, so every node that sees the same
//! nodes computes the same share, with no group coordinator in between.
//!
//! Each partition goes to the node that ranks it highest (a hash of node, topic and
//! partition) among the nodes that have not yet reached an even share: shares stay even,
//! and mostly where they were as nodes come and go.

use std::collections::BTreeSet;

/// A Kafka topic and partition.
pub type Partition = (String, i32);

/// The partitions `node` consumes when `members` (every live node, `node` among them)
/// share `partitions`.
pub fn share_of(partitions: &BTreeSet<Partition>, members: &BTreeSet<String>, node: &str) -> BTreeSet<Partition> {
    if members.is_empty() {
        return BTreeSet::new();
    }
    let even = partitions.len().div_ceil(members.len());
    let mut held = vec![0usize; members.len()];
    let mut mine = BTreeSet::new();
    for partition in partitions {
        let ranked = members.iter().enumerate().max_by_key(|(i, member)| (held[*i] < even, rank(member, partition)));
        let (index, member) = ranked.expect("members is not empty");
        held[index] += 1;
        if member == node {
            mine.insert(partition.clone());
        }
    }
    mine
}

/// A stable hash (FNV-1a, then mixed): every node, of any build, ranks alike.
fn rank(member: &str, (topic, partition): &Partition) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = member.bytes().chain([0]).chain(topic.bytes()).chain([0]).chain(partition.to_le_bytes());
    for byte in bytes {
        hash = (hash ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partitions(n: i32) -> BTreeSet<Partition> {
        (0..n).map(|p| ("device_commands".to_string(), p)).collect()
    }

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_partition_has_exactly_one_node_and_shares_are_even() {
        let all = partitions(12);
        let members = nodes(&["node-1", "node-2", "node-3"]);
        let shares: Vec<_> = members.iter().map(|m| share_of(&all, &members, m)).collect();
        let mut seen = BTreeSet::new();
        for share in &shares {
            assert_eq!(share.len(), 4, "{shares:?}");
            for partition in share {
                assert!(seen.insert(partition.clone()), "{partition:?} given twice");
            }
        }
        assert_eq!(seen, all);
    }

    #[test]
    fn more_nodes_than_partitions_leaves_some_idle() {
        let all = partitions(2);
        let members = nodes(&["a", "b", "c"]);
        let total: usize = members.iter().map(|m| share_of(&all, &members, m).len()).sum();
        assert_eq!(total, 2);
        assert!(share_of(&all, &BTreeSet::new(), "a").is_empty());
    }
}
