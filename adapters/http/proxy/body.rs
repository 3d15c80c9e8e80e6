//! The proxied response body on its way out: counts bytes, fills the cache as it streams (up to
//! the route's limit), and writes the call's audit record when it ends, or when the client goes
//! away first (`interrupted`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http::header::{HeaderMap, HeaderName};
use http_body::{Body as HttpBody, Frame};

use super::cache::ResponseCache;
use crate::audit::{AuditEvent, AuditLog, Outcome};

/// A response body being filled into the cache as it streams.
pub(super) struct Store {
    pub(super) cache: ResponseCache,
    pub(super) key: String,
    pub(super) vary: Vec<HeaderName>,
    pub(super) req_headers: HeaderMap,
    pub(super) headers: HeaderMap,
    pub(super) ttl: Duration,
    pub(super) max: usize,
    /// `None` once the body outgrew `max`.
    pub(super) buf: Option<BytesMut>,
}

pin_project_lite::pin_project! {
    /// The response body: counts bytes, feeds the cache, and writes the audit record when it
    /// ends (or is dropped because the client went away).
    pub(super) struct Tracked {
        #[pin]
        pub(super) inner: Body,
        pub(super) bytes: u64,
        pub(super) started: Instant,
        pub(super) audit: Option<(AuditLog, AuditEvent)>,
        pub(super) store: Option<Store>,
    }

    impl PinnedDrop for Tracked {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((audit, mut ev)) = this.audit.take() {
                ev.bytes = Some(*this.bytes);
                ev.outcome = Outcome::Error;
                if let Some(d) = ev.detail.as_mut() {
                    d.push_str(&format!(" ms={} interrupted", this.started.elapsed().as_millis()));
                }
                audit.record_detached(ev);
            }
        }
    }
}

impl Tracked {
    /// The body is complete: record it and hand the copy to the cache.
    fn finish(
        audit: &mut Option<(AuditLog, AuditEvent)>,
        store: &mut Option<Store>,
        bytes: u64,
        started: Instant,
    ) {
        if let Some((audit, mut ev)) = audit.take() {
            ev.bytes = Some(bytes);
            if let Some(d) = ev.detail.as_mut() {
                d.push_str(&format!(" ms={}", started.elapsed().as_millis()));
            }
            audit.record_detached(ev);
        }
        if let Some(s) = store.take()
            && let Some(buf) = s.buf
        {
            tokio::spawn(async move {
                s.cache
                    .put(
                        s.key,
                        s.vary,
                        &s.req_headers,
                        StatusCode::OK,
                        s.headers,
                        buf.freeze(),
                        s.ttl,
                    )
                    .await;
            });
        }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                    if let Some(s) = this.store.as_mut()
                        && let Some(buf) = s.buf.as_mut()
                    {
                        if buf.len() + data.len() > s.max {
                            s.buf = None;
                        } else {
                            buf.extend_from_slice(data);
                        }
                    }
                }
                // hyper stops polling once the length is satisfied, so finish here too.
                if this.inner.is_end_stream() {
                    Self::finish(this.audit, this.store, *this.bytes, *this.started);
                }
            }
            Poll::Ready(None) => Self::finish(this.audit, this.store, *this.bytes, *this.started),
            Poll::Ready(Some(Err(_))) => {
                this.store.take();
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
