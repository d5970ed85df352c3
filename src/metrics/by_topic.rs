//! Records delivered and failed, counted by topic (Kafka topic, RabbitMQ exchange), with a bounded label set.
//!
//! Rules choose the topics, so their number is unbounded in principle, and every topic
//! would become Prometheus series kept for the life of the process. The first
//! `MAX_TOPICS` distinct topics seen get their own series; records of any later topic
//! are counted under the topic label `(other)`. Series are never removed.
//!
//! Looking a topic up takes no lock: the table is open addressing over `OnceLock`
//! slots, each filled once and never emptied. Two threads looking up the same new
//! topic probe the same slots in the same order, so they meet at the same first empty
//! slot where one `OnceLock` initialiser wins: a topic never gets two series.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Topics that get their own series.
pub const MAX_TOPICS: usize = 256;
/// The topic label under which records of the topics beyond `MAX_TOPICS` are counted.
pub const OTHER_TOPICS: &str = "(other)";
/// Lookup table size: four slots per topic keeps probe sequences short.
const SLOTS: usize = 4 * MAX_TOPICS;

/// A topic's series, from `RecordsByTopic::series`; cheap to keep per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSeries(u16);

impl TopicSeries {
    const OTHER: TopicSeries = TopicSeries(MAX_TOPICS as u16);
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The destination confirmed it (Kafka delivery report, RabbitMQ confirm, or file flush).
    Delivered,
    /// The sink reported it failed for good.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::Delivered, Outcome::Failed];

    /// The counter's name, as in `Metrics::snapshot` and `hookline_<name>_total`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Delivered => "records_delivered",
            Outcome::Failed => "records_failed",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Outcome::Delivered => "Records the destination confirmed (Kafka delivery report, RabbitMQ confirm, or file flush), by topic (Kafka topic, RabbitMQ exchange).",
            Outcome::Failed => "Records the destination refused for good (too large, not allowed, no such exchange), by topic (Kafka topic, RabbitMQ exchange).",
        }
    }
}

/// A filled lookup table slot.
struct Entry {
    topic: Box<str>,
    series: TopicSeries,
}

pub struct RecordsByTopic {
    /// The lookup table.
    slots: Box<[OnceLock<Entry>]>,
    /// Topic of each series, by series index; set before the series is handed out.
    names: Box<[OnceLock<Box<str>>]>,
    /// Series handed out so far (may pass `MAX_TOPICS` by a few racing threads, whose
    /// topics then count under `(other)`).
    claimed: AtomicUsize,
    /// Counts by series index; the last one is `(other)`.
    delivered: Box<[AtomicU64]>,
    failed: Box<[AtomicU64]>,
}

impl Default for RecordsByTopic {
    fn default() -> RecordsByTopic {
        RecordsByTopic {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            names: (0..MAX_TOPICS).map(|_| OnceLock::new()).collect(),
            claimed: AtomicUsize::new(0),
            delivered: (0..=MAX_TOPICS).map(|_| AtomicU64::new(0)).collect(),
            failed: (0..=MAX_TOPICS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for RecordsByTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordsByTopic")
            .field("delivered", &self.counts(Outcome::Delivered))
            .field("failed", &self.counts(Outcome::Failed))
            .finish()
    }
}

impl RecordsByTopic {
    /// The series counting `topic`: its own while fewer than `MAX_TOPICS` topics were
    /// seen before it, otherwise `(other)`.
    pub fn series(&self, topic: &str) -> TopicSeries {
        let start = crate::names::fnv1a(topic.as_bytes()) as usize % SLOTS;
        for probe in 0..SLOTS {
            let slot = &self.slots[(start + probe) % SLOTS];
            let entry = match slot.get() {
                Some(entry) => entry,
                // Every series is taken: the topic is new, and is not given a slot.
                None if self.claimed.load(Ordering::Relaxed) >= MAX_TOPICS => return TopicSeries::OTHER,
                None => slot.get_or_init(|| Entry { topic: topic.into(), series: self.claim(topic) }),
            };
            if *entry.topic == *topic {
                return entry.series;
            }
        }
        // Unreachable while racing threads are fewer than the spare slots; counted anyway.
        TopicSeries::OTHER
    }

    fn claim(&self, topic: &str) -> TopicSeries {
        let index = self.claimed.fetch_add(1, Ordering::Relaxed);
        if index >= MAX_TOPICS {
            return TopicSeries::OTHER;
        }
        let _ = self.names[index].set(topic.into());
        TopicSeries(index as u16)
    }

    fn counters(&self, outcome: Outcome) -> &[AtomicU64] {
        match outcome {
            Outcome::Delivered => &self.delivered,
            Outcome::Failed => &self.failed,
        }
    }

    /// Counts `n` records of `series` with `outcome`.
    pub fn add(&self, series: TopicSeries, outcome: Outcome, n: u64) {
        self.counters(outcome)[series.0 as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Records with `outcome`, all topics together.
    pub fn total(&self, outcome: Outcome) -> u64 {
        self.counters(outcome).iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// (topic, count) of every topic seen, in the order first seen, then `(other)`.
    pub fn counts(&self, outcome: Outcome) -> Vec<(&str, u64)> {
        let counters = self.counters(outcome);
        let seen = self.claimed.load(Ordering::Relaxed).min(MAX_TOPICS);
        // A name still unset belongs to a series being handed out right now: nothing
        // was counted under it yet.
        let named = (0..seen).filter_map(|i| Some((&**self.names[i].get()?, counters[i].load(Ordering::Relaxed))));
        named.chain([(OTHER_TOPICS, counters[MAX_TOPICS].load(Ordering::Relaxed))]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_topic_always_gets_the_same_series() {
        let records = RecordsByTopic::default();
        let state = records.series("message_state");
        let command = records.series("message_command");
        assert_ne!(state, command);
        assert_eq!(records.series("message_state"), state);
        records.add(state, Outcome::Delivered, 2);
        records.add(command, Outcome::Delivered, 1);
        records.add(command, Outcome::Failed, 5);
        assert_eq!(records.counts(Outcome::Delivered), [("message_state", 2), ("message_command", 1), (OTHER_TOPICS, 0)]);
        assert_eq!(records.counts(Outcome::Failed), [("message_state", 0), ("message_command", 5), (OTHER_TOPICS, 0)]);
        assert_eq!(records.total(Outcome::Delivered), 3);
        assert_eq!(records.total(Outcome::Failed), 5);
    }

    #[test]
    fn topics_beyond_the_limit_are_counted_together_under_other() {
        let records = RecordsByTopic::default();
        for i in 0..MAX_TOPICS + 10 {
            records.add(records.series(&format!("topic-{i}")), Outcome::Delivered, 1);
        }
        // Topics seen before the limit keep their own series.
        records.add(records.series("topic-0"), Outcome::Delivered, 1);
        let counts = records.counts(Outcome::Delivered);
        assert_eq!(counts.len(), MAX_TOPICS + 1);
        assert_eq!(counts[0], ("topic-0", 2));
        assert_eq!(counts[MAX_TOPICS - 1], (&*format!("topic-{}", MAX_TOPICS - 1), 1));
        assert_eq!(counts[MAX_TOPICS], (OTHER_TOPICS, 10));
        assert_eq!(records.total(Outcome::Delivered), MAX_TOPICS as u64 + 11);
    }

    #[test]
    fn threads_racing_on_new_topics_give_each_topic_one_series() {
        let records = RecordsByTopic::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..MAX_TOPICS * 2 {
                        records.add(records.series(&format!("topic-{i}")), Outcome::Failed, 1);
                    }
                });
            }
        });
        let counts = records.counts(Outcome::Failed);
        assert_eq!(counts.len(), MAX_TOPICS + 1);
        let mut named: Vec<&str> = counts[..MAX_TOPICS].iter().map(|(topic, _)| *topic).collect();
        named.sort_unstable();
        named.dedup();
        assert_eq!(named.len(), MAX_TOPICS, "a topic got two series");
        // Every thread counted every record somewhere; each named topic once per thread.
        assert!(counts[..MAX_TOPICS].iter().all(|(_, n)| *n == 4), "{counts:?}");
        assert_eq!(records.total(Outcome::Failed), 4 * 2 * MAX_TOPICS as u64);
    }
}
