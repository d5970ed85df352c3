//! One shard of the spool: a directory of numbered segment files written by the
//! connections of one set of clients and read, in order, by one rule worker.
//!
//! - `<16-digit id>.seg`: frames (`frame.rs`) appended in arrival order. A writer never
//!   reopens a segment: after a restart it starts the next id, so a segment torn by a
//!   crash is only ever read, never extended.
//! - `committed`: the position up to which every record is delivered, written with
//!   write-then-rename by the spool's sync thread. Segments wholly before it are
//!   deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;

use super::frame::{self, Check};
use crate::hooks::HookEvent;
use crate::metrics::Metrics;

/// Most bytes read from a segment at once; a bigger frame is read whole.
const READ_CHUNK: u64 = 1024 * 1024;

/// A place in a shard: the byte just after a frame, or a segment's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub struct Shard {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Bytes of this shard's segment files on disk.
    bytes: AtomicU64,
    /// Rung after every append; the reader waits on it when caught up.
    doorbell: (flume::Sender<()>, flume::Receiver<()>),
    /// How far the segment files are known to be on disk (fsync), for `fsync = always`.
    synced: Mutex<Position>,
    synced_changed: Condvar,
    /// Everything before it is delivered (the workers' view, in memory).
    delivered: Mutex<Position>,
    /// What the `committed` file says; segments before it are deleted.
    persisted: Mutex<Position>,
}

struct Writer {
    file: Arc<File>,
    end: Position,
    /// Written since the last fsync.
    dirty: bool,
    /// A write failed part-way: the segment may end in a torn frame, so start a new one.
    torn: bool,
    /// Segments finished since the last fsync: synced (with the directory, which holds
    /// their names) before the current one, off the writers' path.
    finished: Vec<Arc<File>>,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}.seg"))
}

fn create_segment(dir: &Path, segment: u64) -> io::Result<Arc<File>> {
    let file = OpenOptions::new().append(true).create_new(true).open(segment_path(dir, segment))?;
    Ok(Arc::new(file))
}

/// Segment ids present in `dir`, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse().ok()) else { continue };
        ids.push(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The committed position of the last run. An unreadable one (e.g. emptied by a power
/// loss right after its rename) means starting from the oldest segment: records are
/// delivered again rather than lost.
fn read_committed(dir: &Path) -> io::Result<Option<Position>> {
    let path = dir.join("committed");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Ok(Some(Position { segment, offset })),
        _ => {
            tracing::warn!(path = %path.display(), content = ?text, "spool commit mark unreadable: replaying the shard from its oldest segment (records may be delivered twice)");
            Ok(None)
        }
    }
}

impl Shard {
    /// Opens (or creates) the shard in `dir`: deletes what was committed, starts a fresh
    /// segment for writing, and returns the shard with the position reading resumes at.
    pub fn open(dir: PathBuf) -> io::Result<(Shard, Position)> {
        fs::create_dir_all(&dir)?;
        let committed = read_committed(&dir)?.unwrap_or_default();
        let segments = list_segments(&dir)?;
        let mut bytes = 0;
        let mut first_kept = None;
        for &id in &segments {
            let path = segment_path(&dir, id);
            if id < committed.segment {
                fs::remove_file(&path)?;
                continue;
            }
            bytes += fs::metadata(&path)?.len();
            first_kept.get_or_insert(id);
        }
        let last = segments.last().copied().unwrap_or(committed.segment);
        let next = last.max(committed.segment) + 1;
        let resume = match first_kept {
            Some(id) if id == committed.segment => committed,
            Some(id) => Position { segment: id, offset: 0 },
            None => Position { segment: next, offset: 0 },
        };
        let file = create_segment(&dir, next)?;
        let end = Position { segment: next, offset: 0 };
        let shard = Shard {
            dir,
            writer: Mutex::new(Writer { file, end, dirty: true, torn: false, finished: Vec::new() }),
            bytes: AtomicU64::new(bytes),
            doorbell: flume::bounded(1),
            synced: Mutex::new(Position::default()),
            synced_changed: Condvar::new(),
            delivered: Mutex::new(resume),
            persisted: Mutex::new(resume),
        };
        Ok((shard, resume))
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes written and not yet delivered: everything on disk from the first segment
    /// kept, less what is delivered of the segments up to the delivered position.
    pub fn backlog_bytes(&self) -> u64 {
        let delivered = *self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        let persisted = *self.persisted.lock().unwrap_or_else(|p| p.into_inner());
        // Segments between the persisted and the delivered position are delivered
        // whole, but still on disk until the next persist.
        let delivered_whole: u64 =
            (persisted.segment..delivered.segment).filter_map(|id| fs::metadata(segment_path(&self.dir, id)).ok()).map(|m| m.len()).sum();
        self.bytes().saturating_sub(delivered_whole + delivered.offset)
    }

    /// Appends whole frames; returns the position after them.
    pub fn append(&self, frames: &[u8], segment_bytes: u64) -> io::Result<Position> {
        let mut writer = self.writer();
        if writer.torn || writer.end.offset >= segment_bytes {
            let segment = writer.end.segment + 1;
            let finished = std::mem::replace(&mut writer.file, create_segment(&self.dir, segment)?);
            writer.finished.push(finished);
            writer.end = Position { segment, offset: 0 };
            writer.torn = false;
        }
        if let Err(e) = (&*writer.file).write_all(frames) {
            writer.torn = true;
            return Err(e);
        }
        writer.end.offset += frames.len() as u64;
        writer.dirty = true;
        self.bytes.fetch_add(frames.len() as u64, Ordering::Relaxed);
        let end = writer.end;
        drop(writer);
        let _ = self.doorbell.0.try_send(());
        Ok(end)
    }

    /// Where the next frame will be written.
    pub fn end(&self) -> Position {
        self.writer().end
    }

    /// Forces what was written to disk, if anything was; returns whether it did.
    pub fn sync(&self) -> io::Result<bool> {
        let (file, finished, end) = {
            let mut writer = self.writer();
            if !writer.dirty {
                return Ok(false);
            }
            writer.dirty = false;
            (writer.file.clone(), std::mem::take(&mut writer.finished), writer.end)
        };
        for segment in &finished {
            segment.sync_data()?;
        }
        // Segment names live in the directory: new ones survive a power loss only once
        // it is synced too.
        if !finished.is_empty() || self.synced_position().segment < end.segment {
            File::open(&self.dir)?.sync_all()?;
        }
        file.sync_data()?;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        *synced = (*synced).max(end);
        self.synced_changed.notify_all();
        Ok(true)
    }

    fn synced_position(&self) -> Position {
        *self.synced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until everything up to `position` is on disk.
    pub fn wait_synced(&self, position: Position) {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        while *synced < position {
            synced = self.synced_changed.wait(synced).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits for the next append, at most `timeout`.
    pub fn wait_for_append(&self, timeout: std::time::Duration) {
        let _ = self.doorbell.1.recv_timeout(timeout);
    }

    /// Records (in memory) that everything before `position` is delivered.
    pub fn mark_delivered(&self, position: Position) {
        let mut delivered = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        *delivered = (*delivered).max(position);
    }

    /// Writes the delivered position to `committed` if it moved, and deletes the
    /// segments wholly before it. Called off the workers' path: renames and deletes
    /// can wait on the file system's journal while an fsync runs.
    pub fn persist_delivered(&self) -> io::Result<()> {
        let delivered = *self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        let mut persisted = self.persisted.lock().unwrap_or_else(|p| p.into_inner());
        if delivered <= *persisted {
            return Ok(());
        }
        let temp = self.dir.join("committed.tmp");
        fs::write(&temp, format!("{} {}\n", delivered.segment, delivered.offset))?;
        fs::rename(&temp, self.dir.join("committed"))?;
        // Segment ids are consecutive, so the finished ones are exactly these.
        for id in persisted.segment..delivered.segment {
            let path = segment_path(&self.dir, id);
            match fs::metadata(&path) {
                Ok(meta) => {
                    fs::remove_file(&path)?;
                    self.bytes.fetch_sub(meta.len(), Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        *persisted = delivered;
        Ok(())
    }
}

/// Reads one shard's frames in order, from where the last run's deliveries ended.
pub struct ShardReader {
    shard: Arc<Shard>,
    at: Position,
    file: Option<(u64, File)>,
}

/// Events read, each with the position just after it.
pub type ReadBatch = Vec<(HookEvent, Position)>;

impl ShardReader {
    pub fn new(shard: Arc<Shard>, at: Position) -> ShardReader {
        ShardReader { shard, at, file: None }
    }

    pub fn shard(&self) -> &Arc<Shard> {
        &self.shard
    }

    /// Whether every appended frame has been read.
    pub fn caught_up(&self) -> bool {
        self.at >= self.shard.end()
    }

    /// Reads again from `to` (after the sink lost a batch).
    pub fn rewind(&mut self, to: Position) {
        self.at = to;
    }

    /// The position after the last frame read (or skipped as damaged).
    pub fn position(&self) -> Position {
        self.at
    }

    fn segment_file(&mut self) -> io::Result<&File> {
        if self.file.as_ref().is_none_or(|(id, _)| *id != self.at.segment) {
            let file = File::open(segment_path(&self.shard.dir, self.at.segment))?;
            self.file = Some((self.at.segment, file));
        }
        Ok(&self.file.as_ref().expect("opened just above").1)
    }

    /// Reads the next frames (up to about `READ_CHUNK` bytes) into `batch`; leaves it
    /// empty when caught up. Damaged frames are skipped, logged and counted.
    pub fn read(&mut self, batch: &mut ReadBatch, metrics: &Metrics) -> io::Result<()> {
        loop {
            let end = self.shard.end();
            let closed = self.at.segment < end.segment;
            let segment_end = match closed {
                true => match self.segment_file() {
                    Ok(file) => file.metadata()?.len(),
                    // A segment id the writer skipped (a failed roll): nothing to read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e),
                },
                false => end.offset,
            };
            if self.at.offset >= segment_end {
                if !closed {
                    return Ok(());
                }
                self.at = Position { segment: self.at.segment + 1, offset: 0 };
                continue;
            }
            let mut want = (segment_end - self.at.offset).min(READ_CHUNK);
            let chunk = loop {
                let mut chunk = vec![0; want as usize];
                let offset = self.at.offset;
                self.segment_file()?.read_exact_at(&mut chunk, offset)?;
                // A frame bigger than the chunk: read it whole.
                match frame::check(&chunk) {
                    Check::Incomplete if chunk.len() >= frame::HEADER => {
                        let len = frame::HEADER as u64 + u32::from_le_bytes(chunk[0..4].try_into().expect("4 bytes")) as u64;
                        if len > want && self.at.offset + len <= segment_end {
                            want = len;
                            continue;
                        }
                        break Bytes::from(chunk);
                    }
                    _ => break Bytes::from(chunk),
                }
            };
            self.parse(chunk, segment_end, closed, batch, metrics);
            return Ok(());
        }
    }

    fn parse(&mut self, chunk: Bytes, segment_end: u64, closed: bool, batch: &mut ReadBatch, metrics: &Metrics) {
        let mut used = 0;
        while used < chunk.len() {
            let rest = &chunk[used..];
            let skip = match frame::check(rest) {
                Check::Good(len) => {
                    let body = chunk.slice(used + frame::HEADER..used + len);
                    used += len;
                    let after = Position { segment: self.at.segment, offset: self.at.offset + used as u64 };
                    match frame::decode(body) {
                        Some(event) => {
                            batch.push((event, after));
                            continue;
                        }
                        None => 0,
                    }
                }
                Check::BadChecksum(len) => len,
                Check::Incomplete if self.at.offset + used as u64 + (rest.len() as u64) < segment_end => break,
                // A frame cut short at the end of a finished segment: torn by a crash.
                Check::Incomplete if closed => rest.len(),
                Check::Incomplete => break,
                // The frame boundary is lost: nothing after it in this segment can be trusted.
                Check::BadLength => (segment_end - self.at.offset) as usize - used,
            };
            self.skip_damaged(self.at.offset + used as u64, skip, metrics);
            used += skip;
        }
        self.at.offset += used as u64;
    }

    fn skip_damaged(&self, offset: u64, bytes: usize, metrics: &Metrics) {
        Metrics::add(&metrics.spool_damaged_records, 1);
        tracing::error!(
            segment = %segment_path(&self.shard.dir, self.at.segment).display(),
            offset,
            skipped_bytes = bytes,
            damaged_total = Metrics::get(&metrics.spool_damaged_records),
            "damaged spool record (checksum or length wrong, e.g. torn by a crash): skipped"
        );
    }
}
