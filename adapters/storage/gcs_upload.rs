//! Uploads above one part into GCS: a resumable upload session (JSON API), driven through
//! object_store's `MultipartStore` so the backend journals its id (the session URL) and aborts
//! it after a crash as it does S3's upload ids.
//!
//! A session takes its bytes in order, each request but the last a multiple of 256 KiB. The
//! backend sends equal parts (a whole number of MiB) and a shorter last one, up to two at a
//! time, so parts wait here for their turn; a part that is not a multiple of 256 KiB can only be
//! the last, and is held back to go with the total size at `complete_multipart`. A session whose
//! every part was aligned is finalized with an empty `Content-Range: bytes */TOTAL`.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, header};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{Attributes, Error, MultipartId, PutPayload, PutResult, Result};
use tokio::sync::Notify;

use super::gcs::{Gcs, Inner, Object, full, generic, payload_body, resource, status_err};

/// GCS's unit for every chunk of a resumable upload but the last.
const CHUNK: usize = 256 * 1024;

#[derive(Debug, Default)]
struct State {
    /// The part whose turn it is.
    next: usize,
    /// Bytes the session has taken.
    offset: u64,
    /// The short last part, sent at completion.
    held: Option<PutPayload>,
    failed: Option<String>,
}

/// One open resumable session.
#[derive(Debug, Default)]
pub(super) struct Session {
    state: Mutex<State>,
    turn: Notify,
}

impl Session {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every part before `idx` went up.
    async fn wait_turn(&self, idx: usize) -> Result<()> {
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.lock();
                if let Some(f) = &st.failed {
                    return Err(generic(format!("an earlier part failed: {f}")));
                }
                if st.next == idx {
                    return Ok(());
                }
                if st.next > idx {
                    return Err(generic(format!("part {idx} sent twice")));
                }
            }
            notified.await;
        }
    }

    fn done(&self, r: &Result<()>) {
        {
            let mut st = self.lock();
            match r {
                Ok(()) => st.next += 1,
                Err(e) => st.failed = Some(e.to_string()),
            }
        }
        self.turn.notify_waiters();
    }
}

impl Inner {
    fn session(&self, id: &str) -> Arc<Session> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.entry(id.to_string()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.remove(id);
    }

    /// Sends `data` at `offset`; `total` is the object's size when this is the last request.
    async fn chunk(
        &self,
        id: &str,
        path: &Path,
        offset: u64,
        data: PutPayload,
        total: Option<u64>,
    ) -> Result<Option<Object>> {
        let len = data.content_length() as u64;
        let range = match (len, total) {
            (0, Some(t)) => format!("bytes */{t}"),
            (0, None) => return Ok(None),
            (n, t) => format!(
                "bytes {offset}-{}/{}",
                offset + n - 1,
                t.map_or("*".to_string(), |t| t.to_string())
            ),
        };
        let req = self
            .request(Method::PUT, id)
            .await?
            .header(header::CONTENT_RANGE, range)
            .header(header::CONTENT_LENGTH, len);
        let (status, headers, body) = self.call(req, payload_body(data)).await?;
        match (status.as_u16(), total) {
            (200 | 201, Some(_)) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| generic(format!("upload answer: {e}"))),
            // 308 Resume Incomplete: the session must now hold exactly what was sent.
            (308, None) => {
                let kept = headers
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes=0-"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(0, |last| last + 1);
                if kept != offset + len {
                    return Err(generic(format!(
                        "GCS kept {kept} bytes of the upload, {} were sent",
                        offset + len
                    )));
                }
                Ok(None)
            }
            _ => Err(status_err(status, &body, path.as_ref(), false)),
        }
    }
}

#[async_trait]
impl MultipartStore for Gcs {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        let inner = &self.inner;
        let meta = resource(path, &Attributes::new())?;
        let url = format!(
            "{}?uploadType=resumable&name={}",
            inner.upload_url(),
            super::gcs::enc(path.as_ref())
        );
        let req = inner
            .request(Method::POST, &url)
            .await?
            .header(header::CONTENT_TYPE, "application/json; charset=UTF-8");
        let (status, headers, body) = inner.call(req, full(Bytes::from(meta.to_string()))).await?;
        if !status.is_success() {
            return Err(status_err(status, &body, path.as_ref(), false));
        }
        let id = headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic("resumable upload started without a session URL"))?
            .to_string();
        inner.session(&id);
        Ok(id)
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        let inner = &self.inner;
        let session = inner.session(id);
        session.wait_turn(part_idx).await?;
        let r = async {
            let (offset, held) = {
                let st = session.lock();
                (st.offset, st.held.is_some())
            };
            if held {
                return Err(generic("only the last part of an upload may be short"));
            }
            let len = data.content_length();
            if !len.is_multiple_of(CHUNK) {
                session.lock().held = Some(data);
                return Ok(());
            }
            inner.chunk(id, path, offset, data, None).await?;
            session.lock().offset += len as u64;
            Ok(())
        }
        .await;
        session.done(&r);
        r.map(|()| PartId {
            content_id: part_idx.to_string(),
        })
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        let inner = &self.inner;
        let session = inner.session(id);
        session.wait_turn(parts.len()).await?;
        let (offset, held) = {
            let mut st = session.lock();
            (st.offset, st.held.take())
        };
        let held = held.unwrap_or_default();
        let total = offset + held.content_length() as u64;
        let r = inner.chunk(id, path, offset, held, Some(total)).await;
        inner.forget(id);
        match r? {
            Some(o) => o.result(),
            None => Err(generic("upload finished without the object's resource")),
        }
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        let inner = &self.inner;
        inner.forget(id);
        let req = inner.request(Method::DELETE, id).await?;
        let (status, _, body) = inner.call(req, full(Bytes::new())).await?;
        // 499 is GCS's answer to a cancelled session; gone (404, 410) is what abort wants.
        if status.is_success() || matches!(status.as_u16(), 499 | 404 | 410) {
            return Ok(());
        }
        Err(match status_err(status, &body, path.as_ref(), false) {
            Error::NotFound { .. } => return Ok(()),
            e => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_wait_for_their_turn_and_a_failure_releases_the_waiters() {
        let s = Arc::new(Session::default());
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.wait_turn(1).await });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        s.wait_turn(0).await.unwrap();
        s.done(&Ok(()));
        second.await.unwrap().unwrap();
        let s3 = s.clone();
        let third = tokio::spawn(async move { s3.wait_turn(2).await });
        s.done(&Err(generic("boom")));
        assert!(third.await.unwrap().is_err());
    }
}
