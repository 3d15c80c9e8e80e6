//! `Upload`: one file being written through any front door. It hashes and counts every byte as it
//! streams, refuses writes that are not at the next offset, and holds the backend's staged write,
//! so the file appears only at `commit`. Dropped without commit (client gone, shutdown), its guard
//! aborts the staged write and records `upload error "interrupted"`.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::Error;
use super::backend::{Backend, CommitMode, Key, StageMode, StagedWrite};
use super::path::VPath;
use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::session::Session;
use crate::validation::{Check, Refusal};

/// Where an upload records and runs its clean-up, who writes it, and the check it must pass.
pub(super) struct Context {
    pub audit: AuditLog,
    pub tasks: tokio_util::task::TaskTracker,
    pub session: Session,
    pub check: Option<Check>,
}

/// Bytes read back per step when a file written out of order is checked at commit.
const RECHECK_CHUNK: usize = 256 * 1024;

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create, or replace the existing file at commit.
    Replace,
    /// Create; fail if the file exists.
    CreateNew,
    /// Keep the existing content up to an offset and continue from there (resume, append).
    /// `None`: the offset is that of the first write (SFTP open without TRUNC).
    KeepExisting(Option<u64>),
}

/// What a committed upload wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Final size of the file.
    pub size: u64,
    /// sha256 of the whole file.
    pub sha256: [u8; 32],
    /// Whether it replaced an existing file.
    pub replaced: bool,
}

enum Stage {
    /// Not started: waiting for the first write to say where it starts.
    Pending,
    /// Writing.
    Open(Box<dyn StagedWrite>),
    /// Committed or aborted.
    Done,
}

/// A file being written.
pub struct Upload {
    audit: AuditLog,
    tasks: tokio_util::task::TaskTracker,
    session: Session,
    full: VPath,
    backend: Arc<dyn Backend>,
    key: Key,
    stage: Stage,
    hasher: Sha256,
    /// Size of the file so far (kept prefix + written).
    next_offset: u64,
    /// Bytes received in this upload.
    received: u64,
    /// Size of the existing file, if there was one.
    existing: Option<u64>,
    resume: bool,
    /// The backend takes writes at any offset (local disk).
    random_ok: bool,
    /// A write came out of order: the streaming hash no longer applies; the content is hashed
    /// at commit instead.
    random: bool,
    /// How the file becomes visible: without replacing anything when the file did not exist at
    /// open and the user may not overwrite (or asked for create-only).
    commit_mode: CommitMode,
    /// Remarks for the audit record's detail.
    notes: Vec<String>,
    /// The `[[validate]]` rule's check, fed as the bytes stream.
    check: Option<Check>,
    /// Refused by validation (recorded once, when it happened); later calls get it again.
    refused: Option<Refusal>,
    /// The storage failed a write, and the staged content was thrown away then; the upload
    /// is still to be recorded (by `abort`, or as interrupted when dropped).
    discarded: bool,
    /// Progress shown in the live sessions.
    live: Option<crate::live::Transfer>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upload({}, {} bytes)", self.full, self.received)
    }
}

impl Upload {
    pub(super) async fn start(
        cx: Context,
        full: VPath,
        backend: Arc<dyn Backend>,
        key: Key,
        mode: WriteMode,
        existing: Option<u64>,
        commit_mode: CommitMode,
    ) -> Result<Self, Error> {
        let caps = backend.capabilities();
        let resume = caps.resume;
        let live = cx
            .session
            .transfer(full.as_str(), crate::live::Direction::Upload, None);
        let mut up = Self {
            live,
            audit: cx.audit,
            tasks: cx.tasks,
            session: cx.session,
            full,
            backend,
            key,
            stage: Stage::Pending,
            hasher: Sha256::new(),
            next_offset: 0,
            received: 0,
            existing,
            resume,
            random_ok: caps.random_write,
            random: false,
            commit_mode,
            notes: Vec::new(),
            check: cx.check,
            refused: None,
            discarded: false,
        };
        match mode {
            WriteMode::Replace | WriteMode::CreateNew => up.open_at(0).await?,
            WriteMode::KeepExisting(Some(offset)) => up.open_at(offset).await?,
            WriteMode::KeepExisting(None) if existing.is_none() => up.open_at(0).await?,
            WriteMode::KeepExisting(None) => {}
        }
        Ok(up)
    }

    /// Starts the staged write, keeping the existing file's first `offset` bytes.
    async fn open_at(&mut self, offset: u64) -> Result<(), Error> {
        if offset == 0 {
            self.stage = Stage::Open(self.backend.stage(&self.key, StageMode::Create).await?);
            return Ok(());
        }
        if offset > self.existing.unwrap_or(0) {
            return Err(Error::Unsupported(
                "write offset beyond the end of the file",
            ));
        }
        if !self.resume {
            return Err(Error::Unsupported(
                "resume/append is not supported on this storage (object stores cannot append); upload the whole file",
            ));
        }
        // The whole file's sha256 covers the kept prefix too.
        let mut prefix = self.backend.read(&self.key, Some(0..offset)).await?;
        use futures::StreamExt;
        while let Some(chunk) = prefix.next().await {
            let chunk = chunk?;
            self.hasher.update(&chunk);
            if let Some(c) = &mut self.check
                && let Err(r) = c.feed(&chunk)
            {
                return Err(self.refuse(r).await);
            }
        }
        self.stage = Stage::Open(
            self.backend
                .stage(&self.key, StageMode::KeepPrefix(offset))
                .await?,
        );
        self.next_offset = offset;
        Ok(())
    }

    /// Adds a remark to the upload's audit record.
    pub fn note(&mut self, remark: &str) {
        self.notes.push(remark.to_string());
    }

    /// The virtual path being written.
    pub fn path(&self) -> &VPath {
        &self.full
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The offset the next write must have.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The file's size as seen through the open handle: the existing file until the first
    /// write decides what is kept of it, then what is kept plus what was written.
    pub fn size(&self) -> u64 {
        match self.stage {
            Stage::Pending => self.existing.unwrap_or(0),
            _ => self.next_offset,
        }
    }

    /// Appends at the current end.
    pub async fn write(&mut self, data: Bytes) -> Result<(), Error> {
        let at = self.next_offset;
        self.write_at(at, data).await
    }

    /// Writes at `offset`. Streaming backends need it to be where the previous write ended (the
    /// first write of an SFTP resume may start at any offset up to the existing size); backends
    /// with `random_write` take any offset (the existing content is kept around it).
    pub async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), Error> {
        if let Some(r) = &self.refused {
            return Err(Error::Invalid(r.clone()));
        }
        if matches!(self.stage, Stage::Pending) {
            // Random access needs the whole existing file under the writes.
            let keep = match self.existing {
                Some(size) if self.random_ok => size,
                _ => offset,
            };
            self.open_at(keep).await?;
        }
        let sequential = offset == self.next_offset && !self.random;
        if !sequential && !self.random_ok {
            return Err(Error::Unsupported(
                "non-sequential write: this storage streams uploads and needs writes in order",
            ));
        }
        let Stage::Open(staged) = &mut self.stage else {
            return Err(Error::Unsupported("upload already finished"));
        };
        let n = data.len() as u64;
        if let Some(r) = self.check.as_ref().and_then(|c| c.refuse_end(offset + n)) {
            return Err(self.refuse(r).await);
        }
        let written = if sequential {
            self.hasher.update(&data);
            if let Some(c) = &mut self.check
                && let Err(r) = c.feed(&data)
            {
                return Err(self.refuse(r).await);
            }
            staged.write(data).await
        } else {
            self.random = true;
            staged.write_at(offset, data).await
        };
        if let Err(e) = written {
            // Nothing more can be stored, so the staged content goes now: a full disk gets its
            // space back at once, not when the client closes (or drops) its connection.
            if let Stage::Open(s) = std::mem::replace(&mut self.stage, Stage::Done) {
                s.abort().await;
            }
            self.discarded = true;
            return Err(e.into());
        }
        self.next_offset = self.next_offset.max(offset + n);
        self.received += n;
        if let Some(t) = &self.live {
            t.progress(n);
        }
        Ok(())
    }

    /// Reads back what is staged (SFTP read-write opens, on backends with `random_write`).
    pub async fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, Error> {
        if matches!(self.stage, Stage::Pending) {
            let keep = self.existing.unwrap_or(0);
            self.open_at(keep).await?;
        }
        if !self.random_ok {
            return Err(Error::Unsupported(
                "reading a file open for writing is not supported on this storage",
            ));
        }
        let Stage::Open(staged) = &mut self.stage else {
            return Err(Error::Unsupported("upload already finished"));
        };
        // Reads see the positional view; later writes must not go through the buffered stream.
        self.random = true;
        Ok(staged.read_at(offset, len).await?)
    }

    /// Refuses the upload for validation: the staged write is thrown away at once (nothing
    /// more is stored) and the refusal recorded; the returned error is for the caller.
    async fn refuse(&mut self, r: Refusal) -> Error {
        if let Stage::Open(s) = std::mem::replace(&mut self.stage, Stage::Done) {
            s.abort().await;
        }
        self.check = None;
        let ev = self.event(Outcome::Denied).detail(r.to_string());
        self.refused = Some(r.clone());
        if let Err(e) = self.audit.record(ev).await {
            return e.into();
        }
        Error::Invalid(r)
    }

    /// Runs the check over what is staged (a file written out of order cannot be checked as it
    /// streams).
    async fn recheck(&mut self, mut check: Check) -> Result<Result<(), Refusal>, Error> {
        let Stage::Open(staged) = &mut self.stage else {
            return Ok(Ok(()));
        };
        let mut at = 0;
        while at < self.next_offset {
            let len = RECHECK_CHUNK.min((self.next_offset - at) as usize);
            let chunk = staged.read_at(at, len).await?;
            if chunk.is_empty() {
                break;
            }
            at += chunk.len() as u64;
            if let Err(r) = check.feed(&chunk) {
                return Ok(Err(r));
            }
        }
        Ok(check.finish())
    }

    /// Makes the file visible, then records the upload. Returns once the record is durable.
    /// A file its `[[validate]]` rule refuses is thrown away instead, and recorded as denied.
    pub async fn commit(mut self) -> Result<Committed, Error> {
        if let Some(r) = &self.refused {
            return Err(Error::Invalid(r.clone()));
        }
        if let Some(check) = self.check.take() {
            let verdict = if self.random {
                match self.recheck(check.fresh()).await {
                    Ok(v) => v,
                    Err(e) => {
                        let ev = self.event(Outcome::Error).detail(e.to_string());
                        if let Stage::Open(s) = std::mem::replace(&mut self.stage, Stage::Done) {
                            s.abort().await;
                        }
                        self.audit.record(ev).await?;
                        return Err(e);
                    }
                }
            } else if matches!(self.stage, Stage::Pending) {
                // Opened without truncation and never written: nothing changed to check.
                Ok(())
            } else {
                check.finish()
            };
            if let Err(r) = verdict {
                return Err(self.refuse(r).await);
            }
        }
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        let staged = match stage {
            Stage::Open(s) => Some(s),
            // Opened without truncation and never written: the file stays as it was.
            Stage::Pending => None,
            Stage::Done => return Err(Error::Unsupported("upload already finished")),
        };
        // Room for the record before the file becomes visible: no upload appears unrecorded.
        let _room = match self.audit.reserve().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(s) = staged {
                    s.abort().await;
                }
                tracing::error!(error = %e, path = %self.full, "upload refused: the audit log cannot record it");
                return Err(e.into());
            }
        };
        let streamed: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        let mut staged = staged;
        let sha256 = match staged.as_mut() {
            Some(s) if self.random => match s.content_sha256().await {
                Ok(d) => d,
                Err(e) => {
                    if let Some(s) = staged {
                        s.abort().await;
                    }
                    let err = Error::from(e);
                    let ev = self.event(Outcome::Error).detail(err.to_string());
                    self.audit.record(ev).await?;
                    return Err(err);
                }
            },
            _ => streamed,
        };
        let committed = match staged {
            Some(s) => s.commit(sha256, self.commit_mode).await.map(|_| Committed {
                size: self.next_offset,
                sha256,
                replaced: self.existing.is_some(),
            }),
            None => {
                return Ok(Committed {
                    size: self.existing.unwrap_or(0),
                    sha256,
                    replaced: false,
                });
            }
        };
        match committed {
            Ok(c) => {
                let mut ev = self.event(Outcome::Ok);
                ev.sha256 = Some(c.sha256);
                if c.replaced {
                    self.notes.insert(0, "replaced".into());
                }
                if !self.notes.is_empty() {
                    ev.detail = Some(self.notes.join("; "));
                }
                self.audit.record(ev).await?;
                Ok(c)
            }
            Err(e) => {
                let err = Error::from(e);
                let why = match err {
                    Error::AlreadyExists => {
                        "already exists: the file was created by someone else during the upload"
                            .to_string()
                    }
                    ref other => other.to_string(),
                };
                let ev = self.event(Outcome::Error).detail(why);
                self.audit.record(ev).await?;
                Err(err)
            }
        }
    }

    /// Throws the upload away and records why.
    pub async fn abort(mut self, reason: &str) -> Result<(), Error> {
        if let Stage::Open(s) = std::mem::replace(&mut self.stage, Stage::Done) {
            s.abort().await;
        }
        let ev = self.event(Outcome::Error).detail(reason.to_string());
        self.discarded = false;
        self.audit.record(ev).await?;
        Ok(())
    }

    fn event(&self, outcome: Outcome) -> AuditEvent {
        let mut ev = AuditEvent::for_session(&self.session, AuditAction::Upload, outcome)
            .path(self.full.as_str());
        ev.bytes = Some(self.received);
        // Every upload ends in exactly one event: count it here.
        crate::telemetry::transfer(
            self.session.protocol.as_str(),
            "upload",
            outcome.as_str(),
            self.received,
        );
        ev
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        // Pending: opened without truncation and never written, so nothing changed. Done:
        // recorded already, unless a failed write discarded it.
        if matches!(stage, Stage::Pending) || (matches!(stage, Stage::Done) && !self.discarded) {
            return;
        }
        let ev = self.event(Outcome::Error).detail("interrupted");
        let audit = self.audit.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Tracked: shutdown waits for it before the audit log closes.
        self.tasks.spawn(async move {
            if let Stage::Open(s) = stage {
                s.abort().await;
            }
            if let Err(e) = audit.record(ev).await {
                tracing::error!(error = %e, "could not record an interrupted upload");
            }
        });
    }
}
