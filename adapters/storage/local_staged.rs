//! A local-disk staged write: a temp file in the root's staging directory, fsynced and then
//! renamed (or, for a create that must not replace anything, linked) into place at commit, with
//! the content's sha256 in an xattr. Positional reads and writes serve SFTP random access.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::local::{LocalBackend, READ_CHUNK, XATTR, io_err};
use super::local_entry::digest_value;
use crate::vfs::backend::{CommitMode, StagedWrite, StorageError, StorageErrorKind};

/// A staged write to a temp file.
pub(super) struct LocalStaged {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// A second handle for positional reads and writes (random access), made on first use.
    positional: Option<std::sync::Arc<std::fs::File>>,
    tmp: PathBuf,
    target: PathBuf,
}

impl LocalStaged {
    pub(super) fn new(
        file: tokio::io::BufWriter<tokio::fs::File>,
        tmp: PathBuf,
        target: PathBuf,
    ) -> Self {
        Self {
            file: Some(file),
            positional: None,
            tmp,
            target,
        }
    }

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
