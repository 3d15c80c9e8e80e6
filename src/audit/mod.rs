//! The audit log: one JSON record per line, hash-chained across rotated files. Every front door
//! records through [`AuditLog::record`], which returns only once the record is written (and, with
//! `fsync = "always"`, on disk), so no client sees success before its record is durable. If the log
//! cannot be written, `record` fails and the caller fails the operation: records are never
//! dropped silently.

mod capacity;
pub mod index;
pub mod index_query;
pub mod query;
pub mod record;
mod recover;
pub mod tail;
pub mod verify;
mod writer;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::config::FsyncMode;
use crate::identity::Protocol;
use crate::session::Session;
pub use record::Record;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Authentication.
    Login,
    /// End of a session.
    Logout,
    /// A file written.
    Upload,
    /// A file read.
    Download,
    /// A file removed.
    Delete,
    /// A directory created.
    Mkdir,
    /// A directory removed.
    Rmdir,
    /// A move.
    Rename,
    /// A second name for a file (SFTP `hardlink@openssh.com`).
    Link,
    /// A directory listed.
    List,
    /// A proxied HTTP call.
    Proxy,
    /// Process events: start, stop, recovery.
    Config,
    /// A webhook delivery of another record (`[[events]]`): delivered, given up, purged.
    Event,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 13] = [
        Self::Login,
        Self::Logout,
        Self::Upload,
        Self::Download,
        Self::Delete,
        Self::Mkdir,
        Self::Rmdir,
        Self::Rename,
        Self::Link,
        Self::List,
        Self::Proxy,
        Self::Config,
        Self::Event,
    ];

    /// The record word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Logout => "logout",
            Self::Upload => "upload",
            Self::Download => "download",
            Self::Delete => "delete",
            Self::Mkdir => "mkdir",
            Self::Rmdir => "rmdir",
            Self::Rename => "rename",
            Self::Link => "link",
            Self::List => "list",
            Self::Proxy => "proxy",
            Self::Config => "config",
            Self::Event => "event",
        }
    }

    /// Parses a record word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by authentication or policy.
    Denied,
    /// Failed.
    Error,
}

impl Outcome {
    /// The record word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }

    /// Parses a record word.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Denied, Self::Error]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// An event to record; the writer adds `seq`, `ts`, `node`, `prev` and `hash`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Front door, if any.
    pub protocol: Option<Protocol>,
    /// Session id.
    pub session: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Client address.
    pub remote: Option<SocketAddr>,
    /// Action.
    pub action: AuditAction,
    /// Path.
    pub path: Option<String>,
    /// Rename target.
    pub to: Option<String>,
    /// Bytes transferred.
    pub bytes: Option<u64>,
    /// Content hash.
    pub sha256: Option<[u8; 32]>,
    /// HTTP status.
    pub status: Option<u16>,
    /// Outcome.
    pub outcome: Outcome,
    /// Free text (never secrets).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// A bare event.
    pub fn new(action: AuditAction, outcome: Outcome) -> Self {
        Self {
            protocol: None,
            session: None,
            user: None,
            remote: None,
            action,
            path: None,
            to: None,
            bytes: None,
            sha256: None,
            status: None,
            outcome,
            detail: None,
        }
    }

    /// An event in a logged-in session.
    pub fn for_session(session: &Session, action: AuditAction, outcome: Outcome) -> Self {
        Self {
            protocol: Some(session.protocol),
            session: Some(session.id.clone()),
            user: Some(session.principal.name().to_string()),
            remote: Some(session.remote),
            ..Self::new(action, outcome)
        }
    }

    /// Sets the path.
    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.path = Some(p.into());
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// The audit log could not take a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// Writing or syncing the file failed.
    #[error("audit log write failed: {0}")]
    Io(String),
    /// The writer has stopped (shutdown, or an earlier unrecoverable failure).
    #[error("audit log is closed")]
    Closed,
}

/// Where and how the log is written.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Directory of the files.
    pub dir: PathBuf,
    /// Durability mode.
    pub fsync: FsyncMode,
    /// Rotation threshold.
    pub rotate_bytes: u64,
    /// Node name written into records.
    pub node: String,
    /// Disk space kept allocated ahead of the records (see `Reservation`).
    pub reserve_bytes: u64,
}

/// Handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<writer::Handle>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditLog")
    }
}

/// How recent a successful write must be for [`AuditLog::ready`] to skip its own probe.
/// Operations with an effect (uploads, deletes, renames) always probe.
pub const READY_FRESH: std::time::Duration = std::time::Duration::from_millis(10);

impl AuditLog {
    /// Opens (or creates) the log, repairing a torn final line left by a crash, and starts the
    /// writer thread. Returns the log and, if a repair happened, what was done.
    pub fn open(opts: AuditOptions) -> Result<(Self, Option<String>), AuditError> {
        let (handle, repair) = writer::start(opts)?;
        Ok((
            Self {
                inner: Arc::new(handle),
            },
            repair,
        ))
    }

    /// Writes one record; returns its sequence number once it is written (and synced, under
    /// `fsync = "always"`).
    pub async fn record(&self, ev: AuditEvent) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.inner.send(writer::Msg::Record(Box::new(ev), tx))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Writes a record without waiting for it, within 10 ms: for events recorded after the
    /// client already has its answer (a proxied response or a download that finished
    /// streaming). A write failure is logged.
    pub fn record_detached(&self, ev: AuditEvent) {
        if self.inner.send_detached(ev).is_err() {
            tracing::error!("audit log closed; a proxy record was not written");
        }
    }

    /// Flushes and syncs everything written so far, then stops the writer. Later records fail.
    pub async fn close(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        if self.inner.send(writer::Msg::Close(tx)).is_err() {
            return Ok(());
        }
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Closes the current file (when it holds any record) and starts the next; returns the
    /// number of the newest complete file (0: none yet). For shipping (`[audit.ship]`).
    pub async fn rotate(&self) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        self.inner.send(writer::Msg::Rotate(tx))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The directory of the files.
    pub fn dir(&self) -> &std::path::Path {
        self.inner.dir()
    }

    /// The seq of the last record written to the files, updated after every batch: readers
    /// of the files (event delivery) wait on it instead of polling.
    pub fn written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.written.subscribe()
    }

    /// Fails when records cannot be counted on now (the log is failing to write, or out of
    /// space): for operations that record only at their end, such as a download, so they refuse
    /// to start instead of happening unrecorded. A log that took a write within the last
    /// [`READY_FRESH`] counts as proven (no round trip to the writer per small download).
    pub async fn ready(&self) -> Result<(), AuditError> {
        let cap = &self.inner.capacity;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        while let Some(e) = cap.unavailable(1) {
            if tokio::time::Instant::now() >= deadline {
                return Err(e);
            }
            self.await_top_up(deadline).await;
        }
        if cap.written_within(READY_FRESH) {
            return Ok(());
        }
        self.probe().await
    }

    /// Asks the writer for a top-up, then waits for it (or a moment, or the deadline).
    async fn await_top_up(&self, deadline: tokio::time::Instant) {
        let _ = self.inner.send(writer::Msg::Wake);
        let until =
            deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(50));
        let _ = tokio::time::timeout_at(until, self.inner.capacity.changed()).await;
    }

    /// Asks the writer to prove the log still takes writes (a write, and a sync under
    /// `fsync = "always"`, on the audit filesystem; shared by the operations of one batch).
    async fn probe(&self) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        self.inner.send(writer::Msg::Probe(tx))?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// Reserves room for one record before an effect (a commit, a delete, a rename), so the
    /// record that follows the effect cannot fail for lack of space, and proves the log still
    /// takes writes (see `capacity::Probe`). Waits up to a second for
    /// the writer to make room; fails when the log cannot be written or has no space. The
    /// reservation is given back when dropped, after the record was written.
    pub async fn reserve(&self) -> Result<Reservation, AuditError> {
        let cap = self.inner.capacity.clone();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match cap.try_reserve() {
                Ok(()) => {
                    let room = Reservation { cap };
                    // Space alone is not enough: the disk may have started failing since the
                    // last record. (Dropping `room` on failure gives the space back.)
                    self.probe().await?;
                    return Ok(room);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => self.await_top_up(deadline).await,
            }
        }
    }
}

/// Room for one audit record, held from before an operation's effect until its record is
/// written (see [`AuditLog::reserve`]).
#[must_use = "hold the reservation until the operation's record is written"]
pub struct Reservation {
    cap: Arc<capacity::Capacity>,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reservation")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.cap.release();
    }
}
