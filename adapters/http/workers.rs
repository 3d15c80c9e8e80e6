//! HTTP connections run on one single-threaded runtime per core. The listener accepts on the
//! main runtime and hands each connection (not each request) to the next worker, where its
//! requests, its handlers and the proxy's upstream connections then stay: no work stealing and
//! no cross-thread wake-up per request. On the shared multi-threaded runtime a proxied request
//! cost about a third more CPU (bench/proxy.sh: 57 against 42 µs of gateway CPU per request
//! with one worker thread), most of it in futex wake-ups and rescheduling between threads.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The worker runtimes.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` worker threads (at least one); they run until `exit` is cancelled.
    pub fn start(n: usize, exit: &CancellationToken) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let exit = exit.clone();
            std::thread::Builder::new()
                .name(format!("gatehouse-http-{i}"))
                .spawn(move || {
                    rt.block_on(exit.cancelled());
                    // Connections still open past the shutdown are dropped, not waited for.
                    rt.shutdown_background();
                })?;
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the next worker, round robin.
    pub fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[i].spawn(f));
    }
}

/// Worker threads for this machine: one per core.
pub(crate) fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
