//! What a node's reader thread and its connections share: the sessions table, the
//! mailboxes, the claims waiting to be read back, the nodes' heartbeats as read, the
//! retained messages, and how far the reader has come.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{oneshot, Notify};

use super::beat::Beat;
use super::contact::Contact;
use super::mailbox::Mailboxes;
use super::session::{SessionRecord, Table};
use crate::metrics::Metrics;
use crate::retained::Retained;

/// Called when a claim supersedes another: (client id, the superseded generation).
type Superseded = Box<dyn Fn(&str, &str) + Send + Sync>;

/// What the node's reader thread and its connections share.
pub(super) struct Shared {
    pub(super) table: Mutex<Table>,
    pub(super) mailboxes: Mailboxes,
    /// Claims of this node waiting to be read back, by generation.
    pub(super) waiters: Mutex<HashMap<String, oneshot::Sender<Option<SessionRecord>>>>,
    pub(super) superseded: OnceLock<Superseded>,
    /// The last heartbeat of each node, as read.
    pub(super) nodes: Mutex<HashMap<String, Beat>>,
    /// The cluster's retained messages.
    pub(super) retained: Retained,
    /// The reader found (or made) the cluster's topics: writing to them cannot make Kafka
    /// create one with its default partitions.
    pub(super) topics_found: AtomicBool,
    /// The reader has caught up with the topics.
    pub(super) ready: AtomicBool,
    /// The offset after the last sessions record read.
    pub(super) sessions_read: AtomicI64,
    pub(super) ready_notify: Notify,
    pub(super) contact: Contact,
    pub(super) metrics: Arc<Metrics>,
}

impl Shared {
    pub(super) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}
