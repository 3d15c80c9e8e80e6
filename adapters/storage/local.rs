//! Local-disk backend. Uploads are staged in `<root>/.gatehouse/staging` (same filesystem, so the
//! final rename is atomic), fsynced, then renamed into place. The sha256 of a file written through
//! the gateway is kept in the xattr `user.gatehouse.sha256` together with the size and mtime it
//! was computed for, so an edit made outside the gateway invalidates it instead of lying.
//! Symlinks are followed only while they stay under the root. Staged writes are
//! `local_staged.rs`.

use std::io::{Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::local_entry::{
    SMALL_READ, confine, digest_value, entry_from, entry_of, file_digest, read_digest, stat_entry,
};
use super::local_open::{Beneath, Cached, RootDir};
use super::local_staged::LocalStaged;
use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, Entry, EntryStream, Key, Space, StageMode, StagedWrite,
    StorageError, StorageErrorKind,
};

/// Name of the directory the gateway keeps for itself at the root.
const RESERVED: &str = ".gatehouse";
pub(super) const XATTR: &str = "user.gatehouse.sha256";
/// Read chunk size: large enough to amortise the blocking-pool hop per read.
pub(super) const READ_CHUNK: usize = 256 * 1024;
/// Write buffer: staged writes reach the file in pieces of this size.
const WRITE_BUF: usize = 1024 * 1024;

/// A directory on local disk.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    /// The root held open for one-call confined opens (`local_open.rs`).
    root_dir: std::sync::Arc<RootDir>,
    staging: PathBuf,
    /// This process's claim on `staging` (flock, released at exit, also by `kill -9`).
    _lock: std::fs::File,
}

pub(super) fn io_err(e: std::io::Error, what: &str) -> StorageError {
    StorageError::from_io(&e, what)
}

impl LocalBackend {
    /// Opens (creating if needed) the root directory and this process's staging area,
    /// `<root>/.gatehouse/staging/<id>/`, held with a lock (`<id>.lock`, flock) for the process's
    /// lifetime. Several gateways may share a root (blue/green, nodes on a shared filesystem):
    /// each stages in its own directory. A staging directory whose lock is free belongs to a
    /// process that died mid-upload: it is removed now.
    pub fn new(root: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root).map_err(|e| io_err(e, "create root"))?;
        let root = root.canonicalize().map_err(|e| io_err(e, "resolve root"))?;
        let base = root.join(RESERVED).join("staging");
        std::fs::create_dir_all(&base).map_err(|e| io_err(e, "create staging dir"))?;
        let removed = sweep_staging(&base);
        if removed > 0 {
            tracing::info!(root = %root.display(), files = removed, "removed staging files an earlier process left behind");
        }
        let id = format!("{:016x}", rand::random::<u64>());
        // Locked under a name the sweep leaves alone, then renamed: another process's sweep
        // never sees this lock file unlocked.
        let claiming = base.join(format!("{id}.claim"));
        let lock = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&claiming)
            .map_err(|e| io_err(e, "create the staging lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| io_err(e.into(), "lock the staging directory"))?;
        std::fs::rename(&claiming, base.join(format!("{id}.lock")))
            .map_err(|e| io_err(e, "create the staging lock"))?;
        let staging = base.join(&id);
        std::fs::create_dir_all(&staging).map_err(|e| io_err(e, "create staging dir"))?;
        Ok(Self {
            root_dir: std::sync::Arc::new(RootDir::open(&root)?),
            root,
            staging,
            _lock: lock,
        })
    }

    /// Host path of a key; keys under the reserved directory do not exist for clients.
    fn path_of(&self, key: &Key) -> Result<PathBuf, StorageError> {
        if key.as_str().split('/').next() == Some(RESERVED) {
            return Err(StorageError::not_found("reserved name"));
        }
        Ok(if key.is_root() {
            self.root.clone()
        } else {
            self.root.join(key.as_str())
        })
    }

    /// Refuses paths whose real location (after symlinks) is outside the root.
    fn confine(&self, path: &Path) -> Result<(), StorageError> {
        confine(path, &self.root)
    }

    pub(super) async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StorageError::new(StorageErrorKind::Permanent, e))?
    }
}

/// Up to [`READ_CHUNK`] bytes (at most `remaining`); empty at the end of the file.
pub(super) fn read_chunk(file: &mut std::fs::File, remaining: u64) -> Result<Bytes, StorageError> {
    let want = usize::try_from(remaining)
        .unwrap_or(READ_CHUNK)
        .min(READ_CHUNK);
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e, "read")),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

#[async_trait]
impl Backend for LocalBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            resume: true,
            set_times: true,
            real_dirs: true,
            random_write: true,
        }
    }

    async fn stat(&self, key: &Key) -> Result<Option<Entry>, StorageError> {
        let path = match self.path_of(key) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        let (name, rel) = (key.name().to_string(), key.as_str().to_string());
        let (root, root_dir) = (self.root.clone(), self.root_dir.clone());
        Self::blocking(move || {
            Ok(stat_entry(&root_dir, &rel, &path, &root, name, false)?.map(|(e, _)| e))
        })
        .await
    }

    async fn stat_and_read(
        &self,
        key: &Key,
    ) -> Result<Option<(Entry, Option<ByteStream>)>, StorageError> {
        let path = match self.path_of(key) {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        let name = key.name().to_string();
        // From the kernel's caches on this thread when they hold it all (`local_open.rs`): a
        // hot small file costs no trip to the blocking pool.
        let found = match self.root_dir.read_cached(key.as_str(), SMALL_READ) {
            Some(Cached::Missing) => None,
            Some(Cached::Found(file, m, bytes)) => {
                let entry = entry_from(name, &m, file_digest(&file, &m));
                Some((entry, bytes.map(Bytes::from)))
            }
            None => {
                let rel = key.as_str().to_string();
                let (root, root_dir) = (self.root.clone(), self.root_dir.clone());
                // A small file is read whole in the same trip, so its download needs no second
                // one (the two hand-offs were a third of a small GET's CPU).
                Self::blocking(move || stat_entry(&root_dir, &rel, &path, &root, name, true))
                    .await?
            }
        };
        Ok(found.map(|(entry, content)| {
            let stream = content.map(|b| {
                futures::stream::iter((!b.is_empty()).then_some(Ok(b))).boxed() as ByteStream
            });
            (entry, stream)
        }))
    }

    async fn list(&self, dir: &Key) -> Result<EntryStream, StorageError> {
        let path = self.path_of(dir)?;
        self.confine(&path)?;
        let hide_reserved = dir.is_root();
        let rd = tokio::fs::read_dir(&path)
            .await
            .map_err(|e| io_err(e, "list"))?;
        let stream = futures::stream::unfold(rd, move |mut rd| async move {
            loop {
                match rd.next_entry().await {
                    Ok(Some(e)) => {
                        let Some(name) = e.file_name().to_str().map(str::to_string) else {
                            continue; // names that are not UTF-8 cannot be addressed by clients
                        };
                        if hide_reserved && name == RESERVED {
                            continue;
                        }
                        let p = e.path();
                        let meta = tokio::fs::metadata(&p).await;
                        let Ok(m) = meta else {
                            continue; // dangling symlink or vanished entry
                        };
                        let entry = tokio::task::spawn_blocking(move || entry_of(name, &p, &m))
                            .await
                            .map_err(|e| StorageError::new(StorageErrorKind::Permanent, e));
                        return Some((entry, rd));
                    }
                    Ok(None) => return None,
                    Err(e) => return Some((Err(io_err(e, "list")), rd)),
                }
            }
        });
        Ok(stream.boxed())
    }

    async fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let path = self.path_of(key)?;
        let (root_dir, root, rel) = (
            self.root_dir.clone(),
            self.root.clone(),
            key.as_str().to_string(),
        );
        // The confined open, size, seek and the first chunk in one trip to the blocking pool: a
        // small file costs one thread hand-off instead of four (they dominated small GETs), and
        // the worker thread makes no file system call itself.
        let (file, first, remaining) = Self::blocking(move || {
            let mut file = match root_dir.open_beneath(&rel) {
                Beneath::Opened(f) => f,
                Beneath::Missing => return Err(StorageError::not_found("no such file")),
                Beneath::Fallback => {
                    confine(&path, &root)?;
                    std::fs::File::open(&path).map_err(|e| io_err(e, "open"))?
                }
            };
            let len = file.metadata().map_err(|e| io_err(e, "stat"))?.len();
            let (start, end) = match range {
                Some(r) => (r.start.min(len), r.end.min(len)),
                None => (0, len),
            };
            if start > 0 {
                file.seek(std::io::SeekFrom::Start(start))
                    .map_err(|e| io_err(e, "seek"))?;
            }
            let remaining = end.saturating_sub(start);
            let first = read_chunk(&mut file, remaining)?;
            let left = if first.is_empty() {
                0
            } else {
                remaining - first.len() as u64
            };
            Ok((file, first, left))
        })
        .await?;
        let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        let rest =
            futures::stream::unfold((Some(file), remaining), |(file, remaining)| async move {
                let mut file = file?;
                if remaining == 0 {
                    return None;
                }
                let read = tokio::task::spawn_blocking(move || {
                    let chunk = read_chunk(&mut file, remaining);
                    (file, chunk)
                })
                .await;
                match read {
                    Ok((_, Ok(chunk))) if chunk.is_empty() => None,
                    Ok((file, Ok(chunk))) => {
                        let left = remaining - chunk.len() as u64;
                        Some((Ok(chunk), (Some(file), left)))
                    }
                    Ok((_, Err(e))) => Some((Err(e), (None, 0))),
                    Err(e) => Some((
                        Err(StorageError::new(StorageErrorKind::Permanent, e)),
                        (None, 0),
                    )),
                }
            });
        Ok(head.chain(rest).boxed())
    }

    async fn stage(
        &self,
        key: &Key,
        mode: StageMode,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        let target = self.path_of(key)?;
        self.confine(&target)?;
        let parent_ok = target.parent().is_some_and(Path::is_dir);
        if !parent_ok {
            return Err(StorageError::not_found("parent directory does not exist"));
        }
        let tmp = self
            .staging
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        // What creating the temp file here would have caught (a read-only or unwritable
        // staging directory) is still refused now, before a client sends anything.
        rustix::fs::access(&self.staging, rustix::fs::Access::WRITE_OK)
            .map_err(|e| io_err(e.into(), "staging directory"))?;
        let StageMode::KeepPrefix(n) = mode else {
            // The temp file is made when the upload needs it (at its commit, for small ones).
            return Ok(Box::new(LocalStaged::deferred(tmp, target, WRITE_BUF)));
        };
        let (tmp2, target2) = (tmp.clone(), target.clone());
        let file = Self::blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .read(true)
                .open(&tmp2)
                .map_err(|e| io_err(e, "create staging file"))?;
            let kept = (|| {
                let src =
                    std::fs::File::open(&target2).map_err(|e| io_err(e, "open for resume"))?;
                let copied = std::io::copy(&mut src.take(n), &mut f)
                    .map_err(|e| io_err(e, "copy for resume"))?;
                if copied != n {
                    return Err(StorageError::new(
                        StorageErrorKind::Permanent,
                        "file shrank during resume",
                    ));
                }
                f.seek(std::io::SeekFrom::End(0))
                    .map_err(|e| io_err(e, "seek"))
            })();
            if let Err(e) = kept {
                let _ = std::fs::remove_file(&tmp2);
                return Err(e);
            }
            Ok(f)
        })
        .await?;
        Ok(Box::new(LocalStaged::in_file(
            tokio::io::BufWriter::with_capacity(WRITE_BUF, tokio::fs::File::from_std(file)),
            tmp,
            target,
            WRITE_BUF,
        )))
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        self.confine(&path)?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| io_err(e, "delete"))
    }

    async fn mkdir(&self, key: &Key) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        self.confine(&path)?;
        tokio::fs::create_dir(&path)
            .await
            .map_err(|e| io_err(e, "mkdir"))
    }

    async fn rmdir(&self, key: &Key) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        self.confine(&path)?;
        tokio::fs::remove_dir(&path)
            .await
            .map_err(|e| io_err(e, "rmdir"))
    }

    async fn rename(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError> {
        let (src, dst) = (self.path_of(from)?, self.path_of(to)?);
        self.confine(&src)?;
        self.confine(&dst)?;
        Self::blocking(move || {
            let is_dir = std::fs::symlink_metadata(&src)
                .map_err(|e| io_err(e, "rename"))?
                .is_dir();
            if no_overwrite && !is_dir {
                // link + unlink: atomic "fail if the target exists" for files.
                std::fs::hard_link(&src, &dst).map_err(|e| io_err(e, "rename"))?;
                return std::fs::remove_file(&src).map_err(|e| io_err(e, "rename"));
            }
            if no_overwrite && dst.exists() {
                return Err(StorageError::new(
                    StorageErrorKind::AlreadyExists,
                    "target exists",
                ));
            }
            std::fs::rename(&src, &dst).map_err(|e| io_err(e, "rename"))
        })
        .await
    }

    async fn set_modified(&self, key: &Key, time: SystemTime) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        self.confine(&path)?;
        Self::blocking(move || {
            let before = std::fs::metadata(&path).map_err(|e| io_err(e, "stat"))?;
            let digest = read_digest(&path, &before);
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .map_err(|e| io_err(e, "open"))?;
            f.set_modified(time).map_err(|e| io_err(e, "set times"))?;
            // Content unchanged: keep the digest valid for the new mtime.
            if let Some(d) = digest {
                let after = f.metadata().map_err(|e| io_err(e, "stat"))?;
                let _ = xattr::set(&path, XATTR, digest_value(&d, &after).as_bytes());
            }
            Ok(())
        })
        .await
    }

    async fn space(&self, key: &Key) -> Result<Space, StorageError> {
        let path = self.path_of(key)?;
        self.confine(&path)?;
        Self::blocking(move || {
            let v = rustix::fs::statvfs(&path)
                .map_err(|e| io_err(std::io::Error::from(e), "statvfs"))?;
            Ok(Space {
                block_size: v.f_bsize,
                fragment_size: v.f_frsize,
                blocks: v.f_blocks,
                blocks_free: v.f_bfree,
                blocks_avail: v.f_bavail,
                files: v.f_files,
                files_free: v.f_ffree,
                files_avail: v.f_favail,
                fsid: v.f_fsid,
                name_max: v.f_namemax,
            })
        })
        .await
    }

    async fn hard_link(&self, from: &Key, to: &Key) -> Result<(), StorageError> {
        let (src, dst) = (self.path_of(from)?, self.path_of(to)?);
        self.confine(&src)?;
        self.confine(&dst)?;
        Self::blocking(move || {
            if std::fs::symlink_metadata(&src)
                .map_err(|e| io_err(e, "link"))?
                .is_dir()
            {
                return Err(StorageError::new(
                    StorageErrorKind::NotAFile,
                    "cannot hard-link a directory",
                ));
            }
            // link(2) never replaces: an existing target is EEXIST.
            std::fs::hard_link(&src, &dst).map_err(|e| io_err(e, "link"))
        })
        .await
    }

    async fn check(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        Self::blocking(move || {
            std::fs::read_dir(&root)
                .map(|_| ())
                .map_err(|e| io_err(e, "read root"))
        })
        .await
    }
}

/// Removes the staging directories of processes that are gone (their lock is free) and `.part`
/// files staged directly in `base` by earlier versions; returns how many files went.
fn sweep_staging(base: &Path) -> usize {
    let mut removed = 0;
    let Ok(dir) = std::fs::read_dir(base) else {
        return 0;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(id) = name.strip_suffix(".lock") {
            let Ok(lock) = std::fs::OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue; // a live process
            }
            if let Ok(files) = std::fs::read_dir(base.join(id)) {
                removed += files
                    .flatten()
                    .filter(|f| std::fs::remove_file(f.path()).is_ok())
                    .count();
            }
            let _ = std::fs::remove_dir(base.join(id));
            let _ = std::fs::remove_file(&path);
        } else if name.ends_with(".claim") {
            // A process that died between creating its lock and naming it: empty, harmless;
            // removed once surely stale.
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|d| d.as_secs() > 60));
            if stale {
                let _ = std::fs::remove_file(&path);
            }
        } else if name.ends_with(".part")
            && entry.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}
