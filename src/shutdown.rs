//! Graceful shutdown in one place: a token every listener and connection watches, a tracker of
//! the tasks still running, and the grace period they get (linkerd's `timeout(grace, drain)`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared shutdown state.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Cancelled when shutdown starts.
    pub token: CancellationToken,
    /// Cancelled when the grace period is over: work still running stops at once (an upload is
    /// aborted and recorded as interrupted) so nothing is left to die unrecorded at exit.
    pub stop: CancellationToken,
    /// Connections and transfers in flight.
    pub tasks: TaskTracker,
    /// Cancelled as the process is about to exit, after the audit log closed: the HTTP worker
    /// runtimes stop then (their connections' last records are written by then).
    pub exit: CancellationToken,
    /// How long they may run on.
    pub grace: Duration,
}

impl Shutdown {
    /// A fresh, running state.
    pub fn new(grace: Duration) -> Self {
        Self {
            token: CancellationToken::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            exit: CancellationToken::new(),
            grace,
        }
    }

    /// Starts shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The next connection on `listener`, or `None` once shutdown starts. A failed accept (out
    /// of file descriptors and the like) is logged and retried after 50 ms instead of spinning.
    pub async fn accept(
        &self,
        listener: &tokio::net::TcpListener,
        what: &str,
    ) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                _ = self.token.cancelled() => return None,
                a = listener.accept() => a,
            };
            match accepted {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits for tracked tasks, at most the grace period. Returns false if some were still
    /// running when it ran out; those are then told to stop (`stop`) and given a few seconds to
    /// abort and record what they were doing.
    pub async fn drain(&self) -> bool {
        self.tasks.close();
        let drained = tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_ok();
        if !drained {
            self.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        }
        drained
    }

    /// Waits (at most 5 s) for clean-up work spawned after `drain`: records of uploads whose
    /// connections were just dropped, and logouts of sessions still open (`open_sessions`
    /// counts them; a session's last clone can drop, and spawn its logout, just after the
    /// tracker was seen empty).
    pub async fn settle(&self, open_sessions: impl Fn() -> usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let _ = tokio::time::timeout_at(deadline, self.tasks.wait()).await;
            if open_sessions() == 0 && self.tasks.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    sessions = open_sessions(),
                    "sessions still open at exit; their logouts are not recorded"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
