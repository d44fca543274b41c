//! The on-disk journal of every alarm, event and command, written before any
//! of them is published.
//!
//! - Append-only JSON lines (`seg-NNNNNNNNNN.jsonl`), one record a line, each
//!   with a unique id `<boot>-<n>`; `n` grows across restarts.
//! - `append` writes the record into the current segment itself (one
//!   `write(2)` into the page cache, microseconds), so a record whose
//!   `append` returned survives a SIGKILL of the process; a writer thread
//!   fsyncs in batches (group commit) and only then are records published.
//!   No caller waits for an fsync: while the writer is stuck in one longer
//!   than [`DIRECT_WRITE_STALL`], or a write failed, or a new segment is
//!   due, records queue in memory (bounded) and the writer writes them in
//!   order when it can.
//! - A size cap with rotation: past `segment_bytes` a new segment starts;
//!   past `max_bytes` the oldest segment is removed.
//! - `acked` holds the position up to which every record was acknowledged by
//!   the broker (QoS 1 PubAck). On start, every later record is loaded for
//!   replay, in order.
//! - A failed write (full disk) raises `JOURNAL_DISK_FULL` and keeps the
//!   records in memory (bounded by `memory_records`), so they are still
//!   published; the alarm clears on the next successful write.

use super::config::JournalConfig;
use crate::events::{Event, EventBus, EventSink, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// An alarm or event from the event bus.
    Event,
    /// A remote command and its outcome.
    Command,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the journal, increasing across restarts.
    pub n: u64,
    /// Unique id, `<boot>-<n>`: subscribers de-duplicate replays by it.
    pub id: String,
    pub at_ms: u64,
    pub stream: Stream,
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.display().to_string(), source }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Counters for telemetry and tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JournalStats {
    pub appended: u64,
    pub written: u64,
    pub write_failures: u64,
    /// Records dropped from memory (memory_records exceeded): lost to the broker.
    pub dropped: u64,
    /// Unacknowledged records whose segment was removed by the size cap.
    pub evicted_unacked: u64,
    pub unacked: usize,
    pub acked: u64,
    /// Unreadable records skipped when the journal was opened.
    pub bad_records: u64,
}

struct Segment {
    index: u64,
    path: PathBuf,
    bytes: u64,
    last_n: u64,
}

struct State {
    boot: String,
    next_n: u64,
    /// Not yet on disk (the writer writes them, in order): appended while
    /// the disk was slow or failing, or a new segment was due.
    pending: VecDeque<Record>,
    /// Written by `append`, awaiting the writer's fsync.
    unsynced: VecDeque<Record>,
    /// Written and fsync'd (or kept in memory after a failed write),
    /// awaiting PubAck.
    ready: VecDeque<Record>,
    /// The segment `append` writes into (opened by the writer), its size
    /// and its last record.
    file: Option<Arc<File>>,
    file_bytes: u64,
    file_last_n: u64,
    /// The writer is writing `pending`: appends queue behind it.
    draining: bool,
    /// The last write failed: appends queue until the writer succeeds.
    failing: bool,
    /// Acknowledged out of order, ahead of the contiguous position.
    acked_ahead: BTreeSet<u64>,
    acked: u64,
    acked_dirty: bool,
    stop: bool,
    stats: JournalStats,
    /// When the writer started the write (and fsync) in progress.
    writing_since: Option<std::time::Instant>,
}

struct Shared {
    cfg: JournalConfig,
    dir: PathBuf,
    state: Mutex<State>,
    wake: Condvar,
    ready: tokio::sync::Notify,
    events: EventBus,
}

/// Handle to the journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

fn segment_index(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    name.strip_prefix("seg-")?.strip_suffix(".jsonl")?.parse().ok()
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("seg-{index:010}.jsonl"))
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let p = entry.map_err(io_err(dir))?.path();
        if let Some(i) = segment_index(&p) {
            v.push((i, p));
        }
    }
    v.sort();
    Ok(v)
}

impl Journal {
    /// Open (or create) the journal in `cfg.dir`, load what was never
    /// acknowledged, and start the writer thread. Alarms about the disk go to
    /// `events`.
    pub fn open(cfg: JournalConfig, dir: PathBuf, events: EventBus) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let acked_path = dir.join("acked");
        let acked: u64 = match std::fs::read_to_string(&acked_path) {
            Ok(s) => s.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let mut segments = Vec::new();
        let mut ready = VecDeque::new();
        let mut max_n = acked;
        let mut bad_records = 0u64;
        let listed = list_segments(&dir)?;
        let last_index = listed.last().map(|(i, _)| *i);
        for (index, path) in listed {
            let bytes_read = std::fs::read(&path).map_err(io_err(&path))?;
            let mut last_n = 0;
            // The end of the last record that parsed: a torn tail of the
            // newest segment (a crash mid-write) is cut back to it, so the
            // next record starts on a line of its own.
            let mut good_end = 0usize;
            let mut at = 0usize;
            while at < bytes_read.len() {
                let end = bytes_read[at..].iter().position(|b| *b == b'\n').map(|i| at + i);
                let line = &bytes_read[at..end.unwrap_or(bytes_read.len())];
                let next = end.map_or(bytes_read.len(), |e| e + 1);
                // A line is whole only with its newline; bad bytes or JSON
                // (a torn multi-byte character, a half record) are skipped
                // and counted, and reading goes on with the next line.
                match (end, std::str::from_utf8(line).ok().and_then(|l| serde_json::from_str::<Record>(l).ok())) {
                    (Some(_), Some(r)) => {
                        last_n = last_n.max(r.n);
                        max_n = max_n.max(r.n);
                        if r.n > acked {
                            ready.push_back(r);
                        }
                        good_end = next;
                    }
                    _ if line.iter().all(|b| b.is_ascii_whitespace()) => good_end = next,
                    _ => {
                        bad_records += 1;
                        tracing::warn!(segment = %path.display(), offset = at, "journal: skipping an unreadable record");
                    }
                }
                at = next;
            }
            let mut bytes = bytes_read.len() as u64;
            if Some(index) == last_index && good_end < bytes_read.len() {
                // Only the newest segment can have a torn tail; cut it back.
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(good_end as u64).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                tracing::warn!(segment = %path.display(), cut = bytes_read.len() - good_end, "journal: torn tail cut back to the last whole record");
                bytes = good_end as u64;
            }
            segments.push(Segment { index, path, bytes, last_n });
        }
        if !ready.is_empty() {
            tracing::info!(records = ready.len(), acked, "journal: records not yet acknowledged will be replayed");
        }
        let boot = format!("{:x}{:04x}", now_ms(), std::process::id() & 0xffff);
        let state = State {
            boot,
            next_n: max_n + 1,
            pending: VecDeque::new(),
            unsynced: VecDeque::new(),
            ready,
            file: None,
            file_bytes: 0,
            file_last_n: 0,
            draining: false,
            failing: false,
            acked_ahead: BTreeSet::new(),
            acked,
            acked_dirty: false,
            stop: false,
            stats: JournalStats { acked, bad_records, ..Default::default() },
            writing_since: None,
        };
        let shared =
            Arc::new(Shared { cfg, dir, state: Mutex::new(state), wake: Condvar::new(), ready: tokio::sync::Notify::new(), events });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("journal".into())
                .spawn(move || Writer { shared, segments }.run())
                .map_err(io_err(Path::new("journal thread")))?
        };
        Ok(Journal { shared, writer: Arc::new(Mutex::new(Some(writer))) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Journal a record; returns its id. The record is in the page cache
    /// when this returns (it survives the process being killed) unless the
    /// disk is slow or failing; never waits for an fsync. While records
    /// queue in memory, at most `memory_records` are kept: the oldest
    /// queued record goes first, counted in `dropped`.
    pub fn append(&self, stream: Stream, body: serde_json::Value) -> String {
        let mut s = self.lock();
        let n = s.next_n;
        s.next_n += 1;
        let id = format!("{}-{n}", s.boot);
        let record = Record { n, id: id.clone(), at_ms: now_ms(), stream, body };
        s.stats.appended += 1;
        if self.write_now(&mut s, &record) {
            s.unsynced.push_back(record);
        } else {
            if s.pending.len() + s.unsynced.len() + s.ready.len() >= self.shared.cfg.memory_records && !s.pending.is_empty() {
                s.pending.pop_front();
                s.stats.dropped += 1;
            }
            s.pending.push_back(record);
        }
        drop(s);
        self.shared.wake.notify_one();
        id
    }

    /// Write `r` into the current segment now, if nothing waits before it
    /// and the disk keeps up. Under the state lock, so the file holds the
    /// records in order.
    fn write_now(&self, s: &mut State, r: &Record) -> bool {
        let stalled = s.writing_since.is_some_and(|t| t.elapsed() > DIRECT_WRITE_STALL);
        if !s.pending.is_empty() || s.draining || s.failing || stalled || s.file_bytes >= self.shared.cfg.segment_bytes {
            return false;
        }
        let Some(f) = s.file.clone() else { return false };
        let Ok(mut line) = serde_json::to_vec(r) else { return false };
        line.push(b'\n');
        match (&*f).write_all(&line) {
            Ok(()) => {
                s.file_bytes += line.len() as u64;
                s.file_last_n = r.n;
                s.stats.written += 1;
                true
            }
            Err(_) => {
                // No torn line: cut back; the writer retries and alarms.
                let _ = f.set_len(s.file_bytes);
                s.failing = true;
                false
            }
        }
    }

    /// Up to `max` records after position `after`, in order, that are
    /// written and not yet acknowledged.
    pub fn records_after(&self, after: u64, max: usize) -> Vec<Record> {
        let s = self.lock();
        let start = s.ready.partition_point(|r| r.n <= after);
        s.ready.iter().skip(start).take(max).cloned().collect()
    }

    /// The position every record up to which is acknowledged.
    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// The broker acknowledged record `n`.
    pub fn ack(&self, n: u64) {
        let mut s = self.lock();
        if n <= s.acked {
            return;
        }
        s.acked_ahead.insert(n);
        let mut moved = false;
        while let Some(front) = s.ready.front().map(|r| r.n) {
            if !s.acked_ahead.remove(&front) {
                break;
            }
            s.ready.pop_front();
            s.acked = front;
            moved = true;
        }
        if moved {
            let acked = s.acked;
            s.acked_ahead.retain(|&x| x > acked);
            s.stats.acked = acked;
            s.acked_dirty = true;
            drop(s);
            self.shared.wake.notify_one();
        }
    }

    /// Wait until records may be ready to publish.
    pub async fn wait_ready(&self) {
        self.shared.ready.notified().await
    }

    pub fn stats(&self) -> JournalStats {
        let s = self.lock();
        JournalStats { unacked: s.ready.len() + s.unsynced.len() + s.pending.len(), ..s.stats.clone() }
    }

    /// How long the write in progress has been going on (a slow disk or
    /// fsync); `None` when the writer is idle.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.lock().writing_since.map(|t| t.elapsed())
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Write what is queued, then stop the writer thread.
    pub fn close(&self) {
        self.lock().stop = true;
        self.shared.wake.notify_all();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// The event bus sink: every event becomes a journal record.
pub struct JournalSink(pub Journal);

impl EventSink for JournalSink {
    fn record(&self, e: &Event) {
        match serde_json::to_value(e) {
            Ok(body) => {
                self.0.append(Stream::Event, body);
            }
            Err(err) => tracing::error!("journal: cannot serialise event {}: {err}", e.seq),
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    segments: Vec<Segment>,
}

const SOURCE: &str = "telemetry";

/// An fsync in progress longer than this, and `append` stops writing
/// itself: records queue in memory until the disk keeps up again.
pub const DIRECT_WRITE_STALL: Duration = Duration::from_millis(50);

/// One pass of the writer: what it took under the lock.
struct Pass {
    /// Queued records to write now.
    batch: VecDeque<Record>,
    /// How many of the `unsynced` records this pass's fsync covers.
    synced: usize,
    acked: Option<u64>,
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(mut self) {
        let mut disk_alarm = false;
        loop {
            let Some(pass) = self.next_pass() else { break };
            let mut result = self.open_segment_if_due();
            if result.is_ok() && !pass.batch.is_empty() {
                result = self.write_batch(&pass.batch);
            }
            if result.is_ok() && (pass.synced > 0 || !pass.batch.is_empty()) {
                result = self.sync();
            }
            let written = pass.batch.len();
            let (dropped, len) = self.finish(pass.batch, pass.synced, result.is_ok());
            let evicted = if result.is_ok() { self.enforce_cap() } else { 0 };
            self.lock().stats.evicted_unacked += evicted;
            if written > 0 || pass.synced > 0 {
                self.shared.ready.notify_one();
            }
            // Alarms are raised with no lock held: they come back here as records.
            match result {
                Ok(()) if disk_alarm => {
                    disk_alarm = false;
                    self.shared.events.clear(SOURCE, "JOURNAL_DISK_FULL", "journal writable again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !disk_alarm {
                        disk_alarm = true;
                        self.shared.events.raise(
                            SOURCE,
                            "JOURNAL_DISK_FULL",
                            Severity::Medium,
                            format!("cannot write the alarm journal: {e}; {len} records kept in memory and still published"),
                        );
                    }
                }
            }
            if dropped > 0 {
                self.shared.events.raise(
                    SOURCE,
                    "JOURNAL_OVERFLOW",
                    Severity::Medium,
                    format!("{dropped} unacknowledged journal records dropped from memory (memory_records reached)"),
                );
            }
            if evicted > 0 {
                tracing::warn!(evicted, "journal: size cap removed a segment with unacknowledged records (kept in memory)");
            }
            if let Some(acked) = pass.acked {
                self.write_acked(acked);
            }
        }
        let _ = self.sync();
    }

    /// Wait for work; `None` when stopped with nothing left.
    fn next_pass(&self) -> Option<Pass> {
        let mut s = self.lock();
        let due = |s: &State| s.file.is_none() || s.file_bytes >= self.shared.cfg.segment_bytes;
        while s.pending.is_empty() && s.unsynced.is_empty() && !s.acked_dirty && !s.stop && !(due(&s) && !s.failing) {
            s = self.shared.wake.wait_timeout(s, Duration::from_secs(1)).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        if s.stop && s.pending.is_empty() && s.unsynced.is_empty() && !s.acked_dirty {
            return None;
        }
        let acked = s.acked_dirty.then_some(s.acked);
        s.acked_dirty = false;
        let batch = std::mem::take(&mut s.pending);
        s.draining = !batch.is_empty();
        let synced = s.unsynced.len();
        if !batch.is_empty() || synced > 0 {
            s.writing_since = Some(std::time::Instant::now());
        }
        Some(Pass { batch, synced, acked })
    }

    /// Hand the pass's records on: the synced ones and the batch become
    /// ready (kept in memory even when the write failed).
    fn finish(&self, batch: VecDeque<Record>, synced: usize, ok: bool) -> (u64, usize) {
        let mut s = self.lock();
        s.writing_since = None;
        s.draining = false;
        if ok {
            s.failing = false;
            s.stats.written += batch.len() as u64;
        } else {
            s.failing = true;
            s.stats.write_failures += 1;
        }
        let cap = self.shared.cfg.memory_records;
        let mut dropped = 0;
        let take = synced.min(s.unsynced.len());
        let moved: Vec<Record> = s.unsynced.drain(..take).collect();
        for r in moved.into_iter().chain(batch) {
            if s.ready.len() >= cap {
                s.ready.pop_front();
                dropped += 1;
            }
            s.ready.push_back(r);
        }
        s.stats.dropped += dropped;
        (dropped, s.ready.len())
    }

    /// Open a segment when none is open or the current one is full. The
    /// old one is fsync'd after the switch, when nothing writes to it.
    /// Take the open segment's size and last record from the state.
    /// Returns whether a segment is open.
    fn refresh_current(&mut self) -> bool {
        let (open, bytes, last_n) = {
            let s = self.lock();
            (s.file.is_some(), s.file_bytes, s.file_last_n)
        };
        if let Some(seg) = self.segments.last_mut().filter(|_| open) {
            seg.bytes = bytes;
            seg.last_n = seg.last_n.max(last_n);
        }
        open
    }

    fn open_segment_if_due(&mut self) -> Result<(), JournalError> {
        let open = self.refresh_current();
        let need_new = match self.segments.last() {
            None => true,
            Some(seg) => seg.bytes >= self.shared.cfg.segment_bytes,
        };
        if open && !need_new {
            return Ok(());
        }
        let (index, fresh) = match self.segments.last() {
            Some(seg) if !need_new => (seg.index, false),
            Some(seg) => (seg.index + 1, true),
            None => (1, true),
        };
        let path = segment_path(&self.shared.dir, index);
        let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let len = f.metadata().map_err(io_err(&path))?.len();
        if fresh {
            self.segments.push(Segment { index, path, bytes: 0, last_n: 0 });
            // Make the new file's directory entry durable too.
            if let Ok(d) = File::open(&self.shared.dir) {
                let _ = d.sync_all();
            }
        }
        let old = {
            let mut s = self.lock();
            s.file_bytes = len;
            s.file_last_n = 0;
            s.file.replace(Arc::new(f))
        };
        if let Some(old) = old {
            old.sync_data().map_err(io_err(&self.shared.dir))?;
        }
        Ok(())
    }

    /// Write queued records (appends wait behind them: `draining`).
    fn write_batch(&mut self, batch: &VecDeque<Record>) -> Result<(), JournalError> {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for r in batch {
            serde_json::to_writer(&mut buf, r).map_err(|e| JournalError::Io { path: "record".into(), source: e.into() })?;
            buf.push(b'\n');
        }
        let (f, bytes) = {
            let s = self.lock();
            (s.file.clone(), s.file_bytes)
        };
        let path = self.segments.last().map(|seg| seg.path.clone()).unwrap_or_default();
        let Some(f) = f else {
            return Err(JournalError::Io { path: path.display().to_string(), source: std::io::Error::other("no segment open") });
        };
        match (&*f).write_all(&buf) {
            Ok(()) => {
                let mut s = self.lock();
                s.file_bytes += buf.len() as u64;
                s.file_last_n = batch.back().map_or(s.file_last_n, |r| r.n);
                Ok(())
            }
            Err(e) => {
                // No torn line: cut the segment back to its last whole record.
                let _ = f.set_len(bytes);
                Err(JournalError::Io { path: path.display().to_string(), source: e })
            }
        }
    }

    /// fsync the current segment.
    fn sync(&self) -> Result<(), JournalError> {
        let f = self.lock().file.clone();
        match f {
            Some(f) => f.sync_data().map_err(io_err(&self.shared.dir)),
            None => Ok(()),
        }
    }

    /// Remove the oldest segments past the size cap; returns how many
    /// unacknowledged records they held.
    fn enforce_cap(&mut self) -> u64 {
        self.refresh_current();
        let acked = self.lock().acked;
        let mut evicted = 0;
        while self.segments.len() > 1 && self.segments.iter().map(|s| s.bytes).sum::<u64>() > self.shared.cfg.max_bytes {
            let old = self.segments.remove(0);
            if old.last_n > acked {
                evicted += 1;
            }
            if let Err(e) = std::fs::remove_file(&old.path) {
                tracing::warn!(segment = %old.path.display(), "journal: cannot remove an old segment: {e}");
            }
        }
        evicted
    }

    fn write_acked(&self, acked: u64) {
        // Not fsync'd: a lost update only means more replays, which
        // subscribers de-duplicate by id.
        let path = self.shared.dir.join("acked");
        let tmp = self.shared.dir.join("acked.tmp");
        let r = std::fs::write(&tmp, format!("{acked}\n")).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            tracing::debug!("journal: cannot record the acked position: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn cfg(dir: &Path) -> JournalConfig {
        JournalConfig { dir: dir.to_path_buf(), max_bytes: 1 << 20, segment_bytes: 64 << 10, memory_records: 1000 }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("endotower-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn wait_written(j: &Journal, n: usize) {
        for _ in 0..500 {
            if j.records_after(0, usize::MAX).len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("records never written: {:?}", j.stats());
    }

    /// A journal in `dir` fed by a bus, with alarms `A0..A<n>` written.
    fn journal_with_alarms(dir: &Path, n: usize) -> (EventBus, Journal) {
        let bus = EventBus::new(16);
        let j = Journal::open(cfg(dir), dir.to_path_buf(), bus.clone()).unwrap();
        bus.add_sink(Arc::new(JournalSink(j.clone())));
        for i in 0..n {
            bus.raise("test", &format!("A{i}"), Severity::Low, "x");
        }
        wait_written(&j, n);
        (bus, j)
    }

    #[test]
    fn every_event_is_journaled_in_order_and_unacked_records_survive_a_restart() {
        let dir = temp("restart");
        let (bus, j) = journal_with_alarms(&dir, 50);
        let recs = j.records_after(0, usize::MAX);
        let codes: Vec<String> = recs.iter().map(|r| r.body["code"].as_str().unwrap().to_string()).collect();
        assert_eq!(codes, (0..50).map(|i| format!("A{i}")).collect::<Vec<_>>());
        // The first 20 acknowledged (out of order), then a restart.
        for r in recs.iter().take(20).rev() {
            j.ack(r.n);
        }
        assert_eq!(j.acked(), recs[19].n);
        bus.clear_sinks();
        j.close();
        let j2 = Journal::open(cfg(&dir), dir.clone(), bus.clone()).unwrap();
        let again = j2.records_after(0, usize::MAX);
        assert_eq!(again.len(), 30);
        assert_eq!(again[0].id, recs[20].id, "replay starts at the first unacknowledged record, same id");
        let id = j2.append(Stream::Command, serde_json::json!({"x": 1}));
        assert!(id.ends_with(&format!("-{}", recs[49].n + 1)), "positions keep growing across restarts: {id}");
        j2.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_cut_and_bad_records_are_skipped_and_counted_without_losing_the_rest() {
        let dir = temp("torn");
        let (bus, j) = journal_with_alarms(&dir, 10);
        bus.clear_sinks();
        j.close();
        // A torn multi-byte character on a line of its own after record 5,
        // and a crash in the middle of a record at the end.
        let (_, seg) = list_segments(&dir).unwrap().pop().unwrap();
        let text = std::fs::read(&seg).unwrap();
        let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        let mut bytes = lines[..5].concat();
        bytes.extend_from_slice(b"{\"n\":99,\"id\":\"x\xe2\x82\n");
        bytes.extend_from_slice(&lines[5..].concat());
        bytes.extend_from_slice(&lines[0][..lines[0].len() / 2]);
        std::fs::write(&seg, &bytes).unwrap();

        let j = Journal::open(cfg(&dir), dir.clone(), bus.clone()).unwrap();
        let codes = |j: &Journal| -> Vec<String> {
            j.records_after(0, usize::MAX).iter().map(|r| r.body["code"].as_str().unwrap_or("?").to_string()).collect()
        };
        assert_eq!(codes(&j), (0..10).map(|i| format!("A{i}")).collect::<Vec<_>>(), "every whole record is read past the bad line");
        assert_eq!(j.stats().bad_records, 2, "the bad line and the torn tail are counted");
        // The next record starts on a line of its own: readable after another restart.
        bus.add_sink(Arc::new(JournalSink(j.clone())));
        bus.raise("test", "AFTER", Severity::Low, "x");
        wait_written(&j, 11);
        bus.clear_sinks();
        j.close();
        let j = Journal::open(cfg(&dir), dir.clone(), bus.clone()).unwrap();
        assert_eq!(codes(&j).last().map(String::as_str), Some("AFTER"));
        assert_eq!(j.stats().bad_records, 1, "the torn tail was cut; only the bad line is left");
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_size_cap_rotates_and_removes_the_oldest_segments() {
        let dir = temp("cap");
        let bus = EventBus::new(16);
        let c = JournalConfig { dir: dir.clone(), max_bytes: 16 << 10, segment_bytes: 4 << 10, memory_records: 100_000 };
        let j = Journal::open(c, dir.clone(), bus.clone()).unwrap();
        for k in 0..20 {
            for i in 0..20 {
                j.append(Stream::Event, serde_json::json!({"i": k * 20 + i, "pad": "x".repeat(100)}));
            }
            wait_written(&j, (k + 1) * 20);
        }
        for r in j.records_after(0, usize::MAX) {
            j.ack(r.n);
        }
        j.close();
        let segs = list_segments(&dir).unwrap();
        let total: u64 = segs.iter().map(|(_, p)| std::fs::metadata(p).unwrap().len()).sum();
        assert!(segs.len() > 1 && total <= (16 << 10) + (4 << 10) + 256, "{} segments, {total} bytes", segs.len());
        assert!(segs[0].0 > 1, "the first segments were removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hz018_a_full_disk_raises_an_alarm_keeps_records_in_memory_and_recovers() {
        crate::tiny_fs::on_tiny_fs(
            "telemetry::journal::tests::hz018_a_full_disk_raises_an_alarm_keeps_records_in_memory_and_recovers",
            64,
            |dir| {
                let bus = EventBus::new(4096);
                let mut rx = bus.subscribe();
                let jdir = dir.join("journal");
                let c = JournalConfig { dir: jdir.clone(), max_bytes: 1 << 30, segment_bytes: 1 << 29, memory_records: 10_000 };
                let j = Journal::open(c, jdir, bus.clone()).unwrap();
                bus.add_sink(Arc::new(JournalSink(j.clone())));
                // About 200 KiB of events into a 64 KiB filesystem.
                for i in 0..1000 {
                    bus.event(EventKind::Capture, Severity::Info, "archive", "CAPTURED", format!("{i} {}", "x".repeat(150)));
                    if i % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                let mut raised = false;
                for _ in 0..500 {
                    while let Ok(e) = rx.try_recv() {
                        raised |= e.code == "JOURNAL_DISK_FULL" && e.kind == EventKind::AlarmRaised;
                    }
                    let kept = j.records_after(0, usize::MAX).iter().filter(|r| r.body["code"] == "CAPTURED").count();
                    if raised && kept >= 1000 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(raised, "no JOURNAL_DISK_FULL alarm: {:?}", j.stats());
                let recs = j.records_after(0, usize::MAX);
                let captured = recs.iter().filter(|r| r.body["code"] == "CAPTURED").count();
                assert_eq!(captured, 1000, "every record is still there to publish: {:?}", j.stats());
                // Space comes back: acknowledge everything (the disk-full
                // records leave memory), grow the filesystem, write again.
                for r in &recs {
                    j.ack(r.n);
                }
                let st = std::process::Command::new("mount").args(["-o", "remount,size=4m"]).arg(dir).status().unwrap();
                assert!(st.success());
                bus.event(EventKind::Capture, Severity::Info, "archive", "CAPTURED", "after");
                let mut cleared = false;
                for _ in 0..500 {
                    while let Ok(e) = rx.try_recv() {
                        cleared |= e.code == "JOURNAL_DISK_FULL" && e.kind == EventKind::AlarmCleared;
                    }
                    if cleared {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(cleared, "the alarm never cleared: {:?}", j.stats());
                bus.clear_sinks();
                j.close();
            },
        );
    }
}
