//! An upload to the upstream SFTP server in progress: pipelined writes into the hidden temporary
//! file, renamed into place at commit (and removed on abort or drop). Writes at other offsets
//! and reads back (read-write opens) wait for the pipelined writes first, so they see them and
//! overlapping writes land in order.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::sftp::{CHUNK, IN_FLIGHT, RESERVED, SftpBackend, etag, map, read_chunk};
use super::sftp_pool::Conn;
use crate::vfs::backend::{CommitMode, Key, StagedWrite, StorageError, StorageErrorKind};

pub(super) type WriteFuture = futures::future::BoxFuture<'static, Result<(), StorageError>>;

/// An upload into its temporary file.
pub(super) struct SftpStaged {
    pub(super) backend: SftpBackend,
    pub(super) conn: Arc<Conn>,
    pub(super) key: Key,
    pub(super) tmp: String,
    pub(super) handle: Option<String>,
    pub(super) offset: u64,
    pub(super) inflight: FuturesUnordered<WriteFuture>,
}

impl SftpStaged {
    fn open_handle(&self) -> Result<String, StorageError> {
        self.handle.clone().ok_or_else(|| {
            StorageError::new(StorageErrorKind::Permanent, "upload already finished")
        })
    }

    async fn drain(&mut self) -> Result<(), StorageError> {
        let mut first = Ok(());
        while let Some(r) = self.inflight.next().await {
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Waits for the writes, closes the handle, removes the temporary file.
    async fn discard(&mut self) {
        let _ = self.drain().await;
        if let Some(h) = self.handle.take() {
            let _ = self.conn.sftp.close(h).await;
        }
        let _ = self.conn.sftp.remove(self.tmp.clone()).await;
    }
}

#[async_trait]
impl StagedWrite for SftpStaged {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let handle = self.open_handle()?;
        let mut at = 0;
        while at < data.len() {
            while self.inflight.len() >= IN_FLIGHT {
                if let Some(r) = self.inflight.next().await {
                    r?;
                }
            }
            let piece = data.slice(at..(at + CHUNK).min(data.len()));
            let (sftp, h, off) = (self.conn.sftp.clone(), handle.clone(), self.offset);
            self.offset += piece.len() as u64;
            at += piece.len();
            self.inflight.push(Box::pin(async move {
                sftp.write(h, off, piece.to_vec())
                    .await
                    .map(|_| ())
                    .map_err(|e| map(e, "write"))
            }));
        }
        Ok(())
    }

    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        let handle = self.open_handle()?;
        self.drain().await?;
        let mut at = 0;
        while at < data.len() {
            let piece = data.slice(at..(at + CHUNK).min(data.len()));
            self.conn
                .sftp
                .write(handle.clone(), offset + at as u64, piece.to_vec())
                .await
                .map_err(|e| map(e, "write"))?;
            at += piece.len();
        }
        self.offset = self.offset.max(offset + data.len() as u64);
        Ok(())
    }

    async fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let handle = self.open_handle()?;
        self.drain().await?;
        read_chunk(self.conn.sftp.clone(), handle, offset, len).await
    }

    async fn content_sha256(&mut self) -> Result<[u8; 32], StorageError> {
        use sha2::Digest;
        let handle = self.open_handle()?;
        self.drain().await?;
        let size = self
            .conn
            .sftp
            .fstat(handle.clone())
            .await
            .map_err(|e| map(e, "fstat"))?
            .attrs
            .size
            .unwrap_or(0);
        let sftp = self.conn.sftp.clone();
        let mut chunks = futures::stream::iter((0..size).step_by(CHUNK))
            .map(|off| {
                let len = CHUNK.min((size - off) as usize);
                read_chunk(sftp.clone(), handle.clone(), off, len)
            })
            .buffered(IN_FLIGHT);
        let mut h = sha2::Sha256::new();
        while let Some(c) = chunks.next().await {
            h.update(&c?);
        }
        Ok(h.finalize().into())
    }

    async fn commit(
        mut self: Box<Self>,
        sha256: [u8; 32],
        mode: CommitMode,
    ) -> Result<(), StorageError> {
        if let Err(e) = self.drain().await {
            self.discard().await;
            return Err(e);
        }
        if let Some(h) = self.handle.take()
            && let Err(e) = self.conn.sftp.close(h).await
        {
            self.discard().await;
            return Err(map(e, "close"));
        }
        let to = self.backend.path(self.key.as_str());
        let replace = mode == CommitMode::Replace;
        if let Err(e) = self
            .backend
            .rename_path(&self.conn, &self.tmp, &to, replace)
            .await
        {
            self.discard().await;
            return Err(e);
        }
        // The digest beside it (best effort: without it the file just has no recorded sha256).
        let (b, conn) = (&self.backend, &self.conn);
        b.ensure_dirs(conn, &[RESERVED, &format!("{RESERVED}/sha256")])
            .await;
        if let Ok(Some(a)) = b.attrs(conn, &to).await {
            let body = format!("{} {}", hex::encode(sha256), etag(&a));
            let _ = b
                .write_file(conn, &b.sidecar(&self.key), body.as_bytes())
                .await;
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        self.discard().await;
    }
}

impl Drop for SftpStaged {
    fn drop(&mut self) {
        let Some(h) = self.handle.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (sftp, tmp) = (self.conn.sftp.clone(), self.tmp.clone());
        let inflight = std::mem::take(&mut self.inflight);
        rt.spawn(async move {
            inflight.collect::<Vec<_>>().await;
            let _ = sftp.close(h).await;
            let _ = sftp.remove(tmp).await;
        });
    }
}
