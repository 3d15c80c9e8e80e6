//! A WebDAV upload in progress: a chunked PUT fed through a channel as the client writes, into
//! a hidden temporary resource that commit `MOVE`s into place (and abort or drop removes). A
//! resumed upload's PUT starts with the existing file's prefix.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, StatusCode};
use tokio::sync::mpsc;

use super::webdav::{WebDavBackend, err, status_error, transport};
use crate::vfs::backend::{CommitMode, Key, StagedWrite, StorageError, StorageErrorKind};

/// The PUT body: frames from the upload's channel.
pub(super) fn tokio_stream_frames(
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<http_body::Frame<Bytes>, std::io::Error>> + Send + Sync + 'static
{
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (item.map(http_body::Frame::data), rx))
    })
}

/// An upload streaming into its temporary resource.
pub(super) struct WebDavStaged {
    pub(super) backend: Arc<WebDavBackend>,
    pub(super) key: Key,
    pub(super) tmp: String,
    pub(super) tx: Option<mpsc::Sender<Result<Bytes, std::io::Error>>>,
    pub(super) put: Option<tokio::task::JoinHandle<Result<StatusCode, StorageError>>>,
}

impl WebDavStaged {
    /// Ends the PUT and waits for its answer.
    async fn finish_put(&mut self) -> Result<(), StorageError> {
        self.tx = None;
        let Some(put) = self.put.take() else {
            return Err(err(StorageErrorKind::Permanent, "upload already finished"));
        };
        match put.await {
            Ok(Ok(s)) if s.is_success() => Ok(()),
            Ok(Ok(s)) => Err(status_error(s, "PUT")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(transport(e)),
        }
    }

    /// Resume: the PUT starts with the first `n` bytes of the file at the key (WebDAV has no
    /// server-side partial copy, so they are read back with a ranged GET).
    pub(super) async fn keep_prefix(&mut self, n: u64) -> Result<(), StorageError> {
        if n == 0 {
            return Ok(());
        }
        let mut prefix = self.backend.get(self.key.as_str(), Some(0..n)).await?;
        let mut kept = 0u64;
        while let Some(chunk) = prefix.next().await {
            let chunk = chunk?;
            kept += chunk.len() as u64;
            self.write(chunk).await?;
        }
        if kept != n {
            return Err(err(
                StorageErrorKind::Permanent,
                format!("file shrank during resume: {kept} of {n} bytes kept"),
            ));
        }
        Ok(())
    }

    async fn remove_tmp(&self) {
        let b = &self.backend;
        let _ = b
            .call(b.request(Method::DELETE, &b.url(&self.tmp, false)))
            .await;
    }
}

#[async_trait]
impl StagedWrite for WebDavStaged {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let Some(tx) = &self.tx else {
            return Err(err(StorageErrorKind::Permanent, "upload already finished"));
        };
        if tx.send(Ok(data)).await.is_err() {
            // The PUT ended early: its answer says why.
            return match self.finish_put().await {
                Ok(()) => Err(transport("the server ended the upload early")),
                Err(e) => Err(e),
            };
        }
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        sha256: [u8; 32],
        mode: CommitMode,
    ) -> Result<(), StorageError> {
        if let Err(e) = self.finish_put().await {
            self.remove_tmp().await;
            return Err(e);
        }
        let overwrite = mode == CommitMode::Replace;
        if let Err(e) = self
            .backend
            .move_to(&self.tmp, self.key.as_str(), false, overwrite)
            .await
        {
            self.remove_tmp().await;
            return Err(e);
        }
        if self.backend.ensure_reserved("sha256").await.is_ok() {
            self.backend.write_sidecar(&self.key, sha256).await;
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(std::io::Error::other("upload aborted"))).await;
        }
        if let Some(put) = self.put.take() {
            let _ = put.await;
        }
        self.remove_tmp().await;
    }
}

impl Drop for WebDavStaged {
    fn drop(&mut self) {
        // Dropped without commit or abort (client gone): cut the PUT and remove what the server
        // may have kept.
        let (Some(tx), Some(put)) = (self.tx.take(), self.put.take()) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = self.backend.clone();
        let tmp = self.tmp.clone();
        rt.spawn(async move {
            let _ = tx.send(Err(std::io::Error::other("upload dropped"))).await;
            drop(tx);
            let _ = put.await;
            let _ = backend
                .call(backend.request(Method::DELETE, &backend.url(&tmp, false)))
                .await;
        });
    }
}
