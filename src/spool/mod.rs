//! The spool: the durable buffer between the broker and the rule workers.
//!
//! Every hook event is appended to the spool by the connection that raised it, before
//! the broker goes on to acknowledge the packet; rule workers read the spool in order
//! and commit what the sink has delivered. So an acknowledged publish is on disk (in the
//! page cache at least, which a killed process cannot lose; on the platter as the fsync
//! policy says), a Kafka outage only makes the spool longer, and a restart resumes from
//! the last commit.
//!
//! Sharded by client id like the workers: one shard, one worker, one ordered log, which
//! is what keeps each device's records in order across outages and restarts. Memory use
//! does not depend on the backlog: workers read a bounded chunk at a time.

mod frame;
mod progress;
mod shard;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use progress::{Progress, Ticket};
pub use shard::{Position, ReadBatch, Shard, ShardReader};

use crate::config::{BufferConfig, Fsync, WhenFull};
use crate::hooks::{Hook, HookEvent};
use crate::metrics::Metrics;

/// What became of an event handed to the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Written; delivered later.
    Written,
    /// Not written because the spool is full (`when_full = "drop"`); counted.
    Dropped,
    /// Not written; the client must be told (`when_full = "reject"`, or a disk error).
    Rejected,
}

pub struct Spool {
    shards: Vec<Arc<Shard>>,
    config: BufferConfig,
    metrics: Arc<Metrics>,
    /// Signalled by the syncer loop's clients under `fsync = always`.
    sync_wanted: (Mutex<bool>, Condvar),
    started: Instant,
    last_full_log: AtomicU64,
    last_error_log: AtomicU64,
}

thread_local! {
    /// Frame scratch buffer of the connection thread encoding an event.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(4096));
}

impl Spool {
    /// Opens the spool in `config.dir` (default `<data>/spool`) with `shards` shards, or
    /// with as many as a previous run left undelivered records in: a device's old and
    /// new events must stay in one shard to stay in order. Returns one reader per shard.
    pub fn open(config: &BufferConfig, data: &Path, shards: usize, metrics: Arc<Metrics>) -> anyhow::Result<(Arc<Spool>, Vec<ShardReader>)> {
        let dir = Spool::dir_of(config, data);
        let shard_dir = |i: usize| dir.join(i.to_string());
        let mut previous = 0;
        while shard_dir(previous).is_dir() {
            previous += 1;
        }
        let mut opened = Vec::new();
        let count = shards.max(previous);
        for i in 0..count {
            let path = shard_dir(i);
            let (shard, resume) = Shard::open(path.clone())
                .with_context(|| format!("cannot open the spool shard {} (buffer.dir); check it is a writable directory", path.display()))?;
            opened.push((Arc::new(shard), resume));
        }
        // Extra shards of an earlier run with more workers: keep them while they hold
        // records, so those devices keep their order; otherwise shrink to `shards`.
        let pending = |(shard, _): &(Arc<Shard>, Position)| shard.backlog_bytes() > 0;
        if count > shards && !opened[shards..].iter().any(pending) {
            for i in shards..count {
                std::fs::remove_dir_all(shard_dir(i)).with_context(|| format!("cannot remove the empty spool shard {}", shard_dir(i).display()))?;
            }
            opened.truncate(shards);
        } else if count > shards {
            tracing::warn!(shards = count, configured = shards, "the spool holds undelivered records in more shards than rule workers configured; running one worker per shard until restart");
        }
        let backlog: u64 = opened.iter().map(|(shard, _)| shard.backlog_bytes()).sum();
        if backlog > 0 {
            tracing::info!(dir = %dir.display(), backlog_bytes = backlog, "resuming the spool: delivering what the last run did not");
        }
        let spool = Arc::new(Spool {
            shards: opened.iter().map(|(shard, _)| shard.clone()).collect(),
            config: config.clone(),
            metrics,
            sync_wanted: (Mutex::new(false), Condvar::new()),
            started: Instant::now(),
            last_full_log: AtomicU64::new(u64::MAX),
            last_error_log: AtomicU64::new(u64::MAX),
        });
        spool.update_gauges();
        if spool.config.fsync != Fsync::Never {
            let weak = Arc::downgrade(&spool);
            std::thread::Builder::new()
                .name("hookline-spool-sync".into())
                .spawn(move || sync_loop(weak))
                .context("cannot start the spool's fsync thread")?;
        }
        let readers = opened.into_iter().map(|(shard, resume)| ShardReader::new(shard, resume)).collect();
        Ok((spool, readers))
    }

    /// Where the spool lives: `buffer.dir`, or `<data>/spool` by default.
    pub fn dir_of(config: &BufferConfig, data: &Path) -> PathBuf {
        match config.dir.as_os_str().is_empty() {
            true => data.join("spool"),
            false => config.dir.clone(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that carries every event of `client_id`.
    pub fn shard_for(&self, client_id: &str) -> usize {
        // FNV-1a: stable, cheap on short ids, and computed once per connection.
        let hash = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % self.shards.len() as u64) as usize
    }

    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes()).sum()
    }

    /// Publishes the size gauges (called after commits and by a periodic task).
    pub fn update_gauges(&self) {
        let backlog: u64 = self.shards.iter().map(|s| s.backlog_bytes()).sum();
        self.metrics.spool_bytes.store(self.bytes() as i64, Ordering::Relaxed);
        self.metrics.spool_backlog_bytes.store(backlog as i64, Ordering::Relaxed);
    }

    /// Appends an event to its shard. Called from a connection's codec: when the spool
    /// is full under `backpressure`, or under `fsync = always` for a QoS 1/2 publish,
    /// this blocks that connection (and only it) until the write may proceed or is on
    /// disk.
    pub fn push(&self, shard: usize, event: &HookEvent) -> Push {
        Metrics::add(&self.metrics.hook_events[event.hook.code() as usize], 1);
        SCRATCH.with_borrow_mut(|frame| {
            frame.clear();
            frame::encode(event, frame);
            if let Some(refused) = self.wait_for_room(frame.len() as u64, event) {
                return refused;
            }
            let shard = &self.shards[shard];
            let end = match shard.append(frame, self.config.segment_bytes, self.config.fsync != Fsync::Never) {
                Ok(end) => end,
                Err(error) => {
                    Metrics::add(&self.metrics.spool_write_errors, 1);
                    if self.once_per_second(&self.last_error_log) {
                        tracing::error!(%error, client_id = %event.client_id, errors_total = Metrics::get(&self.metrics.spool_write_errors),
                            "cannot write to the spool (disk full or failing?): refusing the event; QoS 1/2 publishers are not acknowledged");
                    }
                    return Push::Rejected;
                }
            };
            let acknowledged = event.hook == Hook::MessagePublish && event.qos > 0;
            if acknowledged && self.config.fsync == Fsync::Always {
                self.wait_synced(shard, end);
            }
            Push::Written
        })
    }

    /// Applies `when_full` while the frame does not fit the disk budget; `None` once it
    /// fits.
    fn wait_for_room(&self, frame: u64, event: &HookEvent) -> Option<Push> {
        if self.bytes() + frame <= self.config.max_bytes {
            return None;
        }
        self.log_full(event);
        match self.config.when_full {
            WhenFull::Drop => {
                Metrics::add(&self.metrics.spool_dropped, 1);
                Some(Push::Dropped)
            }
            WhenFull::Reject => {
                Metrics::add(&self.metrics.spool_rejected, 1);
                Some(Push::Rejected)
            }
            WhenFull::Backpressure => {
                Metrics::add(&self.metrics.spool_full_waits, 1);
                blocking(|| {
                    while self.bytes() + frame > self.config.max_bytes {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
                None
            }
        }
    }

    fn wait_synced(&self, shard: &Shard, end: Position) {
        let (wanted, signal) = &self.sync_wanted;
        *wanted.lock().unwrap_or_else(|p| p.into_inner()) = true;
        signal.notify_one();
        blocking(|| shard.wait_synced(end));
    }

    fn once_per_second(&self, last: &AtomicU64) -> bool {
        let now = self.started.elapsed().as_secs();
        last.swap(now, Ordering::Relaxed) != now
    }

    fn log_full(&self, event: &HookEvent) {
        if self.once_per_second(&self.last_full_log) {
            tracing::warn!(
                hook = event.hook.name(),
                client_id = %event.client_id,
                policy = ?self.config.when_full,
                spool_bytes = self.bytes(),
                max_bytes = self.config.max_bytes,
                dropped_total = Metrics::get(&self.metrics.spool_dropped),
                rejected_total = Metrics::get(&self.metrics.spool_rejected),
                "spool full: Kafka has been slower than the devices for a while (buffer.max_bytes); \
                 applying buffer.when_full"
            );
        }
    }
}

/// Runs a blocking wait from a connection's codec, which cannot await: on tokio's
/// multi-thread runtime the worker thread's other tasks move elsewhere meanwhile.
fn blocking(wait: impl FnOnce()) {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// fsyncs the shards: every `fsync_interval_ms`, or as soon as a writer waits for it
/// (`always`, which so commits the writes of many connections at once). Ends with the
/// spool.
fn sync_loop(spool: Weak<Spool>) {
    loop {
        let Some(spool) = spool.upgrade() else { return };
        match spool.config.fsync {
            Fsync::Always => {
                let (wanted, signal) = &spool.sync_wanted;
                let mut wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
                if !*wanted {
                    wanted = signal.wait_timeout(wanted, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
                }
                *wanted = false;
            }
            _ => std::thread::sleep(Duration::from_millis(spool.config.fsync_interval_ms)),
        }
        for shard in &spool.shards {
            if let Err(error) = shard.sync() {
                if spool.once_per_second(&spool.last_error_log) {
                    tracing::error!(%error, "cannot fsync the spool: records written since the last fsync may not survive a power loss");
                }
            }
        }
    }
}
