//! The spool's shards as one store: pushing events (and refusing them when full), flushing
//! a connection's batch, the sync policy's thread, and what readers and workers ask of it.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::error::SpoolError;
use super::frame;
use super::shard::{Position, Shard, ShardReader};
use crate::config::{BufferConfig, Fsync, WhenFull};
use crate::hooks::{Hook, HookEvent};
use crate::internal_events::{InternalEvent, SpoolFsyncFailed, SpoolFull, SpoolProgressNotPersisted, SpoolWriteFailed};
use crate::metrics::Metrics;

/// What became of an event handed to the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Written; delivered later.
    Written,
    /// Not written because the spool is full (`when_full = "drop"`); counted.
    Dropped,
    /// Not written; the client must be told (`when_full = "reject"`, or, from `push`,
    /// a disk error).
    Rejected,
}

pub struct Spool {
    shards: Vec<Arc<Shard>>,
    config: BufferConfig,
    metrics: Arc<Metrics>,
    /// Wakes the sync thread: a writer waits for an fsync (`fsync = always`), or the
    /// spool closes.
    sync_wanted: (Mutex<SyncWanted>, Condvar),
    sync_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Frames a connection has staged and not yet written: a connection's events of one
/// read are written with one system call instead of one each.
#[derive(Default)]
pub struct SpoolBatch {
    frames: Vec<u8>,
    shard: usize,
    /// Holds a QoS 1/2 publish, which `fsync = always` must have on disk first.
    acknowledged: bool,
}

impl SpoolBatch {
    /// Bytes staged.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// What the sync thread is asked for.
#[derive(Default)]
pub(super) struct SyncWanted {
    fsync: bool,
    close: bool,
}

/// How often delivery progress is written down; a crash delivers again at most what
/// was delivered in this window.
pub(super) const PERSIST_EVERY: Duration = Duration::from_millis(100);

thread_local! {
    /// The batch of `Spool::push`, one per thread that raises events outside a read.
    static SCRATCH: RefCell<SpoolBatch> = RefCell::new(SpoolBatch::default());
}

impl Spool {
    /// Opens the spool in `config.dir` (default `<data>/spool`) with `shards` shards, or
    /// with as many as a previous run left undelivered records in: a device's old and
    /// new events must stay in one shard to stay in order. Returns one reader per shard.
    pub fn open(
        config: &BufferConfig,
        data: &Path,
        shards: usize,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Spool>, Vec<ShardReader>), SpoolError> {
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
            let (shard, resume) = Shard::open(path.clone()).map_err(|source| SpoolError::OpenShard { path, source })?;
            opened.push((Arc::new(shard), resume));
        }
        // Extra shards of an earlier run with more workers: keep them while they hold
        // records, so those devices keep their order; otherwise shrink to `shards`.
        let pending = |(shard, _): &(Arc<Shard>, Position)| shard.backlog_bytes() > 0;
        if count > shards && !opened[shards..].iter().any(pending) {
            for i in shards..count {
                let path = shard_dir(i);
                std::fs::remove_dir_all(&path).map_err(|source| SpoolError::RemoveShard { path, source })?;
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
            sync_wanted: (Mutex::default(), Condvar::new()),
            sync_thread: Mutex::default(),
        });
        spool.update_gauges();
        let weak = Arc::downgrade(&spool);
        let sync_thread = std::thread::Builder::new()
            .name("hookline-spool-sync".into())
            .spawn(move || sync_loop(weak))
            .map_err(SpoolError::SyncThread)?;
        *spool.sync_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(sync_thread);
        let readers = opened.into_iter().map(|(shard, resume)| ShardReader::new(shard, resume)).collect();
        Ok((spool, readers))
    }

    /// Where the spool lives: `buffer.dir`, or `<data>/spool` by default.
    fn dir_of(config: &BufferConfig, data: &Path) -> PathBuf {
        config.dir.clone().unwrap_or_else(|| data.join("spool"))
    }

    /// The shard that carries every event of `client_id`.
    pub fn shard_for(&self, client_id: &str) -> usize {
        // Computed once per connection.
        (crate::names::fnv1a(client_id.as_bytes()) % self.shards.len() as u64) as usize
    }

    /// Bytes of all segment files.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes()).sum()
    }

    /// Writes down, in each shard, how far its records are delivered, and deletes the
    /// segments wholly delivered. Runs on the sync thread, and at shutdown.
    pub fn persist_delivered(&self) {
        for shard in &self.shards {
            if let Err(error) = shard.persist_delivered() {
                SpoolProgressNotPersisted { error: &error }.emit();
            }
        }
    }

    /// Stops the sync thread after a last fsync and a last write of delivery progress,
    /// and waits for it. Call it once the workers are stopped; writes after it are
    /// still written, but only the OS decides when they reach the disk.
    pub fn close(&self) {
        let (wanted, signal) = &self.sync_wanted;
        wanted.lock().unwrap_or_else(|p| p.into_inner()).close = true;
        signal.notify_one();
        if let Some(thread) = self.sync_thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }

    /// Publishes the size gauges (every second, and at shutdown).
    pub fn update_gauges(&self) {
        self.metrics.spool_bytes.store(self.bytes() as i64, Ordering::Relaxed);
        self.metrics.spool_backlog_bytes.store(self.backlog_bytes() as i64, Ordering::Relaxed);
    }

    /// Appends an event to its shard at once (for events raised outside a connection's
    /// read batch). Blocks as `stage` and `flush` do.
    pub fn push(&self, shard: usize, event: &HookEvent) -> Push {
        SCRATCH.with_borrow_mut(|batch| {
            let written = self.stage(batch, shard, event).and_then(|staged| self.flush(batch).map(|()| staged));
            written.unwrap_or(Push::Rejected)
        })
    }

    /// Adds an event to a connection's batch of frames, if the disk budget admits it:
    /// when the spool is full under `backpressure`, this blocks that connection (and
    /// only it) until deliveries free room. The batch must be flushed before anything
    /// it holds is acknowledged.
    ///
    /// Staging may have to write what the batch already holds. If that write fails,
    /// `event` is not staged either and the error is returned: nothing staged since the
    /// last successful flush is on disk, so the caller closes the connection without
    /// acknowledging any of it (`flush` has counted and logged the failure).
    pub fn stage(&self, batch: &mut SpoolBatch, shard: usize, event: &HookEvent) -> io::Result<Push> {
        Metrics::add(&self.metrics.hook_events[event.hook.code() as usize], 1);
        if batch.shard != shard && !batch.frames.is_empty() {
            // A client's shard changes only when the broker assigns its id; keep order.
            self.flush(batch)?;
        }
        batch.shard = shard;
        let start = batch.frames.len();
        frame::encode(event, &mut batch.frames);
        let len = (batch.frames.len() - start) as u64;
        if !self.fits(start as u64 + len) {
            // Write what was admitted before deciding about this one: the room it waits
            // for is made by delivering what is on disk.
            let frame = batch.frames.split_off(start);
            self.flush(batch)?;
            batch.frames = frame;
            if let Some(refused) = self.wait_for_room(len, event) {
                batch.frames.clear();
                return Ok(refused);
            }
        }
        batch.acknowledged |= event.hook == Hook::MessagePublish && event.qos > 0;
        Ok(Push::Written)
    }

    /// Whether `more` bytes fit the budget next to what is not yet delivered.
    fn fits(&self, more: u64) -> bool {
        // The bytes on disk are never fewer than the backlog, and cheaper to read.
        let max = self.config.max_bytes;
        self.bytes() + more <= max || self.backlog_bytes() + more <= max
    }

    /// Bytes written and not yet delivered, over all shards.
    pub fn backlog_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.backlog_bytes()).sum()
    }

    /// Writes a batch's frames in one append; under `fsync = always`, waits until a
    /// batch holding a QoS 1/2 publish is on disk. On error nothing in the batch may be
    /// acknowledged: the caller closes the connection (its client resends).
    pub fn flush(&self, batch: &mut SpoolBatch) -> io::Result<()> {
        if batch.frames.is_empty() {
            return Ok(());
        }
        let shard = &self.shards[batch.shard];
        let appended = shard.append(&batch.frames, self.config.segment_bytes);
        let acknowledged = std::mem::take(&mut batch.acknowledged);
        batch.frames.clear();
        match appended {
            Ok(end) if acknowledged && self.config.fsync == Fsync::Always => {
                self.wait_synced(shard, end);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(error) => {
                SpoolWriteFailed { metrics: &self.metrics, error: &error }.emit();
                Err(error)
            }
        }
    }

    /// Applies `when_full` to a frame that does not fit the budget; `None` once it
    /// fits.
    fn wait_for_room(&self, frame: u64, event: &HookEvent) -> Option<Push> {
        if self.fits(frame) {
            return None;
        }
        let (policy, max_bytes) = (self.config.when_full, self.config.max_bytes);
        SpoolFull { metrics: &self.metrics, event, policy, backlog_bytes: self.backlog_bytes(), max_bytes }.emit();
        match policy {
            WhenFull::Drop => Some(Push::Dropped),
            WhenFull::Reject => Some(Push::Rejected),
            WhenFull::Backpressure => {
                blocking(|| {
                    while !self.fits(frame) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
                None
            }
        }
    }

    fn wait_synced(&self, shard: &Shard, end: Position) {
        let (wanted, signal) = &self.sync_wanted;
        let mut wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
        if wanted.close {
            // No sync thread any more (a client's last words during shutdown): sync here.
            drop(wanted);
            if let Err(error) = blocking(|| shard.sync()) {
                tracing::error!(%error, "cannot fsync the spool after it closed");
            }
            return;
        }
        wanted.fsync = true;
        drop(wanted);
        signal.notify_one();
        blocking(|| shard.wait_synced(end));
    }
}

/// Runs a blocking wait from a connection's codec, which cannot await: on tokio's
/// multi-thread runtime the worker thread's other tasks move elsewhere meanwhile.
pub(super) fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// fsyncs the shards (every `fsync_interval_ms`, or as soon as a writer waits for it
/// under `always`, which so commits the writes of many connections at once), and
/// writes down what the workers delivered, at most every `PERSIST_EVERY`. Ends when
/// the spool closes (after a last round) or is dropped.
pub(super) fn sync_loop(spool: Weak<Spool>) {
    let mut last_persist = Instant::now();
    loop {
        let Some(spool) = spool.upgrade() else { return };
        let period = match spool.config.fsync {
            Fsync::Always | Fsync::Never => PERSIST_EVERY,
            Fsync::Interval => Duration::from_millis(spool.config.fsync_interval_ms),
        };
        let closing = {
            let (wanted, signal) = &spool.sync_wanted;
            let mut wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
            if !wanted.fsync && !wanted.close {
                wanted = signal.wait_timeout(wanted, period).unwrap_or_else(|p| p.into_inner()).0;
            }
            wanted.fsync = false;
            wanted.close
        };
        if spool.config.fsync != Fsync::Never {
            for shard in &spool.shards {
                if let Err(error) = shard.sync() {
                    SpoolFsyncFailed { error: &error }.emit();
                }
            }
        }
        if closing || last_persist.elapsed() >= PERSIST_EVERY {
            spool.persist_delivered();
            last_persist = Instant::now();
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use bytes::Bytes;

    use super::*;
    use crate::spool::ReadBatch;

    fn publish_event(client: &str, seq: usize) -> HookEvent {
        let mut event = HookEvent::new(Hook::MessagePublish, client.into(), "".into());
        event.topic = Bytes::from(format!("devices/{client}/state"));
        event.payload = Bytes::from(format!("{{\"seq\":{seq}}}"));
        event.qos = 1;
        event
    }

    fn config(max_bytes: u64, when_full: WhenFull) -> BufferConfig {
        BufferConfig { max_bytes, segment_bytes: 4096, fsync: Fsync::Never, when_full, ..BufferConfig::default() }
    }

    fn read_all(reader: &mut ShardReader, metrics: &Metrics) -> Vec<(String, Position)> {
        let mut batch = ReadBatch::new();
        let mut out = Vec::new();
        loop {
            reader.read(&mut batch, metrics).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.drain(..).map(|(e, p)| (String::from_utf8_lossy(&e.payload).into_owned(), p)));
        }
    }

    fn seqs(read: &[(String, Position)]) -> Vec<String> {
        read.iter().map(|(payload, _)| payload.clone()).collect()
    }

    #[test]
    fn a_reopened_spool_resumes_after_the_last_commit_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (spool, mut readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        for seq in 0..200 {
            assert_eq!(spool.push(0, &publish_event("lock", seq)), Push::Written);
        }
        let read = read_all(&mut readers[0], &metrics);
        assert_eq!(read.len(), 200);
        assert!(read[199].1.segment > read[0].1.segment, "200 events span several 4 KiB segments");
        readers[0].shard().mark_delivered(read[149].1);
        spool.persist_delivered();
        drop((spool, readers));

        let (_spool, mut readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        let again = read_all(&mut readers[0], &metrics);
        assert_eq!(seqs(&again), (150..200).map(|s| format!("{{\"seq\":{s}}}")).collect::<Vec<_>>());
    }

    #[test]
    fn damaged_and_torn_records_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (spool, readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        for seq in 0..3 {
            spool.push(0, &publish_event("lock", seq));
        }
        drop((spool, readers));
        // Flip a byte in the second record's payload, then tear a fourth record in half,
        // as a crash mid-write would.
        let segment = std::fs::read_dir(dir.path().join("spool/0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut bytes = std::fs::read(&segment).unwrap();
        let frame = bytes.len() / 3;
        bytes[frame + frame - 3] ^= 0x01;
        let mut torn = Vec::new();
        frame::encode(&publish_event("lock", 3), &mut torn);
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&segment, &bytes).unwrap();

        let (spool, mut readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        spool.push(0, &publish_event("lock", 4));
        let read = read_all(&mut readers[0], &metrics);
        assert_eq!(seqs(&read), ["{\"seq\":0}", "{\"seq\":2}", "{\"seq\":4}"]);
        assert_eq!(Metrics::get(&metrics.spool_damaged_records), 2);
    }

    #[test]
    fn a_full_spool_drops_or_rejects_as_configured_and_never_grows_past_its_budget() {
        for (policy, outcome, counter) in
            [(WhenFull::Drop, Push::Dropped, "spool_dropped"), (WhenFull::Reject, Push::Rejected, "spool_rejected")]
        {
            let dir = tempfile::tempdir().unwrap();
            let metrics = Arc::new(Metrics::default());
            let (spool, _readers) = Spool::open(&config(8192, policy), dir.path(), 1, metrics.clone()).unwrap();
            let outcomes: Vec<Push> = (0..200).map(|seq| spool.push(0, &publish_event("lock", seq))).collect();
            let refused = outcomes.iter().filter(|o| **o == outcome).count();
            assert!(refused > 0 && outcomes[..10].iter().all(|o| *o == Push::Written), "{policy:?}: {outcomes:?}");
            assert!(spool.backlog_bytes() <= 8192, "{policy:?}: {} bytes", spool.backlog_bytes());
            assert_eq!(metrics.snapshot()[counter], refused as i64);
        }
    }

    #[test]
    fn an_unreadable_commit_mark_replays_the_shard_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (spool, readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        spool.push(0, &publish_event("lock", 0));
        drop((spool, readers));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("spool/0/committed"))
            .unwrap()
            .write_all(b"garbage")
            .unwrap();
        let (_spool, mut readers) = Spool::open(&config(1 << 20, WhenFull::Backpressure), dir.path(), 1, metrics.clone()).unwrap();
        assert_eq!(seqs(&read_all(&mut readers[0], &metrics)), ["{\"seq\":0}"]);
    }
}
