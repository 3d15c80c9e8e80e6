//! Multipart uploads on object stores through object_store's low-level `MultipartStore`, so the
//! upload id is ours: it is journalled in the state directory while the upload is open. An
//! upload left behind, by a crash (`kill -9`) or by an abort that failed because the store was
//! down, is aborted later: at the next start, and by a sweep every few seconds. Parts go up
//! [`PARTS_IN_FLIGHT`] at a time (memory stays flat), each retried by object_store's policy.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, PutPayload, PutResult};
use tokio::task::JoinSet;

use crate::vfs::backend::{StorageError, StorageErrorKind};

/// Longest a failed upload waits for its abort before answering the client.
const ABORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Parts uploading at once per upload.
pub(super) const PARTS_IN_FLIGHT: usize = 2;

fn store_err(e: object_store::Error) -> StorageError {
    super::object::map_err(e)
}

fn journal_err(e: std::io::Error) -> StorageError {
    StorageError::from_io(&e, "multipart journal")
}

/// The journal: one small file per open multipart upload, `<uuid>.live` while it runs and
/// `<uuid>.abort` once it was given up but could not be aborted yet.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    key: String,
    id: String,
}

/// One journalled upload.
#[derive(Debug)]
pub(super) struct JournalEntry {
    journal: Arc<Journal>,
    name: String,
}

impl Journal {
    /// The journal in `dir` (created).
    pub fn open(dir: PathBuf) -> Result<Arc<Self>, StorageError> {
        std::fs::create_dir_all(&dir).map_err(journal_err)?;
        Ok(Arc::new(Self { dir }))
    }

    fn add(self: &Arc<Self>, key: &str, id: &str) -> Result<JournalEntry, StorageError> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let line = serde_json::to_vec(&Line {
            key: key.to_string(),
            id: id.to_string(),
        })
        .map_err(|e| StorageError::new(StorageErrorKind::Permanent, e))?;
        let path = self.dir.join(format!("{name}.live"));
        std::fs::write(&path, line).map_err(journal_err)?;
        Ok(JournalEntry {
            journal: self.clone(),
            name,
        })
    }

    /// Entries to abort: `.abort` ones, and `.live` ones too when `all` (at start, when no
    /// upload of this process is open yet).
    fn pending(&self, all: bool) -> Vec<(PathBuf, Line)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str());
                ext == Some("abort") || (all && ext == Some("live"))
            })
            .filter_map(|p| {
                let line: Line = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                Some((p, line))
            })
            .collect()
    }

    /// Aborts what was left behind; returns how many uploads were aborted.
    pub async fn sweep(&self, store: &dyn MultipartStore, all: bool) -> usize {
        let mut done = 0;
        for (file, line) in self.pending(all) {
            match store
                .abort_multipart(&Path::from(line.key.as_str()), &line.id)
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    let _ = std::fs::remove_file(&file);
                    done += 1;
                }
                Err(e) => {
                    tracing::warn!(key = %line.key, error = %e, "could not abort a leftover multipart upload yet; will retry");
                    // A live entry from before a crash is now an abandoned one.
                    if file.extension().is_some_and(|e| e == "live") {
                        let _ = std::fs::rename(&file, file.with_extension("abort"));
                    }
                }
            }
        }
        if done > 0 {
            tracing::info!(uploads = done, "aborted multipart uploads left behind");
        }
        done
    }
}

impl JournalEntry {
    fn path(&self, ext: &str) -> PathBuf {
        self.journal.dir.join(format!("{}.{ext}", self.name))
    }

    /// The upload is finished (completed or aborted): forget it.
    fn done(self) {
        let _ = std::fs::remove_file(self.path("live"));
    }

    /// The upload was given up but not aborted: leave it to the sweep.
    fn abandon(self) {
        let _ = std::fs::rename(self.path("live"), self.path("abort"));
    }
}

/// An open multipart upload.
pub(super) struct Multipart {
    store: Arc<dyn MultipartStore>,
    path: Path,
    id: MultipartId,
    part_size: usize,
    /// The next part's bytes as received (no copy into one buffer; `buffered` bytes).
    buf: std::collections::VecDeque<Bytes>,
    buffered: usize,
    parts: Vec<Option<PartId>>,
    in_flight: JoinSet<(usize, Result<PartId, object_store::Error>)>,
    entry: Option<JournalEntry>,
}

impl Multipart {
    /// Starts an upload of `key` with `first` as its first bytes.
    pub async fn start(
        store: Arc<dyn MultipartStore>,
        journal: Option<&Arc<Journal>>,
        key: &str,
        part_size: usize,
        first: BytesMut,
    ) -> Result<Self, StorageError> {
        let path = Path::from(key);
        let id = store.create_multipart(&path).await.map_err(store_err)?;
        let entry = match journal.map(|j| j.add(key, &id)).transpose() {
            Ok(e) => e,
            Err(e) => {
                let _ = store.abort_multipart(&path, &id).await;
                return Err(e);
            }
        };
        let mut mp = Self {
            store,
            path,
            id,
            part_size,
            buf: std::collections::VecDeque::new(),
            buffered: 0,
            parts: Vec::new(),
            in_flight: JoinSet::new(),
            entry,
        };
        mp.write(first.freeze()).await?;
        Ok(mp)
    }

    fn send_part(&mut self, data: PutPayload) {
        let idx = self.parts.len();
        self.parts.push(None);
        let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
        self.in_flight.spawn(async move {
            let r = store.put_part(&path, &id, idx, data).await;
            (idx, r)
        });
    }

    /// The first `part_size` buffered bytes, as the chunks they arrived in (the last one split).
    fn take_part(&mut self) -> PutPayload {
        let mut want = self.part_size.min(self.buffered);
        let mut chunks = Vec::new();
        while want > 0
            && let Some(first) = self.buf.front_mut()
        {
            if first.len() <= want {
                want -= first.len();
                chunks.extend(self.buf.pop_front());
            } else {
                chunks.push(first.split_to(want));
                want = 0;
            }
        }
        let part: PutPayload = chunks.into_iter().collect();
        self.buffered -= part.content_length();
        part
    }

    async fn reap_one(&mut self) -> Result<(), StorageError> {
        match self.in_flight.join_next().await {
            Some(Ok((idx, Ok(part)))) => {
                self.parts[idx] = Some(part);
                Ok(())
            }
            Some(Ok((_, Err(e)))) => Err(store_err(e)),
            Some(Err(e)) => Err(StorageError::new(StorageErrorKind::Transient, e)),
            None => Ok(()),
        }
    }

    /// Adds bytes; full parts go up, at most [`PARTS_IN_FLIGHT`] at once (backpressure).
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.buffered += data.len();
        self.buf.push_back(data);
        while self.buffered >= self.part_size {
            while self.in_flight.len() >= PARTS_IN_FLIGHT {
                self.reap_one().await?;
            }
            let part = self.take_part();
            self.send_part(part);
        }
        Ok(())
    }

    /// Sends the last part, waits for all, completes. The journal entry goes either way: a
    /// failed completion is aborted here (or left to the sweep).
    pub async fn complete(mut self) -> Result<PutResult, StorageError> {
        if self.buffered > 0 || self.parts.is_empty() {
            let last: PutPayload = std::mem::take(&mut self.buf).into_iter().collect();
            self.buffered = 0;
            self.send_part(last);
        }
        let mut result = Ok(());
        while !self.in_flight.is_empty() {
            if let Err(e) = self.reap_one().await {
                result = Err(e);
                break;
            }
        }
        let parts: Option<Vec<PartId>> = self.parts.iter().cloned().collect();
        let done = match (result, parts) {
            (Ok(()), Some(parts)) => self
                .store
                .complete_multipart(&self.path, &self.id, parts)
                .await
                .map_err(store_err),
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StorageError::new(
                StorageErrorKind::Permanent,
                "a part of the upload is missing",
            )),
        };
        match done {
            Ok(r) => {
                if let Some(e) = self.entry.take() {
                    e.done();
                }
                Ok(r)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Throws the upload away; if the store cannot be reached within [`ABORT_WAIT`] (the client
    /// is waiting for its error meanwhile), the sweep will.
    pub async fn abort(mut self) {
        self.in_flight.abort_all();
        let r = tokio::time::timeout(ABORT_WAIT, self.store.abort_multipart(&self.path, &self.id))
            .await
            .unwrap_or_else(|_| {
                Err(object_store::Error::Generic {
                    store: "S3",
                    source: "no answer in time".into(),
                })
            });
        match r {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                if let Some(e) = self.entry.take() {
                    e.done();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not abort a multipart upload now; the sweep will retry");
                if let Some(e) = self.entry.take() {
                    e.abandon();
                }
            }
        }
    }
}

impl Drop for Multipart {
    fn drop(&mut self) {
        // Neither completed nor aborted (a cancelled task): leave it to the sweep, and try now.
        if let Some(e) = self.entry.take() {
            e.abandon();
            self.in_flight.abort_all();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
                rt.spawn(async move {
                    let _ = store.abort_multipart(&path, &id).await;
                });
            }
        }
    }
}
