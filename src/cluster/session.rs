//! Sessions as the cluster keeps them: one record per client id in the compacted
//! sessions topic, and the table every node builds by reading that topic from the start.
//!
//! The topic's order decides ownership. A connection claims its client id with a record
//! whose `claim` is set; the claim read last wins, on every node alike, and supersedes
//! the connection of the claim before it (that node closes it: session taken over).
//! Records without `claim` update the claim they name (`generation`) and are ignored
//! once another claim has superseded it, so a slow node cannot overwrite its
//! successor's session. A compacted topic keeps only each client's last record, often
//! an update: read with no claim before it, it stands for the session.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::topic::{FilterIndex, TopicFilter};

/// A subscription of a stored session, with the options MQTT keeps across a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    pub filter: String,
    pub qos: u8,
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<usize>,
}

/// One client id's session, as one record of the sessions topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The node holding (or that last held) the session's connection.
    pub node: String,
    /// Names the claim: `<node>/<boot>/<serial>`, unique in the cluster's history.
    pub generation: String,
    /// A new connection claims the session; otherwise an update of claim `generation`.
    #[serde(default)]
    pub claim: bool,
    /// With `claim`: the session starts empty (Clean Start), whatever was stored before.
    #[serde(default)]
    pub fresh: bool,
    /// With `claim`: taken only if the session's claim is still this one (a node
    /// adopting the session of a node that died); otherwise ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expects: Option<String>,
    /// The session is over (expired, or its connection ended with expiry 0).
    #[serde(default)]
    pub ended: bool,
    pub connected: bool,
    /// Session Expiry Interval, seconds; `u32::MAX`: never.
    pub expiry: u32,
    /// When the connection ended (Unix ms), while not connected.
    #[serde(default)]
    pub since_ms: u64,
    /// `None` in a claim that resumes: the stored ones carry over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Vec<StoredSubscription>>,
    /// Mailbox offset of the first message not yet acknowledged by the client. A claim
    /// gives where a fresh session starts; a resumed session keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<i64>,
    /// The number the session's next event takes (`hookline-seq`).
    #[serde(default)]
    pub next_seq: u64,
    /// The connection's will, for the node that adopts the session if this one dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<StoredWill>,
}

/// A will as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    pub topic: String,
    /// The message, base64.
    pub payload: String,
    pub qos: u8,
    pub retain: bool,
    /// Will Delay Interval, seconds.
    pub delay: u32,
}

impl SessionRecord {
    /// Whether a client connecting at `now_ms` without Clean Start finds this session.
    pub fn resumable(&self, now_ms: u64) -> bool {
        !self.ended && (self.connected || self.expiry == u32::MAX || now_ms < self.since_ms + self.expiry as u64 * 1000)
    }

    /// This session's state as an update of its claim (not a claim itself).
    pub fn as_update(self) -> SessionRecord {
        SessionRecord { claim: false, fresh: false, expects: None, ..self }
    }

    /// When a session not connected expires (Unix ms); `None`: never.
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.expiry != u32::MAX).then(|| self.since_ms + self.expiry as u64 * 1000)
    }

    /// The session this claim makes of `prior` (the session before it, if any) when read
    /// at `now_ms`: without Clean Start a resumable prior carries over its
    /// subscriptions, mailbox cursor and event number.
    pub fn claimed_over(mut self, prior: Option<&SessionRecord>, now_ms: u64) -> SessionRecord {
        let carried = prior.filter(|p| !self.fresh && p.resumable(now_ms));
        if self.subscriptions.is_none() {
            self.subscriptions = Some(carried.and_then(|p| p.subscriptions.clone()).unwrap_or_default());
        }
        if let Some(carried) = carried {
            // A claim names where a fresh session's mailbox starts; a resumed one goes on
            // from its own cursor and event number.
            self.cursor = carried.cursor.or(self.cursor);
            self.next_seq = self.next_seq.max(carried.next_seq);
        }
        self
    }
}

/// What reading one record changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A claim: the session before it, if any (as stored, resumable or not).
    Claimed {
        prior: Option<SessionRecord>,
    },
    /// An update of the current claim, or the session's end.
    Updated,
    Ended,
    /// An update of a claim that another has superseded: ignored.
    Stale,
}

/// Every session of the cluster, and an index of their subscriptions for fan-out.
#[derive(Default)]
pub struct Table {
    sessions: HashMap<Arc<str>, SessionRecord>,
    /// When this node read each session's claim, on its clock of heartbeats.
    claims_read: HashMap<Arc<str>, u64>,
    /// The claim each session's claim superseded: the producer may write a claim twice
    /// (a retry after its first write's answer was lost), and a copy read after the
    /// claim that superseded it must not take the session back.
    superseded: HashMap<Arc<str>, String>,
    /// The sessions' subscriptions: each client under each of its filters.
    index: FilterIndex<Arc<str>>,
}

impl Table {
    pub fn get(&self, client: &str) -> Option<&SessionRecord> {
        self.sessions.get(client)
    }

    /// When this node read `client`'s current claim, on its clock of heartbeats; `None`
    /// when it read none (compaction removed it).
    pub fn claim_read_at(&self, client: &str) -> Option<u64> {
        self.claims_read.get(client).copied()
    }

    pub fn count(&self) -> usize {
        self.sessions.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &SessionRecord)> {
        self.sessions.iter()
    }

    /// Reads one record of the sessions topic (`None`: a tombstone) for `client`;
    /// `read_at` is when, on the reading node's clock of heartbeats (see `Clock`).
    pub fn apply(&mut self, client: &Arc<str>, record: Option<SessionRecord>, now_ms: u64, read_at: u64) -> Applied {
        let Some(record) = record else {
            self.remove(client);
            return Applied::Ended;
        };
        // Stale: written for a claim other than the one in force. With none in force the
        // record is taken: compaction may have removed every record before it. A claim
        // read a second time (the producer wrote it again after a timeout) is stale too.
        let current = self.sessions.get(client);
        let stale = match (record.claim, current) {
            (false, Some(current)) => current.generation != record.generation,
            (true, Some(current)) => {
                current.generation == record.generation || self.superseded.get(client).is_some_and(|g| *g == record.generation)
            }
            (_, None) => false,
        };
        if stale {
            return Applied::Stale;
        }
        if record.expects.as_ref().is_some_and(|expected| current.is_some_and(|c| c.generation != *expected)) {
            return Applied::Stale;
        }
        if record.ended {
            self.remove(client);
            return Applied::Ended;
        }
        let claimed = record.claim;
        let (prior, record) = match claimed {
            true => {
                let prior = self.remove(client);
                let record = record.claimed_over(prior.as_ref(), now_ms);
                self.claims_read.insert(client.clone(), read_at);
                if let Some(prior) = &prior {
                    self.superseded.insert(client.clone(), prior.generation.clone());
                }
                (prior, record)
            }
            false => {
                self.claims_read.entry(client.clone()).or_insert(read_at);
                let mut record = record;
                if record.subscriptions.is_none() {
                    record.subscriptions = Some(current.and_then(|p| p.subscriptions.clone()).unwrap_or_default());
                }
                (None, record)
            }
        };
        self.unindex(client);
        self.index(client, &record);
        self.sessions.insert(client.clone(), record);
        match claimed {
            true => Applied::Claimed { prior },
            false => Applied::Updated,
        }
    }

    fn remove(&mut self, client: &Arc<str>) -> Option<SessionRecord> {
        self.unindex(client);
        self.claims_read.remove(client);
        self.superseded.remove(client);
        self.sessions.remove(client)
    }

    fn index(&mut self, client: &Arc<str>, record: &SessionRecord) {
        for filter in indexed_filters(record) {
            self.index.insert(&filter, client.clone());
        }
    }

    fn unindex(&mut self, client: &Arc<str>) {
        let Some(record) = self.sessions.get(client) else { return };
        for filter in indexed_filters(record) {
            self.index.remove(&filter, client);
        }
    }

    /// The sessions with a subscription matching `topic` that can take a message now
    /// (connected, or away within their expiry), each once, and whether each is
    /// connected.
    pub fn subscribers(&self, topic: &[u8], now_ms: u64) -> Vec<(Arc<str>, bool)> {
        let mut found: HashSet<&Arc<str>> = HashSet::new();
        self.index.find(topic, |client| {
            found.insert(client);
            false
        });
        found.into_iter().filter_map(|c| self.sessions.get(c).filter(|s| s.resumable(now_ms)).map(|s| (c.clone(), s.connected))).collect()
    }
}

/// The filters of `record`'s subscriptions the index holds. Shared subscriptions are
/// each node's own: a group shares a node's messages.
fn indexed_filters(record: &SessionRecord) -> impl Iterator<Item = TopicFilter> + '_ {
    let subscriptions = record.subscriptions.iter().flatten();
    subscriptions.filter(|s| !s.filter.starts_with("$share/")).filter_map(|s| TopicFilter::parse(&s.filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: &str, generation: &str, fresh: bool) -> SessionRecord {
        SessionRecord {
            node: node.into(),
            generation: generation.into(),
            claim: true,
            fresh,
            ended: false,
            connected: true,
            expiry: 60,
            since_ms: 0,
            subscriptions: None,
            cursor: None,
            next_seq: 1,
            expects: None,
            will: None,
        }
    }

    fn update(of: &SessionRecord, filters: &[&str], cursor: i64) -> SessionRecord {
        let subscriptions = filters
            .iter()
            .map(|f| StoredSubscription { filter: f.to_string(), qos: 1, no_local: false, retain_as_published: false, id: None })
            .collect();
        SessionRecord { claim: false, fresh: false, subscriptions: Some(subscriptions), cursor: Some(cursor), next_seq: 9, ..of.clone() }
    }

    #[test]
    fn a_resuming_claim_carries_the_session_over_and_a_fresh_one_does_not() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        let first = claim("a", "a/1/1", true);
        assert_eq!(table.apply(&id, Some(first.clone()), 0, 0), Applied::Claimed { prior: None });
        let state = update(&first, &["devices/lock-1/command"], 7);
        assert_eq!(table.apply(&id, Some(state.clone()), 0, 0), Applied::Updated);
        assert_eq!(table.subscribers(b"devices/lock-1/command", 0), vec![(id.clone(), true)]);

        assert_eq!(table.apply(&id, Some(claim("b", "b/1/1", false)), 0, 0), Applied::Claimed { prior: Some(state.clone()) });
        let resumed = table.get("lock-1").unwrap();
        assert_eq!((resumed.cursor, resumed.next_seq, resumed.subscriptions.as_ref().unwrap().len()), (Some(7), 9, 1));

        // The superseded claim's late update changes nothing.
        assert_eq!(table.apply(&id, Some(update(&first, &[], 99)), 0, 0), Applied::Stale);
        assert_eq!(table.get("lock-1").unwrap().cursor, Some(7));

        table.apply(&id, Some(claim("c", "c/1/1", true)), 0, 0);
        assert!(table.get("lock-1").unwrap().subscriptions.as_ref().unwrap().is_empty());
        assert!(table.subscribers(b"devices/lock-1/command", 0).is_empty());
    }

    #[test]
    fn a_claim_read_twice_changes_nothing_the_second_time() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        let first = claim("a", "a/1/1", true);
        table.apply(&id, Some(first.clone()), 0, 0);
        let state = update(&first, &["devices/lock-1/command"], 7);
        table.apply(&id, Some(state.clone()), 0, 0);
        assert_eq!(table.apply(&id, Some(first.clone()), 0, 0), Applied::Stale, "read again after its update");
        assert_eq!(table.get("lock-1"), Some(&state), "the session keeps its subscriptions");

        let second = claim("b", "b/1/1", false);
        assert!(matches!(table.apply(&id, Some(second.clone()), 0, 0), Applied::Claimed { .. }));
        assert_eq!(table.apply(&id, Some(first), 0, 0), Applied::Stale, "read again after the claim that superseded it");
        assert_eq!(table.get("lock-1").unwrap().generation, "b/1/1");
    }

    #[test]
    fn an_expired_session_is_not_carried_over_nor_a_subscriber() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        let first = claim("a", "a/1/1", true);
        table.apply(&id, Some(first.clone()), 0, 0);
        let away = SessionRecord { connected: false, since_ms: 1_000, ..update(&first, &["devices/+/command"], 3) };
        table.apply(&id, Some(away), 0, 0);
        assert_eq!(table.subscribers(b"devices/lock-1/command", 60_999).len(), 1);
        assert!(table.subscribers(b"devices/lock-1/command", 61_000).is_empty());
        table.apply(&id, Some(claim("b", "b/1/1", false)), 61_000, 0);
        assert!(table.get("lock-1").unwrap().subscriptions.as_ref().unwrap().is_empty());
    }

    #[test]
    fn an_end_applies_only_to_its_own_claim() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        let first = claim("a", "a/1/1", true);
        table.apply(&id, Some(first.clone()), 0, 0);
        table.apply(&id, Some(claim("b", "b/1/1", false)), 0, 0);
        let late_end = SessionRecord { claim: false, ended: true, ..first };
        assert_eq!(table.apply(&id, Some(late_end), 0, 0), Applied::Stale);
        assert!(table.get("lock-1").is_some());
    }

    #[test]
    fn a_session_whose_claim_compaction_removed_is_read_from_its_last_record() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        let away =
            SessionRecord { connected: false, since_ms: 1_000, ..update(&claim("a", "a/1/1", true), &["devices/lock-1/command"], 4) };
        assert_eq!(table.apply(&id, Some(away), 0, 0), Applied::Updated);
        assert_eq!(table.subscribers(b"devices/lock-1/command", 2_000), vec![(id.clone(), false)]);
        let adopted = SessionRecord { expects: Some("dead/1/1".into()), ..claim("b", "b/1/1", false) };
        let other: Arc<str> = "lock-2".into();
        assert!(matches!(table.apply(&other, Some(adopted), 0, 0), Applied::Claimed { prior: None }), "the dead claim compacted away");
    }

    #[test]
    fn of_two_adoptions_of_one_session_only_the_first_is_taken() {
        let mut table = Table::default();
        let id: Arc<str> = "lock-1".into();
        table.apply(&id, Some(claim("dead", "dead/1/1", true)), 0, 0);
        let adopt = |node: &str, generation: &str| SessionRecord {
            expects: Some("dead/1/1".into()),
            connected: false,
            ..claim(node, generation, false)
        };
        assert!(matches!(table.apply(&id, Some(adopt("b", "b/1/1")), 0, 0), Applied::Claimed { .. }));
        assert_eq!(table.apply(&id, Some(adopt("c", "c/1/1")), 0, 0), Applied::Stale);
        assert_eq!(table.get("lock-1").unwrap().node, "b");
    }
}
