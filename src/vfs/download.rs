//! `Download`: one file being read through any front door. Sequential readers (FTP, HTTP) take it
//! as a stream; SFTP reads at offsets through [`Download::read_at`], which keeps one backend stream
//! open as read-ahead and re-opens it only when the client seeks. Bytes are counted and, for a
//! read of the whole file from byte 0, hashed; one `download` record is written when it ends.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::Error;
use super::backend::{Backend, ByteStream, Entry, Key, StorageError};
use super::path::VPath;
use crate::audit::{AuditAction, AuditEvent, AuditLog, Outcome};
use crate::session::Session;

/// A file being read.
pub struct Download {
    audit: Option<AuditLog>,
    session: Session,
    full: VPath,
    backend: Arc<dyn Backend>,
    key: Key,
    entry: Entry,
    /// Open stream and the file offset its next byte has.
    stream: Option<ByteStream>,
    pos: u64,
    pending: Bytes,
    /// Hashes while every byte from 0 has been seen in order.
    hasher: Option<Sha256>,
    hashed_to: u64,
    sent: u64,
    /// Byte range a stream serves (the whole file for `read_at`).
    start: u64,
    end: u64,
    /// Progress shown in the live sessions.
    live: Option<crate::live::Transfer>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Download({}, {} bytes sent)", self.full, self.sent)
    }
}

impl Download {
    pub(super) fn new(
        audit: AuditLog,
        session: Session,
        full: VPath,
        backend: Arc<dyn Backend>,
        key: Key,
        entry: Entry,
        prefetched: Option<ByteStream>,
    ) -> Self {
        let entry_size = entry.size;
        let live = session.transfer(
            full.as_str(),
            crate::live::Direction::Download,
            Some(entry_size),
        );
        Self {
            live,
            audit: Some(audit),
            session,
            full,
            backend,
            key,
            entry,
            // The whole content from offset 0, when the backend read it with the stat.
            stream: prefetched,
            pos: 0,
            pending: Bytes::new(),
            hasher: Some(Sha256::new()),
            hashed_to: 0,
            sent: 0,
            start: 0,
            end: entry_size,
        }
    }

    /// The file's metadata at open time.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The file's recorded sha256, when known and still valid.
    /// (`&mut`: the open stream is not `Sync`, so a shared borrow could not cross an await.)
    pub async fn digest(&mut self) -> Option<[u8; 32]> {
        self.backend.digest(&self.key, &self.entry).await
    }

    /// The virtual path.
    pub fn path(&self) -> &VPath {
        &self.full
    }

    fn account(&mut self, offset: u64, data: &[u8]) {
        self.sent += data.len() as u64;
        if let Some(t) = &self.live {
            t.progress(data.len() as u64);
        }
        if let Some(h) = &mut self.hasher {
            if offset == self.hashed_to {
                h.update(data);
                self.hashed_to += data.len() as u64;
            } else {
                self.hasher = None;
            }
        }
    }

    /// Up to `len` bytes at `offset`; `None` at or past the end.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> Result<Option<Bytes>, Error> {
        if offset >= self.entry.size || len == 0 {
            return Ok(None);
        }
        if self.stream.is_none() || offset != self.pos {
            self.stream = Some(
                self.backend
                    .read(&self.key, Some(offset..self.entry.size))
                    .await?,
            );
            self.pos = offset;
            self.pending = Bytes::new();
        }
        let mut out = BytesMut::new();
        while out.len() < len {
            if self.pending.is_empty() {
                let next = match self.stream.as_mut() {
                    Some(s) => s.next().await,
                    None => None,
                };
                match next {
                    Some(Ok(chunk)) => self.pending = chunk,
                    Some(Err(e)) => {
                        self.stream = None;
                        return Err(e.into());
                    }
                    None => {
                        self.stream = None;
                        break;
                    }
                }
                continue;
            }
            let take = (len - out.len()).min(self.pending.len());
            if out.is_empty() && take == len {
                // The whole answer is in the backend's chunk: hand out a slice of it.
                let data = self.pending.split_to(take);
                self.account(offset, &data);
                self.pos = offset + data.len() as u64;
                return Ok(Some(data));
            }
            out.extend_from_slice(&self.pending.split_to(take));
        }
        if out.is_empty() {
            return Ok(None);
        }
        let data = out.freeze();
        self.account(offset, &data);
        self.pos = offset + data.len() as u64;
        Ok(Some(data))
    }

    /// The content from `range` (whole file if `None`) as a stream that records the download
    /// when it ends, fails or is dropped.
    pub async fn into_stream(mut self, range: Option<Range<u64>>) -> Result<DownloadStream, Error> {
        let start = range.as_ref().map_or(0, |r| r.start);
        let end = range
            .as_ref()
            .map_or(self.entry.size, |r| r.end.min(self.entry.size));
        let whole = start == 0 && end == self.entry.size && self.pos == 0;
        let prefetched = self
            .stream
            .take()
            .filter(|_| whole && self.pending.is_empty());
        let read = match prefetched {
            Some(s) => Ok(s),
            None => self.backend.read(&self.key, range).await,
        };
        let inner = match read {
            Ok(s) => s,
            Err(e) => {
                let err = Error::from(e);
                self.finish(Outcome::Error, Some(err.to_string())).await?;
                return Err(err);
            }
        };
        self.start = start;
        self.end = end;
        self.pos = start;
        Ok(DownloadStream {
            inner,
            dl: Some(self),
        })
    }

    /// Ends without a record: the content was not sent (HEAD, 304, 416).
    pub fn discard(mut self) {
        self.audit = None;
    }

    /// Records the download now, as complete if every byte of its range went out and as
    /// interrupted otherwise (a connection that ended mid-transfer).
    pub async fn end(mut self) -> Result<(), Error> {
        let Some(audit) = self.audit.take() else {
            return Ok(());
        };
        let ev = self.drop_event();
        audit.record(ev).await?;
        Ok(())
    }

    fn drop_event(&mut self) -> AuditEvent {
        let (outcome, detail) = if self.start + self.sent >= self.end {
            (Outcome::Ok, None)
        } else {
            (Outcome::Error, Some("interrupted".to_string()))
        };
        self.event(outcome, detail)
    }

    /// Records the download now.
    pub async fn finish(mut self, outcome: Outcome, detail: Option<String>) -> Result<(), Error> {
        if let Some(audit) = self.audit.take() {
            audit.record(self.event(outcome, detail)).await?;
        }
        Ok(())
    }

    fn event(&mut self, outcome: Outcome, detail: Option<String>) -> AuditEvent {
        let mut ev = AuditEvent::for_session(&self.session, AuditAction::Download, outcome)
            .path(self.full.as_str());
        ev.bytes = Some(self.sent);
        // Every download ends in exactly one event: count it here.
        crate::telemetry::transfer(
            self.session.protocol.as_str(),
            "download",
            outcome.as_str(),
            self.sent,
        );
        let whole = self.hashed_to == self.entry.size && self.start == 0;
        ev.sha256 = match self.hasher.take() {
            Some(h) if whole => Some(h.finalize().into()),
            _ => None,
        };
        ev.detail = detail;
        ev
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        let Some(audit) = self.audit.take() else {
            return;
        };
        // Dropped without `finish`: complete if every byte of the range went out. Nobody waits
        // for this record (the bytes are already sent), so it takes the detached path: no
        // writer wake-up per small GET.
        let ev = self.drop_event();
        audit.record_detached(ev);
    }
}

/// A download as a byte stream (FTP RETR, HTTP GET).
pub struct DownloadStream {
    inner: ByteStream,
    dl: Option<Download>,
}

impl DownloadStream {
    /// Metadata of the file.
    pub fn entry(&self) -> Option<&Entry> {
        self.dl.as_ref().map(|d| &d.entry)
    }
}

impl Stream for DownloadStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let r = this.inner.poll_next_unpin(cx);
        match &r {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(dl) = &mut this.dl {
                    let at = dl.pos;
                    dl.account(at, chunk);
                    dl.pos += chunk.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut dl) = this.dl.take()
                    && let Some(audit) = dl.audit.take()
                {
                    let ev = dl.event(Outcome::Error, Some(format!("storage error: {:?}", e.kind)));
                    audit.record_detached(ev);
                }
            }
            Poll::Ready(None) => {
                // Complete: the Drop of the Download records it as ok.
                this.dl.take();
            }
            Poll::Pending => {}
        }
        r
    }
}
