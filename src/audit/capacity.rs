//! What the writer can promise the operations that must not take effect without their record:
//! disk space for it ([`Capacity`], reserved before the effect) and a log that still takes
//! writes ([`Probe`], tried just before the effect).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::AuditError;

/// Disk space counted per outstanding reservation: more than any one record needs (paths are at
/// most 4 KiB, names 256 bytes).
pub(super) const RESERVATION_BYTES: u64 = 16 * 1024;

/// Name of the probe file in the audit directory.
pub(super) const PROBE_FILE: &str = "audit.probe";

/// Whether records can be written, shared between the writer and the operations that must not
/// take effect without theirs: the writer keeps disk space allocated ahead of the file
/// (`fallocate`, keeping its size) and publishes how much; an operation *reserves* a share of it
/// before its effect, so the record that follows cannot fail for lack of space.
#[derive(Debug)]
pub(super) struct Capacity {
    /// The last write succeeded (and nothing is broken).
    pub(super) healthy: AtomicBool,
    /// Bytes the next records can use without asking the filesystem.
    pub(super) headroom: AtomicU64,
    /// Reservations not yet settled.
    pub(super) reserved: AtomicU64,
    /// Wakes reservers waiting for the writer to top up.
    pub(super) changed: tokio::sync::Notify,
    /// Preallocation kept ahead when nothing is reserved (`[audit] reserve_bytes`).
    pub(super) floor: u64,
    /// When the log last took a write (records or a probe), in µs since `epoch`; 0 = never.
    written_us: AtomicU64,
    epoch: std::time::Instant,
}

impl Capacity {
    pub(super) fn new(floor: u64) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            headroom: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            floor,
            written_us: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// The log just took a write.
    pub(super) fn mark_written(&self) {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.written_us.store(us.max(1), Ordering::Release);
    }

    /// Whether the log took a write within `window` (and nothing failed since).
    pub(super) fn written_within(&self, window: std::time::Duration) -> bool {
        let at = self.written_us.load(Ordering::Acquire);
        if at == 0 || !self.healthy.load(Ordering::Acquire) {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        now.saturating_sub(at) < u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
    }

    /// Why records cannot be counted on now, if they cannot.
    pub(super) fn unavailable(&self, extra: u64) -> Option<AuditError> {
        if !self.healthy.load(Ordering::Acquire) {
            return Some(AuditError::Io("the audit log is failing to write".into()));
        }
        let need = (self.reserved.load(Ordering::Acquire) + extra) * RESERVATION_BYTES;
        (self.headroom.load(Ordering::Acquire) < need.max(RESERVATION_BYTES))
            .then(|| AuditError::Io("the audit log has no space left for more records".into()))
    }

    /// Takes one reservation if there is room.
    pub(super) fn try_reserve(&self) -> Result<(), AuditError> {
        let n = self.reserved.fetch_add(1, Ordering::AcqRel) + 1;
        let ok = self.healthy.load(Ordering::Acquire)
            && self.headroom.load(Ordering::Acquire) >= n * RESERVATION_BYTES;
        if ok {
            return Ok(());
        }
        self.reserved.fetch_sub(1, Ordering::AcqRel);
        Err(self.unavailable(1).unwrap_or_else(|| {
            AuditError::Io("the audit log has no space left for more records".into())
        }))
    }

    pub(super) fn release(&self) {
        self.reserved.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Proof that the audit filesystem still takes writes, asked for just before an effect: space
/// can be reserved ahead, but a disk that started failing (I/O errors, remounted read-only) is
/// otherwise only noticed at the next record, after the effect. One byte rewritten in a side
/// file on the same filesystem, synced when records are (`fsync = "always"`); one probe answers
/// every operation waiting in the same writer batch.
pub(super) struct Probe {
    file: Option<File>,
    sync: bool,
}

impl Probe {
    pub(super) fn new(dir: &Path, sync: bool) -> Self {
        Self {
            file: Self::open(dir).ok(),
            sync,
        }
    }

    fn open(dir: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(PROBE_FILE))
    }

    /// Tries a write (and a sync) now.
    pub(super) fn run(&mut self, dir: &Path) -> Result<(), AuditError> {
        if self.file.is_none() {
            self.file = Some(Self::open(dir).map_err(probe_failed)?);
        }
        let Some(f) = &self.file else {
            return Err(AuditError::Io("the audit log is failing to write".into()));
        };
        f.write_all_at(b"p", 0).map_err(probe_failed)?;
        if self.sync {
            f.sync_data().map_err(probe_failed)?;
        }
        Ok(())
    }
}

fn probe_failed(e: std::io::Error) -> AuditError {
    AuditError::Io(format!("the audit log is failing to write: {e}"))
}
