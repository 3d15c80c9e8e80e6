//! Live sessions: who is connected now, over which door, from where, since when, bytes moved and
//! transfers in flight with their progress. Doors register an SFTP or FTP session at login (the
//! entry goes away with the last clone of the session); uploads and downloads report progress
//! through the session they run in. An operator can end a session: the door sees the entry's
//! token cancelled, says goodbye in its protocol's words and records the logout with who ended
//! it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::identity::Protocol;

/// Every live session.
#[derive(Debug, Clone, Default)]
pub struct LiveSessions {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    sessions: HashMap<String, Weak<LiveEntry>>,
}

/// One live session's shared state.
#[derive(Debug)]
pub struct LiveEntry {
    /// Session id (as in its audit records).
    pub id: String,
    /// Front door.
    pub protocol: Protocol,
    /// User.
    pub user: String,
    /// Client address.
    pub remote: String,
    /// Login time.
    pub since: SystemTime,
    /// Bytes received from the client.
    pub bytes_in: AtomicU64,
    /// Bytes sent to the client.
    pub bytes_out: AtomicU64,
    end: CancellationToken,
    ended_by: Mutex<Option<String>>,
    closed: AtomicBool,
    transfers: Mutex<HashMap<u64, Arc<TransferState>>>,
    next_transfer: AtomicU64,
    registry: Weak<Mutex<Registry>>,
}

/// Whether a transfer goes to or from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to gateway.
    Upload,
    /// Gateway to client.
    Download,
}

impl Direction {
    /// `upload` or `download`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// A transfer in flight.
#[derive(Debug)]
pub struct TransferState {
    /// Virtual path.
    pub path: String,
    /// Which way.
    pub direction: Direction,
    /// Expected size, when known (downloads).
    pub size: Option<u64>,
    /// Bytes moved so far.
    pub done: AtomicU64,
    /// When it started.
    pub started: SystemTime,
}

/// A transfer's registration: progress goes through it; dropping it ends the transfer.
#[derive(Debug)]
pub struct Transfer {
    id: u64,
    state: Arc<TransferState>,
    entry: Arc<LiveEntry>,
}

impl Transfer {
    /// Counts `n` more bytes moved.
    pub fn progress(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
        let total = match self.state.direction {
            Direction::Upload => &self.entry.bytes_in,
            Direction::Download => &self.entry.bytes_out,
        };
        total.fetch_add(n, Ordering::Relaxed);
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.entry
            .transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        if let Some(reg) = self.registry.upgrade() {
            let mut reg = reg.lock().unwrap_or_else(|p| p.into_inner());
            // Only this entry's slot: a dead weak pointer under this id.
            if reg
                .sessions
                .get(&self.id)
                .is_some_and(|w| w.strong_count() == 0)
            {
                reg.sessions.remove(&self.id);
            }
        }
    }
}

impl LiveEntry {
    /// Cancelled when an operator ends the session.
    pub fn end_token(&self) -> CancellationToken {
        self.end.clone()
    }

    /// The operator who ended the session, if one did.
    pub fn ended_by(&self) -> Option<String> {
        self.ended_by
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the session over (its logout is being recorded): it leaves the live list at once,
    /// before its connection has let go of the entry, and can no longer be ended.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn listed(&self) -> bool {
        !self.end.is_cancelled() && !self.closed.load(Ordering::Acquire)
    }

    /// Starts a transfer in this session.
    pub fn transfer(
        self: &Arc<Self>,
        path: &str,
        direction: Direction,
        size: Option<u64>,
    ) -> Transfer {
        let id = self.next_transfer.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(TransferState {
            path: path.to_string(),
            direction,
            size,
            done: AtomicU64::new(0),
            started: SystemTime::now(),
        });
        self.transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state.clone());
        Transfer {
            id,
            state,
            entry: self.clone(),
        }
    }

    /// Transfers in flight now.
    pub fn transfers(&self) -> Vec<Arc<TransferState>> {
        let mut v: Vec<_> = self
            .transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|t| t.started);
        v
    }
}

impl LiveSessions {
    /// Registers a session; it stays listed while the returned entry lives.
    pub fn register(
        &self,
        id: &str,
        protocol: Protocol,
        user: &str,
        remote: std::net::SocketAddr,
    ) -> Arc<LiveEntry> {
        let entry = Arc::new(LiveEntry {
            id: id.to_string(),
            protocol,
            user: user.to_string(),
            remote: remote.to_string(),
            since: SystemTime::now(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            end: CancellationToken::new(),
            ended_by: Mutex::new(None),
            closed: AtomicBool::new(false),
            transfers: Mutex::new(HashMap::new()),
            next_transfer: AtomicU64::new(0),
            registry: Arc::downgrade(&self.inner),
        });
        self.lock()
            .sessions
            .insert(id.to_string(), Arc::downgrade(&entry));
        entry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every live session, oldest first, without those an operator has ended or that have logged
    /// out. Either leaves the list at once: its connection may take a moment longer to close
    /// (its logout record is written before it lets go of its entry), and neither an operator
    /// who just ended it nor one who reads its logout record should still see it listed.
    pub fn list(&self) -> Vec<Arc<LiveEntry>> {
        let mut v: Vec<_> = self
            .lock()
            .sessions
            .values()
            .filter_map(Weak::upgrade)
            .filter(|e| e.listed())
            .collect();
        v.sort_by(|a, b| a.since.cmp(&b.since).then(a.id.cmp(&b.id)));
        v
    }

    /// Ends session `id` on behalf of `operator`; false when no such session is live (or it is
    /// already logging out).
    pub fn end(&self, id: &str, operator: &str) -> bool {
        let entry = self
            .lock()
            .sessions
            .get(id)
            .and_then(Weak::upgrade)
            .filter(|e| !e.closed.load(Ordering::Acquire));
        match entry {
            Some(e) => {
                *e.ended_by.lock().unwrap_or_else(|p| p.into_inner()) = Some(operator.to_string());
                e.end.cancel();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_while_alive_counts_progress_and_ends() {
        let live = LiveSessions::default();
        let addr = "127.0.0.1:5000".parse().unwrap();
        let e = live.register("s1", Protocol::Sftp, "acme", addr);
        let t = e.transfer("/in/a.csv", Direction::Upload, None);
        t.progress(10);
        t.progress(5);
        assert_eq!(live.list().len(), 1);
        assert_eq!(e.transfers()[0].done.load(Ordering::Relaxed), 15);
        assert_eq!(e.bytes_in.load(Ordering::Relaxed), 15);
        drop(t);
        assert!(e.transfers().is_empty());
        assert!(live.end("s1", "root"));
        assert!(e.end_token().is_cancelled());
        assert_eq!(e.ended_by().as_deref(), Some("root"));
        // Ended: off the list while its connection is still closing.
        assert!(live.list().is_empty());
        drop(e);
        assert!(live.list().is_empty());
        assert!(!live.end("s1", "root"));
    }

    #[test]
    fn a_session_that_logs_out_leaves_the_list_before_its_entry_goes() {
        let live = LiveSessions::default();
        let addr = "127.0.0.1:5001".parse().unwrap();
        let e = live.register("s2", Protocol::Ftp, "acme", addr);
        let other = live.register("s3", Protocol::Sftp, "acme", addr);
        assert_eq!(live.list().len(), 2);
        e.close();
        let ids: Vec<_> = live.list().iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, ["s3"]);
        // Logging out: an operator can no longer end it, and it says nothing about ending.
        assert!(!live.end("s2", "root"));
        assert_eq!(e.ended_by(), None);
        assert!(!e.end_token().is_cancelled());
        drop((e, other));
        assert!(live.list().is_empty());
    }
}
