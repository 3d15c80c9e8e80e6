//! Local-disk backend. Uploads are staged in `<root>/.gatehouse/staging` (same filesystem, so the
//! final rename is atomic), fsynced, then renamed into place. The sha256 of a file written through
//! the gateway is kept in the xattr `user.gatehouse.sha256` together with the size and mtime it
//! was computed for, so an edit made outside the gateway invalidates it instead of lying.
//! Symlinks are followed only while they stay under the root. Staged writes are
//! `local_staged.rs`.

use std::io::{Read, Seek};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::local_staged::LocalStaged;
use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, Entry, EntryKind, EntryStream, Key, Space, StageMode,
    StagedWrite, StorageError, StorageErrorKind,
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
        let existing = if path.exists() {
            path.to_path_buf()
        } else {
            match path.parent() {
                Some(p) => p.to_path_buf(),
                None => return Ok(()),
            }
        };
        match existing.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(()),
            // Outside the root nothing exists, as far as clients can tell (stat agrees).
            Ok(_) => Err(StorageError::not_found(format!(
                "{} resolves outside the backend root",
                path.display()
            ))),
            Err(e) => Err(io_err(e, "resolve")),
        }
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
fn read_chunk(file: &mut std::fs::File, remaining: u64) -> Result<Bytes, StorageError> {
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

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// The recorded sha256, if it was computed for the file as it is now.
fn read_digest(path: &Path, m: &std::fs::Metadata) -> Option<[u8; 32]> {
    let raw = xattr::get(path, XATTR).ok()??;
    let text = String::from_utf8(raw).ok()?;
    let mut parts = text.split(' ');
    let (hex_digest, size, mtime) = (parts.next()?, parts.next()?, parts.next()?);
    if size.parse::<u64>().ok()? != m.len() || mtime.parse::<i128>().ok()? != mtime_ns(m) {
        return None;
    }
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// Files up to this size are read together with their stat (`stat_and_read`).
const SMALL_READ: u64 = 64 * 1024;

/// The entry at `path` and its real path, or `None` if it does not exist or resolves outside
/// `root` (a symlink out of the root does not exist, as far as clients can tell).
fn stat_confined(
    path: &Path,
    root: &Path,
    name: String,
) -> Result<Option<(Entry, PathBuf)>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => {
            let real = path.canonicalize().map_err(|e| io_err(e, "resolve"))?;
            if !real.starts_with(root) {
                return Ok(None);
            }
            Ok(Some((entry_of(name, path, &m), real)))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(io_err(e, "stat")),
    }
}

fn entry_of(name: String, path: &Path, m: &std::fs::Metadata) -> Entry {
    let kind = if m.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    Entry {
        name,
        kind,
        size: if m.is_dir() { 0 } else { m.len() },
        modified: m.modified().ok(),
        sha256: if m.is_dir() {
            None
        } else {
            read_digest(path, m)
        },
        etag: Some(format!("{:x}-{:x}", m.len(), mtime_ns(m))),
    }
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
        let name = key.name().to_string();
        let root = self.root.clone();
        Self::blocking(move || Ok(stat_confined(&path, &root, name)?.map(|(e, _)| e))).await
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
        let root = self.root.clone();
        let found = Self::blocking(move || {
            let Some((entry, real)) = stat_confined(&path, &root, name)? else {
                return Ok(None);
            };
            // A small file is read whole in the same trip, so its download needs no second
            // one (the two hand-offs were a third of a small GET's CPU). If it changed size
            // since the stat, it is read again later like any other.
            let content = match entry.kind {
                EntryKind::File if entry.size <= SMALL_READ => std::fs::read(&real)
                    .ok()
                    .filter(|v| v.len() as u64 == entry.size)
                    .map(Bytes::from),
                _ => None,
            };
            Ok(Some((entry, content)))
        })
        .await?;
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
        self.confine(&path)?;
        // Open, size, seek and the first chunk in one trip to the blocking pool: a small file
        // costs one thread hand-off instead of four (they dominated small GETs).
        let (file, first, remaining) = Self::blocking(move || {
            let mut file = std::fs::File::open(&path).map_err(|e| io_err(e, "open"))?;
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
        let (tmp2, target2) = (tmp.clone(), target.clone());
        let file = Self::blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .read(true)
                .open(&tmp2)
                .map_err(|e| io_err(e, "create staging file"))?;
            if let StageMode::KeepPrefix(n) = mode {
                let src =
                    std::fs::File::open(&target2).map_err(|e| io_err(e, "open for resume"))?;
                let copied = std::io::copy(&mut src.take(n), &mut f)
                    .map_err(|e| io_err(e, "copy for resume"))?;
                if copied != n {
                    let _ = std::fs::remove_file(&tmp2);
                    return Err(StorageError::new(
                        StorageErrorKind::Permanent,
                        "file shrank during resume",
                    ));
                }
                f.seek(std::io::SeekFrom::End(0))
                    .map_err(|e| io_err(e, "seek"))?;
            }
            Ok(f)
        })
        .await?;
        Ok(Box::new(LocalStaged::new(
            tokio::io::BufWriter::with_capacity(WRITE_BUF, tokio::fs::File::from_std(file)),
            tmp,
            target,
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

pub(super) fn digest_value(d: &[u8; 32], m: &std::fs::Metadata) -> String {
    format!("{} {} {}", hex::encode(d), m.len(), mtime_ns(m))
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
