//! Local-disk backend. Uploads are staged in `<root>/.gatehouse/staging` (same filesystem, so the
//! final rename is atomic), fsynced, then renamed into place. The sha256 of a file written through
//! the gateway is kept in the xattr `user.gatehouse.sha256` together with the size and mtime it
//! was computed for, so an edit made outside the gateway invalidates it instead of lying.
//! Symlinks are followed only while they stay under the root.

use std::io::{Read, Seek};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, CommitMode, Entry, EntryKind, EntryStream, Key, Space,
    StageMode, StagedWrite, StorageError, StorageErrorKind,
};

/// Name of the directory the gateway keeps for itself at the root.
const RESERVED: &str = ".gatehouse";
const XATTR: &str = "user.gatehouse.sha256";
/// Read chunk size: large enough to amortise the blocking-pool hop per read.
const READ_CHUNK: usize = 256 * 1024;
/// Write buffer: staged writes reach the file in pieces of this size.
const WRITE_BUF: usize = 1024 * 1024;
/// Staging files older than this are leftovers of a crash.
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

/// A directory on local disk.
#[derive(Debug)]
pub struct LocalBackend {
    root: PathBuf,
    staging: PathBuf,
}

fn io_err(e: std::io::Error, what: &str) -> StorageError {
    StorageError::from_io(&e, what)
}

impl LocalBackend {
    /// Opens (creating if needed) the root directory and its staging area, removing staging
    /// files a crash left behind.
    pub fn new(root: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(root).map_err(|e| io_err(e, "create root"))?;
        let root = root.canonicalize().map_err(|e| io_err(e, "resolve root"))?;
        let staging = root.join(RESERVED).join("staging");
        std::fs::create_dir_all(&staging).map_err(|e| io_err(e, "create staging dir"))?;
        if let Ok(dir) = std::fs::read_dir(&staging) {
            for entry in dir.flatten() {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_STAGING);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self { root, staging })
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

    async fn blocking<T: Send + 'static>(
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
        Self::blocking(move || match std::fs::metadata(&path) {
            Ok(m) => {
                let real = path.canonicalize().map_err(|e| io_err(e, "resolve"))?;
                if !real.starts_with(&root) {
                    return Ok(None);
                }
                Ok(Some(entry_of(name, &path, &m)))
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
        })
        .await
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
        Ok(Box::new(LocalStaged {
            file: Some(tokio::io::BufWriter::with_capacity(
                WRITE_BUF,
                tokio::fs::File::from_std(file),
            )),
            positional: None,
            tmp,
            target,
        }))
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

fn digest_value(d: &[u8; 32], m: &std::fs::Metadata) -> String {
    format!("{} {} {}", hex::encode(d), m.len(), mtime_ns(m))
}

/// A staged write to a temp file.
struct LocalStaged {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// A second handle for positional reads and writes (random access), made on first use.
    positional: Option<std::sync::Arc<std::fs::File>>,
    tmp: PathBuf,
    target: PathBuf,
}

impl LocalStaged {
    /// The handle for positional I/O, after flushing what the sequential writer buffered.
    async fn positional(&mut self) -> Result<std::sync::Arc<std::fs::File>, StorageError> {
        if let Some(f) = &self.positional {
            return Ok(f.clone());
        }
        let w = self
            .file
            .as_mut()
            .ok_or_else(|| StorageError::new(StorageErrorKind::Permanent, "write after close"))?;
        w.flush().await.map_err(|e| io_err(e, "flush"))?;
        let clone = w
            .get_mut()
            .try_clone()
            .await
            .map_err(|e| io_err(e, "open for random access"))?;
        let f = std::sync::Arc::new(clone.into_std().await);
        self.positional = Some(f.clone());
        Ok(f)
    }
}

#[async_trait]
impl StagedWrite for LocalStaged {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| StorageError::new(StorageErrorKind::Permanent, "write after close"))?;
        f.write_all(&data).await.map_err(|e| io_err(e, "write"))
    }

    async fn commit(
        mut self: Box<Self>,
        sha256: [u8; 32],
        mode: CommitMode,
    ) -> Result<(), StorageError> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| StorageError::new(StorageErrorKind::Permanent, "commit after close"))?;
        f.flush().await.map_err(|e| io_err(e, "flush"))?;
        let std_file = f.into_inner().into_std().await;
        let (tmp, target) = (self.tmp.clone(), self.target.clone());
        let r = LocalBackend::blocking(move || {
            std_file.sync_all().map_err(|e| io_err(e, "fsync"))?;
            let m = std_file.metadata().map_err(|e| io_err(e, "stat"))?;
            // Best effort: filesystems without user xattrs just serve no Repr-Digest.
            let _ = xattr::set(&tmp, XATTR, digest_value(&sha256, &m).as_bytes());
            match mode {
                CommitMode::Replace => {
                    std::fs::rename(&tmp, &target).map_err(|e| io_err(e, "rename into place"))?
                }
                // link(2) fails with EEXIST if anything is at the target: an atomic create.
                CommitMode::NoReplace => {
                    std::fs::hard_link(&tmp, &target).map_err(|e| io_err(e, "link into place"))?;
                    let _ = std::fs::remove_file(&tmp);
                }
            }
            if let Some(dir) = target.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        r
    }

    async fn abort(mut self: Box<Self>) {
        self.file.take();
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }

    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        let f = self.positional().await?;
        LocalBackend::blocking(move || {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&data, offset)
                .map_err(|e| io_err(e, "write"))
        })
        .await
    }

    async fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let f = self.positional().await?;
        LocalBackend::blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = BytesMut::zeroed(len);
            let mut filled = 0;
            while filled < len {
                match f.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e, "read")),
                }
            }
            buf.truncate(filled);
            Ok(buf.freeze())
        })
        .await
    }

    async fn content_sha256(&mut self) -> Result<[u8; 32], StorageError> {
        let f = self.positional().await?;
        LocalBackend::blocking(move || {
            use sha2::{Digest, Sha256};
            use std::os::unix::fs::FileExt;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; READ_CHUNK];
            let mut at = 0u64;
            loop {
                match f.read_at(&mut buf, at) {
                    Ok(0) => break,
                    Ok(n) => {
                        h.update(&buf[..n]);
                        at += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(e, "read")),
                }
            }
            Ok(h.finalize().into())
        })
        .await
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        // Neither committed nor aborted (e.g. a task cancelled mid-commit): leave no temp file.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
