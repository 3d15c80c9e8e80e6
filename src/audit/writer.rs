//! The single writer: a dedicated thread that takes records off a channel, chains and writes them
//! in batches (group commit: one write and at most one fsync per batch), rotates files by size and
//! keeps `audit.head`, the last synced (seq, hash), so `audit verify` can tell a log cut short.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::capacity::{Capacity, Probe, RESERVATION_BYTES};
use super::record::{self, Record};
use super::recover::recover;
use super::{AuditError, AuditEvent, AuditOptions};
use crate::config::FsyncMode;

/// Most records written in one batch.
const MAX_BATCH: usize = 4096;
/// Longest a record waits for its fsync under `fsync = "batch"`.
const BATCH_SYNC: Duration = Duration::from_millis(100);
/// Name of the head checkpoint file.
pub const HEAD_FILE: &str = "audit.head";

/// Most space preallocated ahead of the records.
const MAX_PREALLOC: u64 = 64 * 1024 * 1024;

/// How often the writer picks up detached records when nothing else wakes it.
const DETACHED_TICK: Duration = Duration::from_millis(10);
/// Detached records queued before a sender wakes the writer early (bounds the queue's memory).
const DETACHED_WAKE_AT: usize = 1024;

pub(super) enum Msg {
    Record(Box<AuditEvent>, oneshot::Sender<Result<u64, AuditError>>),
    /// Detached records are waiting: write them now.
    Wake,
    /// Prove the log still takes writes (see [`Probe`]).
    Probe(oneshot::Sender<Result<(), AuditError>>),
    Close(oneshot::Sender<Result<(), AuditError>>),
    /// Start a new file if the current one holds any record; answers with the number of the
    /// newest file that is closed (complete) afterwards (0: none).
    Rotate(oneshot::Sender<Result<u64, AuditError>>),
}

/// Records nobody waits for (one per proxied request). Queued here instead of on the channel, so
/// a busy proxy does not pay a thread wake-up (futex, context switch) per request: the writer
/// takes them with every batch and at least every [`DETACHED_TICK`].
#[derive(Default)]
struct Detached {
    queue: Mutex<Vec<AuditEvent>>,
    /// Set when the writer has stopped: later detached records fail instead of vanishing.
    closed: AtomicBool,
}

impl Detached {
    fn take(&self) -> Vec<AuditEvent> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

pub(super) struct Handle {
    tx: mpsc::Sender<Msg>,
    dir: PathBuf,
    detached: Arc<Detached>,
    pub(super) capacity: Arc<Capacity>,
    /// Seq of the last record written (not necessarily synced).
    pub(super) written: tokio::sync::watch::Sender<u64>,
}

impl Handle {
    pub(super) fn send(&self, msg: Msg) -> Result<(), AuditError> {
        self.tx.send(msg).map_err(|_| AuditError::Closed)
    }

    /// Queues a record nobody waits for; it is written within [`DETACHED_TICK`].
    pub(super) fn send_detached(&self, ev: AuditEvent) -> Result<(), AuditError> {
        if self.detached.closed.load(Ordering::Acquire) {
            return Err(AuditError::Closed);
        }
        let queued = {
            let mut q = self
                .detached
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.push(ev);
            q.len()
        };
        if queued == DETACHED_WAKE_AT {
            self.send(Msg::Wake)?;
        }
        Ok(())
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn io(e: std::io::Error) -> AuditError {
    AuditError::Io(e.to_string())
}

struct Writer {
    opts: AuditOptions,
    file: File,
    file_no: u64,
    size: u64,
    seq: u64,
    prev: String,
    /// Written but not yet fsynced.
    dirty: bool,
    last_sync: Instant,
    /// After a failure that could not be rolled back, every later record fails.
    broken: Option<String>,
    /// Shared with the operations that reserve space.
    capacity: Arc<Capacity>,
    /// End of the space preallocated for the current file (0: none yet).
    prealloc_end: u64,
    /// The filesystem cannot preallocate: headroom is its free space instead.
    no_fallocate: bool,
    probe: Probe,
    written: tokio::sync::watch::Sender<u64>,
}

pub(super) fn start(opts: AuditOptions) -> Result<(Handle, Option<String>), AuditError> {
    std::fs::create_dir_all(&opts.dir).map_err(io)?;
    let (tail, repair) = recover(&opts.dir)?;
    let path = opts.dir.join(record::file_name(tail.file_no));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    sync_dir(&opts.dir);
    let mut w = Writer {
        opts: opts.clone(),
        file,
        file_no: tail.file_no,
        size: tail.size,
        seq: tail.seq,
        prev: tail.prev,
        dirty: false,
        last_sync: Instant::now(),
        broken: None,
        capacity: Arc::new(Capacity::new(opts.reserve_bytes)),
        prealloc_end: 0,
        no_fallocate: false,
        probe: Probe::new(&opts.dir, opts.fsync == FsyncMode::Always),
        written: tokio::sync::watch::Sender::new(tail.seq),
    };
    w.top_up();
    let capacity = w.capacity.clone();
    let written = w.written.clone();
    let (tx, rx) = mpsc::channel();
    let detached = Arc::new(Detached::default());
    let queue = detached.clone();
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || {
            w.run(rx, &queue);
            queue.closed.store(true, Ordering::Release);
            // Anything queued after the last batch (a race with Close) is said, not lost silently.
            let late = queue.take().len();
            if late > 0 {
                tracing::error!(
                    records = late,
                    "audit log closed; detached records were not written"
                );
            }
        })
        .map_err(io)?;
    Ok((
        Handle {
            tx,
            dir: opts.dir,
            detached,
            capacity,
            written,
        },
        repair,
    ))
}

/// Bytes an unprivileged writer may still use on the file's filesystem (0 when unknown).
fn free_space(file: &File) -> u64 {
    rustix::fs::fstatvfs(file).map_or(0, |v| v.f_bavail.saturating_mul(v.f_frsize))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, detached: &Detached) {
        loop {
            let wait = if self.dirty {
                BATCH_SYNC
                    .saturating_sub(self.last_sync.elapsed())
                    .min(DETACHED_TICK)
            } else {
                DETACHED_TICK
            };
            let mut batch = match rx.recv_timeout(wait) {
                Ok(m) => vec![m],
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            if self.process(detached.take(), batch) {
                self.release_prealloc();
                return;
            }
            self.top_up();
            if self.dirty && self.last_sync.elapsed() >= BATCH_SYNC {
                let _ = self.sync();
            }
        }
        let _ = self.process(detached.take(), Vec::new());
        let _ = self.sync();
        self.release_prealloc();
    }

    /// Keeps space allocated ahead of the file: the floor, or twice what is reserved, whichever
    /// is more (bounded), and publishes the headroom. Cheap when nothing changed.
    fn top_up(&mut self) {
        let reserved = self.capacity.reserved.load(Ordering::Acquire);
        let want = self
            .capacity
            .floor
            .max(reserved.saturating_mul(2).saturating_add(8) * RESERVATION_BYTES)
            .min(MAX_PREALLOC);
        let headroom = if self.no_fallocate {
            free_space(&self.file).min(MAX_PREALLOC)
        } else {
            let start = self.prealloc_end.max(self.size);
            // Top up once a quarter of the floor is used, not after every record.
            if self.prealloc_end < self.size + want - want / 4 {
                match rustix::fs::fallocate(
                    &self.file,
                    rustix::fs::FallocateFlags::KEEP_SIZE,
                    start,
                    self.size + want - start,
                ) {
                    Ok(()) => self.prealloc_end = self.size + want,
                    Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                        self.no_fallocate = true;
                    }
                    // No space: what is already allocated is all there is.
                    Err(_) => {}
                }
            }
            if self.no_fallocate {
                free_space(&self.file).min(MAX_PREALLOC)
            } else {
                self.prealloc_end.saturating_sub(self.size)
            }
        };
        let healthy = self.broken.is_none();
        let old = self.capacity.headroom.swap(headroom, Ordering::AcqRel);
        let was = self.capacity.healthy.swap(healthy, Ordering::AcqRel);
        if old != headroom || was != healthy {
            self.capacity.changed.notify_waiters();
        }
    }

    /// Gives back the space allocated past the end of the file (at close and rotation).
    fn release_prealloc(&mut self) {
        if self.prealloc_end > self.size {
            let _ = self.file.set_len(self.size);
        }
        self.prealloc_end = 0;
    }

    /// Writes a batch; returns true when a Close was in it.
    fn process(&mut self, detached: Vec<AuditEvent>, batch: Vec<Msg>) -> bool {
        let mut buf = String::new();
        let mut acks = Vec::new();
        let mut closes = Vec::new();
        let mut probes = Vec::new();
        let mut rotates = Vec::new();
        let (seq0, prev0, size0) = (self.seq, self.prev.clone(), self.size);
        let lost = detached.len();
        if let Some(why) = &self.broken {
            for ev in &detached {
                tracing::error!(record = ?ev, error = %why, "audit log broken; record not written");
            }
        } else {
            for ev in detached {
                self.append(&mut buf, ev);
            }
        }
        for msg in batch {
            match msg {
                Msg::Record(ev, ack) => {
                    if let Some(why) = &self.broken {
                        tracing::error!(record = ?ev, error = %why, "audit log broken; record not written");
                        let _ = ack.send(Err(AuditError::Io(why.clone())));
                        continue;
                    }
                    self.append(&mut buf, *ev);
                    acks.push((self.seq, ack));
                }
                Msg::Wake => {}
                Msg::Probe(ack) => probes.push(ack),
                Msg::Close(done) => closes.push(done),
                Msg::Rotate(done) => rotates.push(done),
            }
        }
        let mut failed = None;
        if !buf.is_empty() {
            let result = self.write(buf.as_bytes());
            match result {
                Ok(()) => {
                    self.capacity.mark_written();
                    self.written.send_replace(self.seq);
                    for (seq, ack) in acks {
                        let _ = ack.send(Ok(seq));
                    }
                }
                Err(e) => {
                    failed = Some(e.clone());
                    self.capacity.healthy.store(false, Ordering::Release);
                    self.capacity.changed.notify_waiters();
                    tracing::error!(error = %e, "audit log write failed; the operations it records fail");
                    // What they were is kept in the process log (records carry no secrets).
                    for line in buf.lines() {
                        tracing::error!(record = %line, "audit record not written");
                    }
                    if lost > 0 {
                        tracing::error!(records = lost, "detached records were not written");
                    }
                    self.rollback(seq0, prev0, size0);
                    for (_, ack) in acks {
                        let _ = ack.send(Err(e.clone()));
                    }
                }
            }
        }
        if !probes.is_empty() {
            let r = match (&self.broken, failed) {
                (Some(why), _) => Err(AuditError::Io(why.clone())),
                (None, Some(e)) => Err(e),
                (None, None) => self.probe.run(&self.opts.dir),
            };
            match &r {
                Err(e) => {
                    self.capacity.healthy.store(false, Ordering::Release);
                    self.capacity.changed.notify_waiters();
                    tracing::error!(error = %e, "audit log cannot be written; operations are refused");
                }
                // Only the (None, None) arm can succeed: the probe itself wrote.
                Ok(()) => self.capacity.mark_written(),
            }
            for ack in probes {
                let _ = ack.send(r.clone());
            }
        }
        if !rotates.is_empty() {
            // After this batch's records: a rotation asked for now covers what was written.
            let r = if let Some(why) = &self.broken {
                Err(AuditError::Io(why.clone()))
            } else if self.size > 0 {
                self.rotate().map(|()| self.file_no - 1)
            } else {
                Ok(self.file_no.saturating_sub(1))
            };
            for done in rotates {
                let _ = done.send(r.clone());
            }
        }
        if closes.is_empty() {
            return false;
        }
        let r = self.sync();
        for done in closes {
            let _ = done.send(r.clone());
        }
        true
    }

    /// Chains one record onto `buf`.
    fn append(&mut self, buf: &mut String, ev: AuditEvent) {
        self.seq += 1;
        let mut rec = self.to_record(ev);
        buf.push_str(&rec.seal());
        buf.push('\n');
        self.prev = rec.hash.unwrap_or_default();
    }

    fn to_record(&self, ev: AuditEvent) -> Record {
        Record {
            seq: self.seq,
            ts: record::now_ts(),
            node: self.opts.node.clone(),
            protocol: ev.protocol.map(|p| p.as_str().to_string()),
            session: ev.session,
            user: ev.user,
            remote: ev.remote.map(|r| r.to_string()),
            action: ev.action.as_str().to_string(),
            path: ev.path,
            to: ev.to,
            bytes: ev.bytes,
            sha256: ev.sha256.map(hex::encode),
            status: ev.status,
            outcome: ev.outcome.as_str().to_string(),
            detail: ev.detail,
            prev: self.prev.clone(),
            hash: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), AuditError> {
        self.file.write_all(bytes).map_err(io)?;
        self.size += bytes.len() as u64;
        self.dirty = true;
        if self.opts.fsync == FsyncMode::Always || self.last_sync.elapsed() >= BATCH_SYNC {
            self.sync()?;
        }
        if self.size >= self.opts.rotate_bytes
            && let Err(e) = self.rotate()
        {
            // The batch is durable; keep appending to this file and try again next batch.
            tracing::error!(error = %e, "audit log rotation failed");
        }
        Ok(())
    }

    /// Undoes a failed batch: the file is cut back so the chain on disk stays whole.
    fn rollback(&mut self, seq: u64, prev: String, size: u64) {
        self.seq = seq;
        self.prev = prev;
        self.size = size;
        let cut = self.file.set_len(size).and_then(|_| self.file.sync_data());
        if let Err(e) = cut {
            self.broken = Some(format!(
                "cannot restore the audit file after a failed write: {e}"
            ));
        }
    }

    fn sync(&mut self) -> Result<(), AuditError> {
        if !self.dirty {
            return Ok(());
        }
        self.file.sync_data().map_err(io)?;
        self.dirty = false;
        self.last_sync = Instant::now();
        self.write_head();
        Ok(())
    }

    /// Best effort: the head only ever lags the synced log, so a stale head is harmless.
    fn write_head(&self) {
        let head = serde_json::json!({
            "seq": self.seq,
            "hash": self.prev,
            "file": record::file_name(self.file_no),
        });
        let _ = std::fs::write(self.opts.dir.join(HEAD_FILE), format!("{head}\n"));
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        self.release_prealloc();
        let next = self.file_no + 1;
        let path = self.opts.dir.join(record::file_name(next));
        self.file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        sync_dir(&self.opts.dir);
        self.file_no = next;
        self.size = 0;
        self.top_up();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn detached_records_are_chained_with_the_others_and_flushed_on_close() {
        use crate::audit::{AuditAction, AuditLog, Outcome};
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(AuditOptions {
            dir: dir.path().to_path_buf(),
            fsync: FsyncMode::Batch,
            rotate_bytes: 64 * 1024,
            node: "t".into(),
            reserve_bytes: 1024 * 1024,
        })
        .unwrap();
        // More than DETACHED_WAKE_AT at once, so the early wake-up path runs too.
        for i in 0..3000 {
            log.record_detached(
                AuditEvent::new(AuditAction::Proxy, Outcome::Ok).path(format!("/d/{i}")),
            );
            if i % 500 == 0 {
                log.record(AuditEvent::new(AuditAction::Login, Outcome::Ok))
                    .await
                    .unwrap();
            }
        }
        log.close().await.unwrap();
        let report = crate::audit::verify::verify(dir.path()).unwrap();
        assert_eq!(report.records, 3006);
        assert!(report.files > 1, "rotation ran");
        // Detached records keep their order.
        let mut text = String::new();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        names.sort();
        for n in names {
            text.push_str(&std::fs::read_to_string(n).unwrap());
        }
        let paths: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r["path"].as_str()?.strip_prefix("/d/")?.parse().ok())
            .collect();
        assert_eq!(paths, (0..3000).collect::<Vec<u64>>());
        log.record_detached(AuditEvent::new(AuditAction::Proxy, Outcome::Ok));
    }
}
