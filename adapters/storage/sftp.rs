//! An upstream SFTP server as a backend (the DMZ gateway in front of an internal server): russh
//! client sessions from a pinned-host-key pool (`sftp_pool.rs`), under a `root` directory there.
//! - Uploads stream into a hidden temporary file in the target directory
//!   (`.gatehouse-<uuid>.part`, never listed), writes pipelined, and are renamed into place at
//!   commit: `posix-rename@openssh.com` (atomic replace) when offered; for a no-replace commit the
//!   plain SFTP rename, which OpenSSH performs with link(2) and so refuses an existing target.
//! - Reads are pipelined too; listings stream `READDIR` batches.
//! - sha256: a sidecar `<root>/.gatehouse/sha256/<sha256 of the key>` holding `<hex> <etag>`,
//!   trusted only while the file's size and mtime (its etag) match.
//! - The upstream's status codes map to the core's kinds; lost connections are transient and the
//!   next operation reconnects. Resume keeps the existing file's prefix in the temporary file
//!   (`sftp_resume.rs`: server-side `copy-data` when offered); read-write opens write at any
//!   offset of the temporary file and read it back.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use sha2::Digest;

use super::sftp_pool::{Conn, Pool, Upstream};
use super::sftp_staged::SftpStaged;
use crate::vfs::backend::{
    Backend, ByteStream, Capabilities, Entry, EntryKind, EntryStream, Key, StageMode, StagedWrite,
    StorageError, StorageErrorKind,
};

/// Bytes per SFTP read or write request (OpenSSH takes up to 255 KiB; 32 KiB is what every
/// server takes).
pub(super) const CHUNK: usize = 32 * 1024;
/// Requests in flight per transfer.
pub(super) const IN_FLIGHT: usize = 32;
/// Key space the gateway keeps for itself under the root.
pub(super) const RESERVED: &str = ".gatehouse";
/// Prefix of temporary upload names.
const TMP_PREFIX: &str = ".gatehouse-";

pub(super) fn map(e: SftpError, what: &str) -> StorageError {
    let kind = match &e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile | StatusCode::Eof => StorageErrorKind::NotFound,
            StatusCode::OpUnsupported => StorageErrorKind::Unsupported,
            StatusCode::NoConnection | StatusCode::ConnectionLost => StorageErrorKind::Transient,
            _ => StorageErrorKind::Permanent,
        },
        SftpError::Timeout | SftpError::IO(_) => StorageErrorKind::Transient,
        _ => StorageErrorKind::Permanent,
    };
    StorageError::new(kind, format!("upstream SFTP {what}: {e}"))
}

fn is_failure(e: &StorageError) -> bool {
    e.kind == StorageErrorKind::Permanent
}

fn reserved(key: &Key) -> bool {
    key.as_str().split('/').next() == Some(RESERVED) || key.name().starts_with(TMP_PREFIX)
}

pub(super) fn etag(a: &FileAttributes) -> String {
    format!("{:x}-{:x}", a.size.unwrap_or(0), a.mtime.unwrap_or(0))
}

fn entry(name: String, a: &FileAttributes) -> Entry {
    let dir = a.is_dir();
    Entry {
        name,
        kind: if dir { EntryKind::Dir } else { EntryKind::File },
        size: if dir { 0 } else { a.size.unwrap_or(0) },
        modified: a
            .mtime
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(t))),
        sha256: None,
        etag: (!dir).then(|| etag(a)),
    }
}

/// An upstream SFTP server, under a root directory.
pub struct SftpBackend {
    pool: Arc<Pool>,
    root: String,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend")
            .field("address", &self.pool.address())
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SftpBackend {
    pub(crate) fn new(up: Upstream, root: &str) -> Self {
        let root = match root.trim_end_matches('/') {
            "" if root.starts_with('/') => "/".to_string(),
            "" => ".".to_string(),
            r => r.to_string(),
        };
        Self {
            pool: Arc::new(Pool::new(up)),
            root,
        }
    }

    pub(super) fn path(&self, key: &str) -> String {
        match (key.is_empty(), self.root.as_str()) {
            (true, r) => r.to_string(),
            (false, "/") => format!("/{key}"),
            (false, r) => format!("{r}/{key}"),
        }
    }

    pub(super) fn sidecar(&self, key: &Key) -> String {
        self.path(&format!(
            "{RESERVED}/sha256/{}",
            hex::encode(sha2::Sha256::digest(key.as_str().as_bytes()))
        ))
    }

    pub(super) async fn attrs(
        &self,
        conn: &Conn,
        path: &str,
    ) -> Result<Option<FileAttributes>, StorageError> {
        match conn.sftp.stat(path).await {
            Ok(a) => Ok(Some(a.attrs)),
            Err(e) => match map(e, "stat") {
                e if e.kind == StorageErrorKind::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    /// A rename; `replace` overwrites an existing target (atomically where the server has
    /// `posix-rename@openssh.com`).
    pub(super) async fn rename_path(
        &self,
        conn: &Conn,
        from: &str,
        to: &str,
        replace: bool,
    ) -> Result<(), StorageError> {
        let r = if replace && conn.posix_rename {
            let mut data = Vec::new();
            for s in [from, to] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            match conn.sftp.extended("posix-rename@openssh.com", data).await {
                Ok(russh_sftp::protocol::Packet::Status(s)) if s.status_code == StatusCode::Ok => {
                    Ok(())
                }
                Ok(russh_sftp::protocol::Packet::Status(s)) => {
                    Err(map(SftpError::Status(s), "rename"))
                }
                Ok(_) => Err(StorageError::new(
                    StorageErrorKind::Permanent,
                    "upstream SFTP rename: unexpected answer",
                )),
                Err(e) => Err(map(e, "rename")),
            }
        } else {
            if replace
                && let Ok(Some(a)) = self.attrs(conn, to).await
                && !a.is_dir()
            {
                let _ = conn.sftp.remove(to).await;
            }
            conn.sftp
                .rename(from, to)
                .await
                .map(|_| ())
                .map_err(|e| map(e, "rename"))
        };
        match r {
            // SFTP's generic failure: name the usual cause when it is the case.
            Err(e)
                if is_failure(&e)
                    && !replace
                    && self.attrs(conn, to).await.ok().flatten().is_some() =>
            {
                Err(StorageError::new(
                    StorageErrorKind::AlreadyExists,
                    "target exists",
                ))
            }
            other => other,
        }
    }

    pub(super) async fn write_file(
        &self,
        conn: &Conn,
        path: &str,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let h = conn
            .sftp
            .open(path, flags, FileAttributes::default())
            .await
            .map_err(|e| map(e, "open"))?
            .handle;
        let r = conn
            .sftp
            .write(h.clone(), 0, data.to_vec())
            .await
            .map_err(|e| map(e, "write"));
        let _ = conn.sftp.close(h).await;
        r.map(|_| ())
    }

    async fn read_small(&self, conn: &Conn, path: &str) -> Option<Vec<u8>> {
        let h = conn
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::default())
            .await
            .ok()?
            .handle;
        let d = conn.sftp.read(h.clone(), 0, 1024).await.ok();
        let _ = conn.sftp.close(h).await;
        d.map(|d| d.data)
    }

    pub(super) async fn ensure_dirs(&self, conn: &Conn, dirs: &[&str]) {
        for d in dirs {
            let _ = conn
                .sftp
                .mkdir(self.path(d), FileAttributes::default())
                .await;
        }
    }
}

/// Reads `len` bytes at `offset` (fewer only at the end of the file), however the server splits
/// its answers.
pub(super) async fn read_chunk(
    sftp: Arc<russh_sftp::client::RawSftpSession>,
    handle: String,
    offset: u64,
    len: usize,
) -> Result<Bytes, StorageError> {
    let mut got: Vec<u8> = Vec::new();
    while got.len() < len {
        match sftp
            .read(
                handle.clone(),
                offset + got.len() as u64,
                (len - got.len()) as u32,
            )
            .await
        {
            Ok(d) if d.data.is_empty() => break,
            // The usual case, one reply for the whole chunk: its buffer, not a copy.
            Ok(d) if got.is_empty() => got = d.data,
            Ok(d) => got.extend_from_slice(&d.data),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => break,
            Err(e) => return Err(map(e, "read")),
        }
    }
    Ok(Bytes::from(got))
}

/// Closes a remote handle when dropped (a download abandoned part-way).
struct CloseOnDrop(Option<(Arc<russh_sftp::client::RawSftpSession>, String)>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some((sftp, h)) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = sftp.close(h).await;
            });
        }
    }
}

#[async_trait]
impl Backend for SftpBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            resume: true,
            set_times: true,
            real_dirs: true,
            random_write: true,
        }
    }

    async fn stat(&self, key: &Key) -> Result<Option<Entry>, StorageError> {
        if reserved(key) {
            return Ok(None);
        }
        let conn = self.pool.get().await?;
        if key.is_root() {
            return match self.attrs(&conn, &self.path("")).await? {
                Some(a) if a.is_dir() => Ok(Some(Entry::dir(""))),
                _ => Err(StorageError::new(
                    StorageErrorKind::Permanent,
                    "upstream SFTP root is not a directory",
                )),
            };
        }
        Ok(self
            .attrs(&conn, &self.path(key.as_str()))
            .await?
            .map(|a| entry(key.name().to_string(), &a)))
    }

    async fn list(&self, dir: &Key) -> Result<EntryStream, StorageError> {
        if reserved(dir) {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let handle = conn
            .sftp
            .opendir(self.path(dir.as_str()))
            .await
            .map_err(|e| map(e, "opendir"))?
            .handle;
        let sftp = conn.sftp.clone();
        let guard = CloseOnDrop(Some((sftp.clone(), handle.clone())));
        let hide_reserved = dir.is_root();
        let batches = futures::stream::unfold(Some((sftp, handle, guard)), |state| async move {
            let (sftp, handle, guard) = state?;
            match sftp.readdir(handle.clone()).await {
                Ok(name) => Some((Ok(name.files), Some((sftp, handle, guard)))),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => None,
                Err(e) => Some((Err(map(e, "readdir")), None)),
            }
        });
        let entries = batches
            .map_ok(|files| futures::stream::iter(files.into_iter().map(Ok::<_, StorageError>)))
            .try_flatten()
            .try_filter_map(move |f| async move {
                let n = f.filename;
                let hidden = n == "."
                    || n == ".."
                    || n.starts_with(TMP_PREFIX)
                    || (hide_reserved && n == RESERVED);
                Ok((!hidden).then(|| entry(n, &f.attrs)))
            });
        Ok(entries.boxed())
    }

    async fn read(&self, key: &Key, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let path = self.path(key.as_str());
        let a = self
            .attrs(&conn, &path)
            .await?
            .ok_or_else(|| StorageError::not_found("no such file"))?;
        if a.is_dir() {
            return Err(StorageError::new(
                StorageErrorKind::NotAFile,
                "is a directory",
            ));
        }
        let size = a.size.unwrap_or(0);
        let (start, end) = match range {
            Some(r) => (r.start.min(size), r.end.min(size)),
            None => (0, size),
        };
        if start >= end {
            return Ok(futures::stream::empty().boxed());
        }
        let handle = conn
            .sftp
            .open(path, OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(|e| map(e, "open"))?
            .handle;
        let sftp = conn.sftp.clone();
        let guard = Arc::new(CloseOnDrop(Some((sftp.clone(), handle.clone()))));
        let offsets = (start..end).step_by(CHUNK);
        let chunks = futures::stream::iter(offsets)
            .map(move |off| {
                let len = CHUNK.min((end - off) as usize);
                let (sftp, handle, _guard) = (sftp.clone(), handle.clone(), guard.clone());
                async move { read_chunk(sftp, handle, off, len).await }
            })
            .buffered(IN_FLIGHT);
        Ok(chunks.boxed())
    }

    async fn stage(
        &self,
        key: &Key,
        mode: StageMode,
    ) -> Result<Box<dyn StagedWrite>, StorageError> {
        if reserved(key) || key.is_root() {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let dir = key.as_str().rsplit_once('/').map_or("", |(d, _)| d);
        let tmp_key = if dir.is_empty() {
            format!("{TMP_PREFIX}{}.part", uuid::Uuid::new_v4())
        } else {
            format!("{dir}/{TMP_PREFIX}{}.part", uuid::Uuid::new_v4())
        };
        let tmp = self.path(&tmp_key);
        // Readable too: read-write opens read back what they wrote, and the digest after
        // random writes is read from it.
        let flags = OpenFlags::CREATE
            | OpenFlags::TRUNCATE
            | OpenFlags::WRITE
            | OpenFlags::READ
            | OpenFlags::EXCLUDE;
        let handle = conn
            .sftp
            .open(tmp.clone(), flags, FileAttributes::default())
            .await
            .map_err(|e| map(e, "open"))?
            .handle;
        let offset = match mode {
            StageMode::Create => 0,
            StageMode::KeepPrefix(n) => {
                let source = self.path(key.as_str());
                if let Err(e) = super::sftp_resume::copy_prefix(&conn, &source, &handle, n).await {
                    let _ = conn.sftp.close(handle).await;
                    let _ = conn.sftp.remove(tmp).await;
                    return Err(e);
                }
                n
            }
        };
        Ok(Box::new(SftpStaged {
            backend: SftpBackend {
                pool: self.pool.clone(),
                root: self.root.clone(),
            },
            conn,
            key: key.clone(),
            tmp,
            handle: Some(handle),
            offset,
            inflight: FuturesUnordered::new(),
        }))
    }

    async fn delete(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let path = self.path(key.as_str());
        match self.attrs(&conn, &path).await? {
            None => return Err(StorageError::not_found("no such file")),
            Some(a) if a.is_dir() => {
                return Err(StorageError::new(
                    StorageErrorKind::NotAFile,
                    "is a directory",
                ));
            }
            Some(_) => {}
        }
        conn.sftp.remove(path).await.map_err(|e| map(e, "remove"))?;
        let _ = conn.sftp.remove(self.sidecar(key)).await;
        Ok(())
    }

    async fn mkdir(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let path = self.path(key.as_str());
        match conn
            .sftp
            .mkdir(path.clone(), FileAttributes::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = map(e, "mkdir");
                if is_failure(&e) && self.attrs(&conn, &path).await.ok().flatten().is_some() {
                    return Err(StorageError::new(StorageErrorKind::AlreadyExists, "exists"));
                }
                Err(e)
            }
        }
    }

    async fn rmdir(&self, key: &Key) -> Result<(), StorageError> {
        if reserved(key) || key.is_root() {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        match self.attrs(&conn, &self.path(key.as_str())).await? {
            None => return Err(StorageError::not_found("no such directory")),
            Some(a) if !a.is_dir() => {
                return Err(StorageError::new(
                    StorageErrorKind::NotAFile,
                    "not a directory",
                ));
            }
            Some(_) => {}
        }
        if self.list(key).await?.next().await.is_some() {
            return Err(StorageError::new(
                StorageErrorKind::NotEmpty,
                "directory not empty",
            ));
        }
        conn.sftp
            .rmdir(self.path(key.as_str()))
            .await
            .map(|_| ())
            .map_err(|e| map(e, "rmdir"))
    }

    async fn rename(&self, from: &Key, to: &Key, no_overwrite: bool) -> Result<(), StorageError> {
        if reserved(from) || reserved(to) {
            return Err(StorageError::not_found("reserved name"));
        }
        let conn = self.pool.get().await?;
        let src = self
            .attrs(&conn, &self.path(from.as_str()))
            .await?
            .ok_or_else(|| StorageError::not_found("no such file or directory"))?;
        self.rename_path(
            &conn,
            &self.path(from.as_str()),
            &self.path(to.as_str()),
            !no_overwrite,
        )
        .await?;
        if !src.is_dir() {
            self.ensure_dirs(&conn, &[RESERVED, &format!("{RESERVED}/sha256")])
                .await;
            let _ = self
                .rename_path(&conn, &self.sidecar(from), &self.sidecar(to), true)
                .await;
        }
        Ok(())
    }

    async fn set_modified(&self, key: &Key, time: SystemTime) -> Result<(), StorageError> {
        let conn = self.pool.get().await?;
        let secs = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as u32;
        let attrs = FileAttributes {
            atime: Some(secs),
            mtime: Some(secs),
            ..FileAttributes::empty()
        };
        conn.sftp
            .setstat(self.path(key.as_str()), attrs)
            .await
            .map(|_| ())
            .map_err(|e| map(e, "setstat"))
    }

    async fn check(&self) -> Result<(), StorageError> {
        self.stat(&Key::new("", "")).await.map(|_| ())
    }

    async fn digest(&self, key: &Key, entry: &Entry) -> Option<[u8; 32]> {
        let conn = self.pool.get().await.ok()?;
        let body = self.read_small(&conn, &self.sidecar(key)).await?;
        let text = std::str::from_utf8(&body).ok()?;
        let (hex_digest, tag) = text.split_once(' ')?;
        if Some(tag) != entry.etag.as_deref() {
            return None;
        }
        hex::decode(hex_digest).ok()?.try_into().ok()
    }
}
