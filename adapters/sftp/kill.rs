//! A connection the gateway can cut: russh runs each session on a task of its own that only ends
//! when its stream fails, so the login deadline and the end of the shutdown grace period close
//! the stream under it instead (reads and writes fail once the token is cancelled).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pin_project_lite::pin_project! {
    /// `inner`, until `token` is cancelled.
    pub(super) struct Killable<S> {
        #[pin]
        inner: S,
        token: CancellationToken,
        // Boxed so the stream stays Unpin, as russh requires.
        killed: Pin<Box<WaitForCancellationFutureOwned>>,
    }
}

impl<S> Killable<S> {
    /// Wraps `inner`; cancelling `token` cuts it.
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Self {
            inner,
            killed: Box::pin(token.clone().cancelled_owned()),
            token,
        }
    }
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "closed by the gateway")
}

/// Ready when the token is (or becomes) cancelled; registers the waker otherwise.
fn is_killed(
    token: &CancellationToken,
    killed: &mut Pin<Box<WaitForCancellationFutureOwned>>,
    cx: &mut Context<'_>,
) -> bool {
    token.is_cancelled() || std::future::Future::poll(killed.as_mut(), cx).is_ready()
}

impl<S: AsyncRead> AsyncRead for Killable<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if is_killed(this.token, this.killed, cx) {
            return Poll::Ready(Err(cut()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for Killable<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if is_killed(this.token, this.killed, cx) {
            return Poll::Ready(Err(cut()));
        }
        this.inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.token.is_cancelled() {
            return Poll::Ready(Err(cut()));
        }
        this.inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
