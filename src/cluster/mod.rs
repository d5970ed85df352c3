//! The cluster: every gateway node pointed at the same Kafka with the same
//! `cluster.name` is one broker, with Kafka the only thing the nodes share. There is no
//! node list and no other coordination: a node joins by reading the cluster's topics.
//!
//! Four topics carry it (`topics`), read by one thread per node (`reader`):
//! - `<name>.sessions`, compacted, keyed by client id: each MQTT session (owner node,
//!   subscriptions, expiry, mailbox cursor). Every node reads it from the start into the
//!   same table (`session::Table`); a connection's claim record decides who owns a
//!   client id, and the node it supersedes closes its connection (`superseded`).
//! - `<name>.mailbox`, keyed by client id: messages for a session that are not
//!   delivered by the local router: every downlink message, and MQTT publishes for
//!   sessions connected to another node or away. Every node reads it too, from the
//!   sessions' cursors (`mailbox::Mailboxes`), so whichever node a client lands on has
//!   its messages.
//! - `<name>.nodes`, compacted, keyed by node name: heartbeats, so nodes know who is gone.
//! - `<name>.retained`, compacted, keyed by MQTT topic: the retained messages.
//!
//! A downlink record is committed once its messages are in the mailbox topic (Kafka
//! acknowledged them: acks=all); from there they are delivered when the session's
//! client is connected, on any node, until the session expires.
//!
//! One file a job: `handle` (the node's `Cluster` and what it shares with its reader),
//! `membership` (join, catch up, leave), `claims` (who owns a session),
//! `posting` (mailbox writes and the producer's queue), `retained_topic`, `beat` and `heartbeat`
//! (liveness and the view of the nodes) and `adoption` (the sessions of nodes gone),
//! over the topics (`topics`), their reader (`reader`) and the tables it fills
//! (`session`, `mailbox`, `contact`).

mod adoption;
mod beat;
mod claims;
mod contact;
mod error;
mod handle;
mod heartbeat;
mod mailbox;
mod membership;
mod posting;
mod reader;
mod retained_topic;
mod session;
mod shared;
mod topics;

pub use beat::{Heartbeat, NODE_TIMEOUT};
pub use claims::{ClaimError, Claimed};
pub use error::ClusterError;
pub use handle::Cluster;
pub use heartbeat::{DownlinkView, NodeView};
pub use session::{SessionRecord, StoredSubscription, StoredWill};
pub use topics::topics;
