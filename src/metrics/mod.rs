//! Counters of everything that happens on the event path, shared by all stages.
//!
//! Plain atomics, bumped with relaxed ordering: they are statistics, never used for
//! synchronisation. `snapshot` gives a stable, named view for logs and tests; the admin
//! endpoint renders them for Prometheus (`admin::prometheus`).
//! Records delivered and failed are counted by topic (Kafka topic, RabbitMQ exchange) (`by_topic`, a bounded set
//! of series), and their delivery latency in a histogram (`latency`).

mod by_topic;
mod counters;
mod latency;

pub use by_topic::{Outcome, RecordsByTopic, TopicSeries};
pub use counters::Metrics;
pub use latency::{LatencyHistogram, BOUNDS_MS};
